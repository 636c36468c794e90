#!/usr/bin/env bash
# Private PulseAudio daemon with two null sinks, so PortAudio works on a machine without a sound card.
#
#   spk : the default OUTPUT (24 kHz mono); record what an app played from "spk.monitor"
#   mic : play test speech into it (paplay -d mic f.wav); its monitor is the default INPUT (16 kHz mono)
#
# Usage:
#   eval "$(tests/audio_env.sh start [DIR])"   # prints export lines for XDG_RUNTIME_DIR and PULSE_SERVER
#   tests/audio_env.sh stop DIR
#
# DIR (default: a new temp dir) becomes the daemon's XDG_RUNTIME_DIR, so the daemon is private to
# whoever uses that dir and never touches a user's own PulseAudio. `norewinds=1` is essential: without
# it the monitor source loses or garbles audio (offline-audio.md §1.1). The daemon must run before a
# process creates `pyaudio.PyAudio()`: ALSA decides once per process whether "default" means pulse.
set -euo pipefail

cmd="${1:-}"
dir="${2:-}"

start() {
  if [ -z "$dir" ]; then dir="$(mktemp -d "${TMPDIR:-/tmp}/agent-run-pulse.XXXXXX")"; fi
  mkdir -p "$dir" && chmod 700 "$dir"
  export XDG_RUNTIME_DIR="$dir"
  unset PULSE_SERVER
  # -n: skip default.pa (no udev or hardware probing); never exit on idle.
  pulseaudio --daemonize=yes -n --exit-idle-time=-1 --disallow-exit --use-pid-file=yes \
    --log-target=file:"$dir/pulse.log" \
    --load=module-native-protocol-unix \
    --load="module-null-sink sink_name=spk rate=24000 channels=1 norewinds=1" \
    --load="module-null-sink sink_name=mic rate=16000 channels=1 norewinds=1" >/dev/null 2>&1 \
    || { echo "audio_env.sh: pulseaudio failed to start; see $dir/pulse.log" >&2; exit 1; }
  for _ in $(seq 100); do pactl info >/dev/null 2>&1 && break; sleep 0.05; done
  pactl info >/dev/null 2>&1 || { echo "audio_env.sh: pulseaudio not reachable in $dir" >&2; exit 1; }
  pactl set-default-sink spk
  pactl set-default-source mic.monitor
  echo "export XDG_RUNTIME_DIR='$dir'"
  echo "export PULSE_SERVER='unix:$dir/pulse/native'"
}

stop() {
  [ -n "$dir" ] || { echo "usage: audio_env.sh stop DIR" >&2; exit 2; }
  XDG_RUNTIME_DIR="$dir" pulseaudio --kill 2>/dev/null || true
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: audio_env.sh start [DIR] | stop DIR" >&2; exit 2 ;;
esac
