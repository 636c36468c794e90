#!/usr/bin/env bash
# Regenerate the speech fixtures: espeak-ng (22.05 kHz) -> sox -> 16 kHz mono 16-bit PCM WAV.
# `norm -3` leaves headroom (espeak output clips by a sample after resampling). The texts are listed in samples/README.md; the emulator's scenarios use them as what the user "said".
set -euo pipefail
cd "$(dirname "$0")"

say() {  # say FILE TEXT
  espeak-ng -v en-us -s 150 --stdout "$2" | sox -t wav - -r 16000 -c 1 -b 16 -e signed-integer "$1" norm -3
  echo "$1: $(soxi -D "$1") s"
}

say where_is_my_order.wav "Where is my order 12345?"
say what_time_is_it.wav "What time is it?"
say thanks_bye.wav "Thanks, bye!"
