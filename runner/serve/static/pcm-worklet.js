// AudioWorklet processors for the agent-run page: "capture" (microphone -> 16-bit PCM at the
// server's input rate) and "playback" (the assistant's PCM at its output rate -> the speakers).
//
// Both resample with a windowed-sinc filter, because the AudioContext runs at the device's rate
// (Firefox does not let a page choose the rate of a context fed by a microphone, so the page never
// asks). Downsampling low-passes below the new Nyquist frequency before decimating (no aliasing);
// upsampling interpolates with the same filter (no images).
//
// This file is also loaded as a plain script by tests: the Resampler class is exported on
// globalThis, and the processors are registered only inside an AudioWorkletGlobalScope.
"use strict";

// Kaiser-windowed sinc, tabulated at PHASES fractional offsets so that the audio thread never calls
// sin(). ZEROS zero crossings of the lower rate on each side of the centre; BETA sets the stopband
// (8.6 gives about -90 dB sidelobes); the passband ends at PASS of the lower Nyquist frequency.
const PHASES = 512;
const ZEROS = 16;
const BETA = 8.6;
const PASS = 0.9;

function besselI0(x) {
  let sum = 1;
  let term = 1;
  for (let k = 1; k < 50; k++) {
    term *= (x / (2 * k)) * (x / (2 * k));
    sum += term;
    if (term < sum * 1e-12) break;
  }
  return sum;
}

class Resampler {
  // A streaming resampler from `inRate` to `outRate` (any ratio). push() takes float samples and
  // returns the float samples that are complete; state carries over between calls.
  constructor(inRate, outRate) {
    if (!(inRate > 0 && outRate > 0)) throw new RangeError(`bad rates ${inRate} -> ${outRate}`);
    this.inRate = inRate;
    this.outRate = outRate;
    this.step = inRate / outRate; // input samples per output sample
    this.same = inRate === outRate; // nothing to do but copy
    // Cut-off relative to the input rate's Nyquist frequency (1 = no low-pass needed).
    const cutoff = PASS * Math.min(1, outRate / inRate);
    this.half = Math.ceil(ZEROS / cutoff); // kernel half-width in input samples
    const taps = 2 * this.half;
    this.taps = taps;
    this.table = new Float32Array((PHASES + 1) * taps);
    const norm = besselI0(BETA);
    for (let p = 0; p <= PHASES; p++) {
      const frac = p / PHASES;
      for (let j = 0; j < taps; j++) {
        // tap j weighs input sample floor(t) + j - half + 1, at distance u from t
        const u = frac - (j - this.half + 1);
        const x = u / this.half;
        const w = Math.abs(x) >= 1 ? 0 : besselI0(BETA * Math.sqrt(1 - x * x)) / norm;
        const arg = Math.PI * cutoff * u;
        const sinc = u === 0 ? 1 : Math.sin(arg) / arg;
        this.table[p * taps + j] = cutoff * sinc * w;
      }
    }
    // Input history: the kernel needs `half` samples before and after each output instant.
    this.buf = new Float32Array(4096 + taps);
    // Position of the next output sample, in input samples from buf[0]. It starts so that the first
    // input sample is the first output instant (half - 1 zeros of history before it).
    this.len = this.half - 1;
    this.t = this.half - 1;
  }

  reset() {
    this.buf.fill(0);
    this.len = this.half - 1;
    this.t = this.half - 1;
  }

  push(input) {
    if (this.same) return Float32Array.from(input);
    if (this.len + input.length > this.buf.length) {
      const bigger = new Float32Array(Math.max(this.buf.length * 2, this.len + input.length));
      bigger.set(this.buf.subarray(0, this.len));
      this.buf = bigger;
    }
    this.buf.set(input, this.len);
    this.len += input.length;
    const maxOut = Math.ceil((this.len - this.t) / this.step) + 1;
    const out = new Float32Array(Math.max(0, maxOut));
    let n = 0;
    const { buf, table, taps, half, step } = this;
    let t = this.t;
    // An output at t needs inputs up to floor(t) + half.
    while (Math.floor(t) + half < this.len) {
      const i0 = Math.floor(t);
      let phase = Math.round((t - i0) * PHASES);
      let base = i0 - half + 1;
      if (phase === PHASES) {
        phase = 0;
        base += 1;
      }
      const row = phase * taps;
      let acc = 0;
      for (let j = 0; j < taps; j++) acc += buf[base + j] * table[row + j];
      out[n++] = acc;
      t += step;
    }
    // Keep only the history the next output needs.
    const drop = Math.max(0, Math.floor(t) - half + 1);
    if (drop > 0) {
      buf.copyWithin(0, drop, this.len);
      this.len -= drop;
      t -= drop;
    }
    this.t = t;
    return out.subarray(0, n);
  }
}

globalThis.AgentRunResampler = Resampler;

if (typeof AudioWorkletProcessor !== "undefined" && typeof registerProcessor === "function") {
  // Microphone -> Int16 PCM at processorOptions.outRate, posted in blocks of `blockMs` as
  // transferable ArrayBuffers. Its output stays silent (it only exists so the graph pulls it).
  class CaptureProcessor extends AudioWorkletProcessor {
    constructor(options) {
      super();
      const { outRate, blockMs = 20 } = options.processorOptions;
      this.resampler = new Resampler(sampleRate, outRate);
      this.blockSize = Math.round((outRate * blockMs) / 1000);
      this.block = new Int16Array(this.blockSize);
      this.fill = 0;
      this.running = true;
      this.port.onmessage = (e) => {
        if (e.data && e.data.type === "stop") this.running = false;
      };
    }

    process(inputs) {
      if (!this.running) return false;
      const channels = inputs[0];
      if (!channels || channels.length === 0) return true; // no input connected yet
      let mono = channels[0];
      if (channels.length > 1) {
        mono = new Float32Array(channels[0].length);
        for (const ch of channels) for (let i = 0; i < ch.length; i++) mono[i] += ch[i] / channels.length;
      }
      const out = this.resampler.push(mono);
      for (let i = 0; i < out.length; i++) {
        const s = Math.max(-1, Math.min(1, out[i]));
        this.block[this.fill++] = s < 0 ? Math.round(s * 0x8000) : Math.round(s * 0x7fff);
        if (this.fill === this.block.length) {
          const buffer = this.block.buffer;
          this.port.postMessage(buffer, [buffer]);
          this.block = new Int16Array(this.blockSize); // the old one went with the message
          this.fill = 0;
        }
      }
      return true;
    }
  }

  // Assistant PCM (Int16 at processorOptions.inRate, posted as ArrayBuffers) -> the context's rate.
  // Queued audio plays back to back with no gap; {type: "flush"} drops everything queued, so the
  // sound stops at the next render quantum (128 frames). The server sends audio at the pace it
  // plays, so after silence playback starts once `prebufferMs` is queued (or has waited that long):
  // network jitter then does not break up the voice. Statistics go back to the page about every
  // `reportMs` and after each flush. A {type: "mark", name} queued among the audio goes back to the
  // page as soon as the audio before it has been rendered (a flush drops it unanswered).
  class PlaybackProcessor extends AudioWorkletProcessor {
    constructor(options) {
      super();
      const { inRate, maxQueueSeconds = 600, reportMs = 100, prebufferMs = 60 } = options.processorOptions;
      this.inRate = inRate;
      this.resampler = new Resampler(inRate, sampleRate);
      this.queue = []; // Float32Arrays at the context rate
      this.head = 0; // read position in queue[0]
      this.queued = 0; // frames queued, at the context rate
      this.maxQueued = maxQueueSeconds * sampleRate;
      this.reportFrames = Math.round((reportMs / 1000) * sampleRate);
      this.sinceReport = 0;
      this.prebuffer = Math.round((prebufferMs / 1000) * sampleRate);
      this.waited = 0; // frames rendered silent while audio was queued but not yet playing
      this.stats = { received: 0, played: 0, dropped: 0, flushes: 0, underruns: 0 };
      this.playing = false;
      this.port.onmessage = (e) => this.onMessage(e.data);
    }

    onMessage(data) {
      if (data instanceof ArrayBuffer) {
        const pcm = new Int16Array(data);
        const f = new Float32Array(pcm.length);
        for (let i = 0; i < pcm.length; i++) f[i] = pcm[i] / 0x8000;
        this.stats.received += pcm.length;
        const out = this.resampler.push(f);
        if (this.queued + out.length > this.maxQueued) {
          this.stats.dropped += out.length;
          return;
        }
        if (out.length > 0) {
          this.queue.push(out.slice());
          this.queued += out.length;
        }
      } else if (data && data.type === "mark") {
        this.queue.push({ mark: String(data.name) });
      } else if (data && data.type === "flush") {
        this.queue = [];
        this.head = 0;
        this.queued = 0;
        this.resampler.reset();
        this.playing = false;
        this.waited = 0;
        this.stats.flushes += 1;
        this.report();
      }
    }

    report() {
      this.sinceReport = 0;
      // Frames are counted at the context rate; the page wants samples of the assistant's audio.
      const ratio = this.inRate / sampleRate;
      this.port.postMessage({
        type: "stats",
        received: this.stats.received,
        played: Math.round(this.stats.played * ratio),
        dropped: Math.round(this.stats.dropped * ratio),
        queuedMs: (this.queued / sampleRate) * 1000,
        flushes: this.stats.flushes,
        underruns: this.stats.underruns,
      });
    }

    process(_inputs, outputs) {
      const out = outputs[0][0];
      let i = 0;
      if (!this.playing && this.queued > 0 && this.queued < this.prebuffer && this.waited < this.prebuffer) {
        this.waited += out.length;
        i = out.length; // stay silent a little longer (filled with zeros below)
        out.fill(0);
        this.tick(out.length);
        return true;
      }
      this.waited = 0;
      while (i < out.length && this.queue.length > 0) {
        const chunk = this.queue[0];
        if (!(chunk instanceof Float32Array)) {
          this.reached(chunk.mark, i);
          continue;
        }
        const n = Math.min(out.length - i, chunk.length - this.head);
        out.set(chunk.subarray(this.head, this.head + n), i);
        i += n;
        this.head += n;
        if (this.head === chunk.length) {
          this.queue.shift();
          this.head = 0;
        }
      }
      // Marks right behind the audio rendered now: what came before them has played.
      while (this.queue.length > 0 && !(this.queue[0] instanceof Float32Array)) this.reached(this.queue[0].mark, i);
      this.queued -= i;
      this.stats.played += i;
      if (i > 0) this.playing = true;
      if (i < out.length) {
        out.fill(0, i);
        // Ran dry in the middle of an answer: a gap the listener hears (the end of an answer also
        // lands here once, which is counted too; the page reports the rate, not the count).
        if (this.playing) this.stats.underruns += 1;
        this.playing = false;
      }
      this.tick(out.length);
      return true;
    }

    // A mark reached after `frames` more were rendered in this quantum; `played` counts samples of
    // the assistant's audio (at its rate) rendered up to it.
    reached(name, frames) {
      this.queue.shift();
      const played = Math.round(((this.stats.played + frames) * this.inRate) / sampleRate);
      this.port.postMessage({ type: "mark", name, played });
    }

    tick(frames) {
      this.sinceReport += frames;
      if (this.sinceReport >= this.reportFrames) this.report();
    }
  }

  registerProcessor("agent-run-capture", CaptureProcessor);
  registerProcessor("agent-run-playback", PlaybackProcessor);
}
