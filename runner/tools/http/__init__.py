"""HTTP tools: a tool declared with `http:` instead of `handler:` is answered by one HTTP request.

    http:
      method: GET
      url: https://api.example.com/orders/{order_id}?lang={vars.language}
      headers: {Authorization: "Bearer ${env:ORDERS_TOKEN}"}
      result: {pointer: /order}

Text in `url`, `headers` and `body` is a template of three kinds of placeholder:
- `{name}`: the tool argument `name` (URL-encoded in the URL, so a value cannot add a path
  segment, a query parameter or another host); in the body, a string that is only `{name}` keeps the
  argument's JSON type;
- `{vars.NAME}`: the agent's variable (with --var overrides);
- `${env:NAME}`: an environment variable, resolved at each request and never stored, printed or
  logged (runner.config.secrets). Only the agent file's own text is searched for references: an
  argument whose value looks like `${env:AWS_SECRET_ACCESS_KEY}` is sent as those characters.
`{{` and `}}` write literal braces. Arguments may only appear after the host: the model chooses a
path and a query, never where the request goes.

Every failure (no connection, a timeout, a TLS error, a status outside 2xx, a body too large or not
JSON, a result template that fails) raises ToolError, which the tool layer sends to the model as
`{"error": ..., "tool": ...}`; messages name hosts and paths, and any secret value that still shows
up (a server echoing a header back) is turned back into its `${env:NAME}` reference, in results too.

The package, by responsibility:
- `templates`: the url/header/body templates and their rendering (pure);
- `config`: the loader's check of an `http:` block into a frozen HttpToolSpec (pure);
- `response`: what the model gets from a response, and the scrubbing of secrets (pure);
- `call`: the tool's async callable (request, retries), over runner.httpclient, the one module
  that imports aiohttp.
The loader checks an `http:` block with `check_http` and builds the callable with `http_function`.
"""

from runner.tools.http.call import http_function
from runner.tools.http.config import METHODS, HttpProblem, check_http, display, env_ref_paths

__all__ = ["METHODS", "HttpProblem", "check_http", "display", "env_ref_paths", "http_function"]
