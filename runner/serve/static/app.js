// The agent-run page: one conversation with the agent over /ws (protocol in the README).
// Microphone -> AudioWorklet "agent-run-capture" (resampled to the server's input rate) -> binary
// frames; binary frames -> AudioWorklet "agent-run-playback" (gap-free, flushed on barge-in); JSON
// frames -> transcript, tool calls, state. On a server of several agents (GET /agents) a selector
// picks the one /ws?agent=NAME talks to. Plain JS, no build step, nothing loaded from elsewhere.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const ui = {
    agent: $("agent-name"),
    agentChoice: $("agent-choice"),
    agentSelect: $("agent-select"),
    connection: $("connection"),
    start: $("start"),
    stop: $("stop"),
    activity: $("activity"),
    notice: $("notice"),
    transcript: $("transcript"),
    form: $("text-form"),
    text: $("text"),
    send: $("send"),
  };

  // What tests (and the curious) can read: window.agentRun.
  const stats = {
    connection: "idle", // idle | connecting | connected | closed | failed
    state: null, // listening | speaking | thinking (from the server)
    ready: null, // the server's "ready" message
    mic: "off", // off | asking | on | refused | unavailable
    sentSamples: 0, // microphone samples sent, at input_rate
    droppedSamples: 0, // microphone samples dropped because the connection was backed up
    receivedSamples: 0, // assistant samples received, at output_rate
    playedSamples: 0, // assistant samples played, at output_rate
    marksEchoed: 0, // the server's marks echoed once the audio before them had played
    flushes: 0, // barge-ins: playback cut short
    underruns: 0,
    toolCalls: [],
    toolResults: [],
    closeCode: null,
    closeReason: null,
    agents: null, // the server's GET /agents, once loaded
  };
  window.agentRun = stats;

  const TEXT_LIMIT = 2000;
  const SEND_BACKLOG_SECONDS = 1; // drop microphone audio rather than queue more than this
  const PENDING_AUDIO_LIMIT = 256; // frames that arrive before the player exists

  let ws = null;
  let ctx = null;
  let capture = null;
  let player = null;
  let pendingAudio = [];
  let worklet = null; // promise: the worklet module loaded into ctx
  let lastAssistant = null; // <li> of the answer last spoken (marked if a barge-in cuts it)
  const typedPending = []; // typed lines not yet echoed by the server
  let ended = false; // the user pressed "End" (a close is then expected)

  // ---- small UI helpers -------------------------------------------------------------------

  function setConnection(state, text) {
    stats.connection = state;
    ui.connection.dataset.state = state;
    ui.connection.textContent = text;
  }

  function notify(message) {
    ui.notice.textContent = message;
    ui.notice.hidden = !message;
  }

  function addEntry(kind, who, text) {
    const li = document.createElement("li");
    li.className = kind;
    const w = document.createElement("span");
    w.className = "who";
    w.textContent = who;
    const t = document.createElement("span");
    t.className = "text";
    t.textContent = text;
    li.append(w, t);
    ui.transcript.append(li);
    ui.transcript.scrollTop = ui.transcript.scrollHeight;
    return li;
  }

  function setTextEnabled(on) {
    ui.text.disabled = !on;
    ui.send.disabled = !on;
  }

  function describeInput(input) {
    if (input === undefined || input === null) return "";
    try {
      const s = typeof input === "string" ? input : JSON.stringify(input);
      return s.length > 300 ? `${s.slice(0, 300)}…` : s;
    } catch {
      return String(input);
    }
  }

  // ---- audio ------------------------------------------------------------------------------

  function workletUrl() {
    return new URL("pcm-worklet.js", document.baseURI).href;
  }

  async function startPlayback(outputRate) {
    const socket = ws;
    await worklet;
    player = new AudioWorkletNode(ctx, "agent-run-playback", {
      numberOfInputs: 0,
      numberOfOutputs: 1,
      outputChannelCount: [1],
      processorOptions: { inRate: outputRate },
    });
    player.port.onmessage = (e) => {
      const m = e.data;
      if (m && m.type === "stats") {
        stats.playedSamples = m.played;
        stats.underruns = m.underruns;
      } else if (m && m.type === "mark") {
        // The audio before the server's mark has played: tell the server (its turn figures and
        // its knowing when an answer is over come from these echoes).
        if (ws !== socket || !socket || socket.readyState !== WebSocket.OPEN) return;
        socket.send(JSON.stringify({ type: "mark", name: m.name }));
        stats.marksEchoed += 1;
      }
    };
    player.onprocessorerror = () => notify("Audio playback stopped: the page's audio code failed.");
    player.connect(ctx.destination);
    for (const item of pendingAudio) {
      if (item instanceof ArrayBuffer) player.port.postMessage(item, [item]);
      else player.port.postMessage(item);
    }
    pendingAudio = [];
  }

  function playAudio(buf) {
    stats.receivedSamples += buf.byteLength >> 1;
    if (player) player.port.postMessage(buf, [buf]);
    else if (pendingAudio.length < PENDING_AUDIO_LIMIT) pendingAudio.push(buf);
  }

  // A mark goes to the player in order with the audio; it echoes it once what came before played.
  function playMark(name) {
    const mark = { type: "mark", name: String(name) };
    if (player) player.port.postMessage(mark);
    else if (pendingAudio.length < PENDING_AUDIO_LIMIT) pendingAudio.push(mark);
  }

  function flushPlayback() {
    stats.flushes += 1;
    pendingAudio = [];
    if (player) player.port.postMessage({ type: "flush" });
  }

  async function askMicrophone() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      stats.mic = "unavailable";
      throw new Error(
        "This browser offers no microphone to this page: open it over https, or as " +
          "http://localhost / http://127.0.0.1 on the machine running the server.",
      );
    }
    stats.mic = "asking";
    try {
      return await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      });
    } catch (err) {
      const name = err && err.name;
      if (name === "NotAllowedError" || name === "SecurityError") {
        stats.mic = "refused";
        throw new Error(
          "Microphone access was refused. Allow the microphone for this site (the icon in the " +
            "address bar), then start again.",
        );
      }
      stats.mic = "unavailable";
      if (name === "NotFoundError" || name === "OverconstrainedError") {
        throw new Error(`No microphone was found. Connect one, then start again.`);
      }
      if (name === "NotReadableError") {
        throw new Error(`The microphone is in use by another program or could not be opened.`);
      }
      throw new Error(`The microphone could not be opened (${name || err}).`);
    }
  }

  async function startCapture(stream, inputRate) {
    await worklet;
    const source = ctx.createMediaStreamSource(stream);
    capture = new AudioWorkletNode(ctx, "agent-run-capture", {
      numberOfInputs: 1,
      numberOfOutputs: 1,
      outputChannelCount: [1],
      channelCount: 1,
      channelCountMode: "explicit",
      processorOptions: { outRate: inputRate, blockMs: 20 },
    });
    const backlog = inputRate * 2 * SEND_BACKLOG_SECONDS;
    capture.port.onmessage = (e) => {
      const buf = e.data;
      if (!(buf instanceof ArrayBuffer) || !ws || ws.readyState !== WebSocket.OPEN) return;
      if (ws.bufferedAmount > backlog) {
        stats.droppedSamples += buf.byteLength >> 1;
        return;
      }
      ws.send(buf);
      stats.sentSamples += buf.byteLength >> 1;
    };
    capture.onprocessorerror = () => notify("The microphone stopped: the page's audio code failed.");
    source.connect(capture);
    // The capture node outputs silence; connecting it keeps the graph pulling it in every browser.
    capture.connect(ctx.destination);
    stats.mic = "on";
  }

  function stopAudio() {
    if (capture) {
      capture.port.postMessage({ type: "stop" });
      capture.disconnect();
      capture = null;
    }
    // Release the microphone even if it was granted only after the call ended.
    micPromise.then((stream) => {
      for (const track of stream.getTracks()) track.stop();
    }, () => {});
    if (player) {
      player.disconnect();
      player = null;
    }
    if (ctx) {
      ctx.close().catch(() => {});
      ctx = null;
    }
    pendingAudio = [];
    if (stats.mic === "on" || stats.mic === "asking") stats.mic = "off";
  }

  // ---- the connection ---------------------------------------------------------------------

  function socketUrl() {
    const url = new URL("ws", document.baseURI);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    const token = new URLSearchParams(location.search).get("token");
    url.search = "";
    if (token) url.searchParams.set("token", token);
    const params = new URLSearchParams(location.search);
    const agent = ui.agentChoice.hidden ? params.get("agent") : ui.agentSelect.value;
    if (agent) url.searchParams.set("agent", agent);
    return url.href;
  }

  // The agents the server serves: a selector when there is more than one (?agent=NAME preselects).
  async function loadAgents() {
    const url = new URL("agents", document.baseURI);
    const token = new URLSearchParams(location.search).get("token");
    if (token) url.searchParams.set("token", token);
    let agents;
    try {
      const probe = new AbortController();
      const timer = setTimeout(() => probe.abort(), 5000);
      const response = await fetch(url, { cache: "no-store", signal: probe.signal });
      clearTimeout(timer);
      if (!response.ok) return; // e.g. no token yet: /ws will say why
      agents = await response.json();
    } catch {
      return;
    }
    if (!Array.isArray(agents)) return;
    stats.agents = agents;
    if (agents.length < 2) return;
    const wanted = new URLSearchParams(location.search).get("agent");
    for (const agent of agents) {
      const option = document.createElement("option");
      option.value = String(agent.name);
      option.textContent = String(agent.name);
      option.title = String(agent.description ?? "");
      if (agent.name === wanted || (!wanted && agent.default)) option.selected = true;
      ui.agentSelect.append(option);
    }
    ui.agentChoice.hidden = false;
  }

  function closeMessage(code, reason) {
    const why = reason ? `: ${reason}` : "";
    if (code === 1013) return `The server is full: every conversation slot is taken${why}. Try again in a moment.`;
    if (code === 4404) return `This server has no such agent${why}.`;
    if (code === 1008 || code === 4401 || code === 4403 || code === 3000 || code === 3003) {
      return `The server refused this page's token${why}. Open the page with the address the server printed (…/?token=…).`;
    }
    if (code === 1001) return `The server is shutting down${why}. Start again to reach another server.`;
    if (code === 1011) return `The conversation failed on the server${why}.`;
    if (code === 1000) return reason ? `The conversation ended${why}.` : "";
    return `The connection was lost (code ${code}${why}).`;
  }

  // A WebSocket refused before it opened tells the page nothing (code 1006). The server refuses a
  // missing or wrong token that way (HTTP 403), so ask whether the server is up at all: if it
  // answers /readyz, the token is what it refused.
  async function refusedMessage() {
    const hasToken = new URLSearchParams(location.search).has("token");
    try {
      const probe = new AbortController();
      const timer = setTimeout(() => probe.abort(), 5000);
      await fetch(new URL("readyz", document.baseURI), { cache: "no-store", signal: probe.signal });
      clearTimeout(timer);
    } catch {
      return "Could not reach the server: it may be down or restarting. Try again in a moment.";
    }
    return hasToken
      ? "The server refused the token in this page's address (…/?token=…): it is wrong or out of date."
      : "The server requires a token: open the page with the address that includes it (…/?token=…).";
  }

  function connect() {
    ended = false;
    setConnection("connecting", "Connecting…");
    let opened = false;
    const socket = new WebSocket(socketUrl());
    socket.binaryType = "arraybuffer";
    ws = socket;

    socket.onopen = () => {
      opened = true;
      socket.send(JSON.stringify({ type: "hello", marks: true })); // marks: echoed once played
    };

    socket.onmessage = (e) => {
      if (socket !== ws) return;
      if (e.data instanceof ArrayBuffer) {
        playAudio(e.data);
        return;
      }
      let msg;
      try {
        msg = JSON.parse(e.data);
      } catch {
        return;
      }
      onMessage(msg);
    };

    socket.onclose = (e) => {
      if (socket !== ws) return;
      ws = null;
      stats.closeCode = e.code;
      stats.closeReason = e.reason;
      finish();
      if (ended) {
        setConnection("closed", "Disconnected");
      } else if (!opened) {
        setConnection("failed", "Not connected");
        refusedMessage().then(notify);
      } else {
        const message = closeMessage(e.code, e.reason);
        setConnection(message && e.code !== 1000 ? "failed" : "closed", "Disconnected");
        if (message) notify(message);
      }
    };
  }

  function onMessage(msg) {
    switch (msg.type) {
      case "ready":
        onReady(msg);
        break;
      case "transcript":
        onTranscript(msg.role, String(msg.text ?? ""));
        break;
      case "tool_call": {
        stats.toolCalls.push({ name: msg.name, input: msg.input });
        addEntry("tool call", "Tool", `${msg.name}(${describeInput(msg.input)})`);
        break;
      }
      case "tool_result": {
        stats.toolResults.push({ name: msg.name, ok: msg.ok });
        const li = addEntry(`tool result${msg.ok ? "" : " failed"}`, "Result", `${msg.name}: `);
        const r = document.createElement("span");
        r.className = "result";
        r.textContent = msg.ok ? "done" : "failed";
        li.append(r);
        break;
      }
      case "mark":
        playMark(msg.name);
        break;
      case "interrupted":
        flushPlayback();
        if (lastAssistant) lastAssistant.classList.add("interrupted");
        lastAssistant = null;
        break;
      case "state":
        stats.state = msg.state;
        ui.activity.textContent =
          { listening: "Listening…", speaking: "Speaking…", thinking: "Thinking…" }[msg.state] || "";
        break;
      case "error":
        notify(String(msg.message ?? "The server reported an error."));
        break;
      default:
        break; // newer servers may send more; ignore what this page does not know
    }
  }

  function onReady(msg) {
    stats.ready = msg;
    setConnection("connected", "Connected");
    if (msg.agent) {
      ui.agent.textContent = msg.agent;
      document.title = `${msg.agent} · agent-run`;
    }
    ui.form.hidden = !msg.text;
    setTextEnabled(Boolean(msg.text));
    const socket = ws;
    const failed = (what) => (err) => {
      if (ws === socket) notify(`${what}${err.message || err}`); // else the call ended meanwhile
    };
    startPlayback(msg.output_rate).catch(failed("Audio playback failed: "));
    micPromise.then(
      (stream) => {
        if (ws !== socket) return;
        return startCapture(stream, msg.input_rate);
      },
      (err) => {
        if (ws !== socket) return;
        notify(`${err.message}${msg.text ? " You can still type below." : ""}`);
      },
    ).catch(failed("Microphone capture failed: "));
  }

  function onTranscript(role, text) {
    if (!text) return;
    if (role === "user") {
      const i = typedPending.indexOf(text.trim());
      if (i >= 0) {
        typedPending.splice(i, 1); // already shown when typed
        return;
      }
      addEntry("user", "You", text);
    } else {
      lastAssistant = addEntry("assistant", "Agent", text);
    }
  }

  // ---- start / stop -----------------------------------------------------------------------

  let micPromise = Promise.reject(new Error("not started"));
  micPromise.catch(() => {});

  function start() {
    notify("");
    ui.start.hidden = true;
    ui.stop.hidden = false;
    ui.agentSelect.disabled = true;
    ui.stop.focus();
    // Created on the click, so that browsers let it play; at the device's own rate.
    const AudioCtx = window.AudioContext || window.webkitAudioContext;
    ctx = new AudioCtx({ latencyHint: "interactive" });
    ctx.resume().catch(() => {});
    const mine = ctx;
    worklet = ctx.audioWorklet.addModule(workletUrl());
    worklet.catch((err) => {
      // Closing the context (the call ended meanwhile) also fails the load: nothing to report then.
      if (ctx === mine) notify(`The page's audio code did not load: ${err.message || err}`);
    });
    micPromise = askMicrophone();
    micPromise.catch(() => {}); // reported once the server is ready (text may still work)
    connect();
  }

  function finish() {
    stopAudio();
    setTextEnabled(false);
    ui.activity.textContent = "";
    ui.start.hidden = false;
    ui.start.textContent = "Start again";
    ui.stop.hidden = true;
    ui.agentSelect.disabled = false;
    lastAssistant = null;
  }

  function stop() {
    ended = true;
    if (ws) ws.close(1000, "caller hung up");
    else finish();
  }

  loadAgents();
  ui.start.addEventListener("click", start);
  ui.stop.addEventListener("click", stop);
  ui.form.addEventListener("submit", (e) => {
    e.preventDefault();
    const text = ui.text.value.trim().slice(0, TEXT_LIMIT);
    if (!text || !ws || ws.readyState !== WebSocket.OPEN) return;
    ws.send(JSON.stringify({ type: "text", text }));
    typedPending.push(text);
    addEntry("user typed", "You", text);
    ui.text.value = "";
    ui.text.focus();
  });
  window.addEventListener("pagehide", () => {
    if (ws) ws.close(1001, "page closed");
  });
})();
