"""`agent-run serve`: one ASGI app that puts an agent in front of callers (browser, telephony).

Each connected caller is its own Conversation (runner.engine.serve_conversation). Front ends
(runner.serve.frontends) turn a transport (the browser's `/ws`, Twilio Media Streams) into a
`CallerIO` and call `converse`; everything else (auth, capacity, drain, metrics, transcripts)
lives here.
"""
