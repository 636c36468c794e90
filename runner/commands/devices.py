"""`agent-run devices`: list the audio devices PortAudio sees (for --input-device/--output-device)."""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

from runner.audio.pyaudio_device import HEADLESS_HINT, DeviceInfo, list_devices
from runner.errors import AudioDeviceError


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "devices", help="list audio input and output devices",
        description="List the audio devices PortAudio sees. Pass an index or a name substring to "
                    "--input-device / --output-device. '*' marks the defaults.")
    p.add_argument("--json", action="store_true", help="print the devices as a JSON array")


def _table(title: str, devices: list[DeviceInfo], kind: str) -> list[str]:
    rows = [d for d in devices if (d.max_input_channels if kind == "input" else d.max_output_channels) > 0]
    lines = [f"{title}:"]
    if not rows:
        return [*lines, "  (none)"]
    width = max(len(d.name) for d in rows)
    for d in rows:
        default = d.is_default_input if kind == "input" else d.is_default_output
        channels = d.max_input_channels if kind == "input" else d.max_output_channels
        lines.append(f"  {'*' if default else ' '} {d.index:>3}  {d.name:<{width}}  {d.host_api:<6}"
                     f"  {channels:>2} ch  {d.default_sample_rate:>7.0f} Hz")
    return lines


def run(args: argparse.Namespace) -> int:
    devices = list_devices()
    if not devices:
        raise AudioDeviceError(f"no audio devices found; {HEADLESS_HINT}")
    if args.json:
        print(json.dumps([dataclasses.asdict(d) for d in devices], indent=2))
        return 0
    print("\n".join([*_table("Input devices", devices, "input"), "",
                     *_table("Output devices", devices, "output")]))
    return 0
