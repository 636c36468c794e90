"""Issue 13: hostile values in agent and scenario files and on the command line, through the real CLI.

Four classes, each refused with the documented user error (exit 1, or 2 for a bad option), located
at FILE:LINE:COL when a file is at fault, never a traceback (exit 3) and never a run on a value
that cannot work:
- deep nesting (thousands of `[`, aliases of aliases, an `input_schema` nested past its limit);
- control characters and lone surrogates in values, paths and `--var`s (raw bytes in argv too);
- numbers: 5000-digit integers, NaN and infinity, integer fields written as floats, absurd WAV
  headers;
- `$ref`s in a tool's `input_schema` that are not local to the schema.
`check --json` must stay valid JSON for every one of them.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAD = "version: 1\nname: t\nmodel: {id: amazon.nova-2-sonic-v1:0}\nvoice: matthew\n"
AGENT = HEAD + "system_prompt: Hello.\n"
TOOL = ("tools:\n  - name: clock\n    description: The time.\n    handler: builtin:current_datetime\n"
        "    input_schema: ")
TIMEOUT_S = 30
BIG = "9" * 5000


def cli(*args: str | Path | bytes) -> subprocess.CompletedProcess[str]:
    """The real CLI; arguments may be raw bytes (argv that is not UTF-8)."""
    argv = [a if isinstance(a, bytes) else os.fsencode(str(a)) for a in args]
    result = subprocess.run([os.fsencode(sys.executable), b"-m", b"runner", *argv], cwd=ROOT,
                            capture_output=True, timeout=TIMEOUT_S, check=False)
    out = subprocess.CompletedProcess(result.args, result.returncode,
                                      result.stdout.decode("utf-8", "backslashreplace"),
                                      result.stderr.decode("utf-8", "backslashreplace"))
    assert "Traceback" not in out.stdout + out.stderr, out.stdout + out.stderr
    assert out.returncode in (0, 1, 2), out.stdout + out.stderr
    return out


def errors(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stdout.splitlines() if ": error: " in line]


def check_all_ways(path: Path) -> list[str]:
    """`check` refuses `path` cleanly (exit 1): its error lines. (`check --json` and `render` get
    one file of each class in test_check_json_and_render_refuse_every_class_cleanly.)"""
    checked = cli("check", path)
    assert checked.returncode == 1, checked.stdout
    return errors(checked)


# --- deep nesting ------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "col"), [
    # `vars: {x: `: the file's mapping is level 1, `{` level 2, the first `[` (column 11) level 3.
    ("[" * 5000 + "]" * 5000, 11 + 62),
    ("{a: " * 3000 + "1" + "}" * 3000, 11 + 62 * 4),
])
def test_thousands_of_nested_flow_collections_are_refused_at_the_one_that_goes_over(
        tmp_path: Path, value: str, col: int) -> None:
    agent = tmp_path / "deep.yaml"
    agent.write_text(AGENT + f"vars: {{x: {value}}}\n")
    # (before: "1:1: ... nested too deeply", no location; a little less deep crashed jsonschema)
    assert check_all_ways(agent) == [f"{agent}:6:{col}: error: invalid YAML: lists and mappings nested "
                                     f"more than 64 levels deep"]


def test_block_nesting_past_the_limit_is_refused_at_its_line(tmp_path: Path) -> None:
    agent = tmp_path / "deep.yaml"
    agent.write_text(AGENT + "description:\n" + "".join("  " * i + "-\n" for i in range(1, 80)))
    # description's list (line 7) is level 2; the one on line 70 is level 65.
    assert check_all_ways(agent) == [f"{agent}:70:129: error: invalid YAML: lists and mappings nested "
                                     f"more than 64 levels deep"]


def test_aliases_of_aliases_nesting_past_the_limit_are_refused_at_the_alias(tmp_path: Path) -> None:
    agent = tmp_path / "alias.yaml"
    chain = "".join(f"  l{i}: &l{i} [*l{i - 1}]\n" for i in range(1, 200))
    agent.write_text(AGENT + "vars:\n  l0: &l0 [1]\n" + chain)
    # vars is level 2, so vars.l62 (line 69), 63 nested lists, reaches level 65 through its `*l61`.
    assert check_all_ways(agent) == [f"{agent}:69:14: error: invalid YAML: alias *l61 nests lists and "
                                     f"mappings more than 64 levels deep"]


def test_merge_keys_chained_past_the_limit_are_refused(tmp_path: Path) -> None:
    agent = tmp_path / "merge.yaml"
    chain = "".join(f"  b{i}: &b{i} {{<<: *b{i - 1}}}\n" for i in range(1, 300))
    agent.write_text(AGENT + "vars:\n  b0: &b0 {x: 1}\n" + chain)
    found = check_all_ways(agent)
    assert len(found) == 1 and "merge keys (<<) chained more than 64 levels deep" in found[0], found


def test_an_input_schema_nested_past_its_limit_is_refused_where_it_goes_over(tmp_path: Path) -> None:
    agent = tmp_path / "schema.yaml"
    nested = "{type: object, properties: {timezone: " + "{items: " * 30 + "{}" + "}" * 30 + "}}"
    agent.write_text(AGENT + TOOL + nested + "\n")
    # input_schema (level 1), properties, timezone, then `items`: the 30th `items` key holds level 33.
    col = 1 + len("    input_schema: {type: object, properties: {timezone: ") + len("{items: ") * 29 + 1
    assert check_all_ways(agent) == [f"{agent}:10:{col}: error: tools[0].input_schema is nested more than "
                                     f"32 levels deep"]


def test_a_deeply_nested_scenario_is_refused_before_the_emulator_serves(tmp_path: Path) -> None:
    scenario = tmp_path / "deep.scenario.yaml"
    scenario.write_text("turns:\n  - assistant:\n      - tool: clock\n        input: "
                        + "{a: " * 3000 + "1" + "}" * 3000 + "\n")
    result = cli("emulate", "-q", "--scenario", scenario)
    assert result.returncode == 1
    assert f"{scenario}:4:" in result.stderr and "nested more than 64 levels deep" in result.stderr


# --- control characters and lone surrogates --------------------------------------------------

@pytest.mark.parametrize(("text", "line", "col", "message"), [
    (HEAD + 'system_prompt_file: "a\\0b"\n', 5, 21, "control character U+0000 at character 2"),
    (AGENT + 'templates: "x\\0"\n', 6, 12, "control character U+0000 at character 2"),
    (AGENT + TOOL.replace("builtin:current_datetime", '"m\\0:f"') + "{type: object}\n", 9, 14,
     "control character U+0000 at character 2"),
    (AGENT + 'description: "ring \\x07 ring"\n', 6, 14, "control character U+0007 at character 6"),
    (AGENT + 'description: "\\e[2J"\n', 6, 14, "control character U+001B at character 1"),
    (HEAD + 'system_prompt: "hi \\ud800"\n', 5, 16, "lone surrogate U+D800 at character 4"),
    (AGENT + 'vars: {"\\udfff": 1}\n', 6, 8, "lone surrogate U+DFFF at character 1"),
    (AGENT + TOOL + '{type: object, properties: {"\\ud800": {type: string}}}\n', 10, 47,
     "lone surrogate U+D800 at character 1"),
])
def test_control_characters_and_lone_surrogates_are_refused_at_the_value(
        tmp_path: Path, text: str, line: int, col: int, message: str) -> None:
    agent = tmp_path / "agent.yaml"
    agent.write_text(text)
    found = check_all_ways(agent)
    assert len(found) == 1, found
    assert found[0].startswith(f"{agent}:{line}:{col}: error: invalid text: {message}"), found


@pytest.mark.parametrize(("key", "value"), [("name", "a\\tb"), ("system_prompt_file", "p\\nq.txt"),
                                            ("templates", "t\\tt")])
def test_names_and_paths_hold_no_tab_or_newline(tmp_path: Path, key: str, value: str) -> None:
    agent = tmp_path / "agent.yaml"
    head = HEAD.replace("name: t\n", "") if key == "name" else HEAD
    prompt = "" if key == "system_prompt_file" else "system_prompt: Hi.\n"
    agent.write_text(head + prompt + f'{key}: "{value}"\n')
    found = check_all_ways(agent)
    assert len(found) == 1 and f"error: {key}: must not contain control characters" in found[0], found


def test_tabs_newlines_and_surrogate_pairs_are_fine_in_text(tmp_path: Path) -> None:
    agent = tmp_path / "agent.yaml"
    agent.write_text(HEAD + 'system_prompt: "Say\\tthis:\\n\\ud83d\\ude00"\n')
    result = cli("render", agent)
    assert result.returncode == 0, result.stderr
    # JSON's way to write an emoji, as the one character it stands for.
    assert '"content":"Say\\tthis:\\n\U0001F600"' in result.stdout


def test_a_template_that_writes_a_lone_surrogate_or_nul_is_refused(tmp_path: Path) -> None:
    agent = tmp_path / "agent.yaml"
    agent.write_text(HEAD + "system_prompt: \"{{ '\\\\ud800' }} hi\"\ngreeting: \"{{ '\\\\x00' }}\"\n")
    assert check_all_ways(agent) == [
        f"{agent}:5:1: error: the rendered system prompt has a lone surrogate U+D800 at character 1 "
        f"(half of a UTF-16 pair: not a character, it cannot be written as UTF-8)",
        f"{agent}:6:1: error: the rendered greeting has a control character U+0000 at character 1 "
        f"(text may hold tab and newline, no other control character)"]


def test_a_prompt_file_with_a_nul_byte_is_refused_at_the_byte(tmp_path: Path) -> None:
    (tmp_path / "p.txt").write_bytes(b"Hello.\nthere \x00 x\n")
    agent = tmp_path / "agent.yaml"
    agent.write_text(HEAD + "system_prompt_file: p.txt\n")
    found = check_all_ways(agent)
    assert found == [f"{tmp_path / 'p.txt'}:2:7: error: system prompt: control character U+0000 (text may "
                     f"hold tab and newline, no other control character)"]


@pytest.mark.parametrize("command", ["check", "render"])
def test_a_var_value_that_is_not_utf8_is_a_usage_error_naming_the_variable(
        tmp_path: Path, command: str) -> None:
    agent = tmp_path / "agent.yaml"
    agent.write_text(HEAD + "vars: {who: you}\nsystem_prompt: Hello {{ who }}.\n")
    result = cli(command, "--var", b"who=caf\xe9", agent)
    assert result.returncode == 2
    assert "argument --var: the value of who is not UTF-8 text (byte 0xe9 at byte 4)" in result.stderr
    result = cli(command, "--var", "who=a\x1b[2Jb", agent)
    assert result.returncode == 2
    assert "argument --var: the value of who has a control character U+001B" in result.stderr


# --- numbers ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "col"), [
    (AGENT.replace("version: 1", f"version: {BIG}"), None),
    (AGENT + f"inference: {{temperature: {BIG}}}\n", 26),
    (AGENT + f"description: {BIG}\n", 14),
    (AGENT + f"vars: {{n: {BIG}}}\n", 11),
    (AGENT + TOOL + f"{{type: object, maxProperties: -{BIG}}}\n", 49),
])
def test_a_5000_digit_integer_is_refused_at_the_value(tmp_path: Path, text: str, col: int | None) -> None:
    agent = tmp_path / "big.yaml"
    agent.write_text(text)
    found = check_all_ways(agent)  # before: ValueError (int-to-str limit), exit 3
    line = 1 if col is None else text.count("\n", 0, text.index(BIG)) + 1
    assert len(found) == 1, found
    assert found[0].startswith(f"{agent}:{line}:{col or 10}: error: invalid number: "), found
    assert "characters) is out of range (integers are at most 9223372036854775807 in size)" in found[0]


@pytest.mark.parametrize(("text", "special"), [
    ("inference: {temperature: .nan}", ".nan"), ("inference: {top_p: .NaN}", ".NaN"),
    ("inference: {max_tokens: .inf}", ".inf"), ("session: {rotate_after_s: .nan}", ".nan"),
    ("audio: {chunk_ms: -.inf}", "-.inf"), ("audio: {input_sample_rate: .nan}", ".nan"),
    ("vars: {x: .inf}", ".inf"), ("inference: {temperature: 1.0e+999}", "1.0e+999"),
    (TOOL.replace("handler:", "timeout_s: .nan\n    handler:") + "{type: object}", ".nan"),
    (TOOL.replace("handler:", "max_result_bytes: .inf\n    handler:") + "{type: object}", ".inf"),
])
def test_nan_and_infinity_are_refused_at_the_value(tmp_path: Path, text: str, special: str) -> None:
    agent = tmp_path / "nan.yaml"
    agent.write_text(AGENT + text + "\n")
    found = check_all_ways(agent)  # before: .nan temperatures, top_p, timeouts... were accepted
    line = 6 + text.count("\n", 0, text.index(special))
    col = len(text[:text.index(special)].rsplit("\n", 1)[-1]) + 1
    assert len(found) == 1, found
    assert found[0].startswith(f"{agent}:{line}:{col}: error: invalid number: {special} "), found


@pytest.mark.parametrize(("text", "col", "message"), [
    ("description: 2026-13-45", 14,
     "invalid value: '2026-13-45' is not a valid timestamp (month must be in 1..12)"),
    ("vars: {born: 0000-01-01}", 14,
     "invalid value: '0000-01-01' is not a valid timestamp (year 0 is out of range)"),
    ("vars: {n: !!int x}", 11, "invalid value: 'x' is not a valid int"),
    ("vars: {b: !!bool maybe}", 11, "invalid value: 'maybe' is not a valid bool"),
    (TOOL + "{type: object, properties: {timezone: {type: string, default: 2026-01-01}}}", 72,
     "tools[0].input_schema.properties.timezone.default: a date (2026-01-01; quote it to make it text) has "
     "no JSON form"),
    (TOOL + "{type: object, properties: {timezone: {type: string, default: !!binary aGk=}}}", 72,
     "tools[0].input_schema.properties.timezone.default: bytes has no JSON form"),
])
def test_values_their_tag_cannot_hold_or_json_cannot_carry_are_refused(
        tmp_path: Path, text: str, col: int, message: str) -> None:
    agent = tmp_path / "agent.yaml"
    agent.write_text(AGENT + text + "\n")
    found = check_all_ways(agent)  # before: ValueError/KeyError tracebacks, or a render that failed
    line = 6 + text.count("\n")
    assert len(found) == 1 and found[0].startswith(f"{agent}:{line}:{col}: error: {message}"), found


def test_a_scenario_tool_input_holding_a_date_is_refused(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text("turns:\n  - assistant:\n      - tool: clock\n        input: {day: 2026-01-01}\n")
    result = cli("emulate", "-q", "--scenario", scenario)  # before: served, then failed the call
    assert result.returncode == 1
    assert f"{scenario}:4:17: error: turns[0].assistant[0].input.day: this value has no JSON form" \
        in result.stderr


def test_integer_fields_written_as_floats_become_integers(tmp_path: Path) -> None:
    agent = tmp_path / "floats.yaml"
    agent.write_text(AGENT + "inference: {max_tokens: 512.0}\n"
                     + "audio: {input_sample_rate: 8000.0, chunk_ms: 20.0}\n"
                     + TOOL.replace("handler:", "max_result_bytes: 4096.0\n    handler:")
                     + "{type: object, properties: {timezone: {type: string}}}\n")
    result = cli("render", agent)
    assert result.returncode == 0, result.stderr
    # (before: "maxTokens":512.0 and "sampleRateHertz":8000.0 went to the service; the tool with
    # a float max_result_bytes was silently left out of the agent)
    assert '"maxTokens":512,' in result.stdout and '"sampleRateHertz":8000,' in result.stdout
    assert '"name":"clock"' in result.stdout


@pytest.mark.parametrize(("var", "message"), [
    (f"n={BIG}", "--var n: '999999999999999999999999999999...(5000 characters)' is out of range"),
    ("ratio=nan", "--var ratio: expected a finite number, got 'nan'"),
    ("ratio=-inf", "--var ratio: expected a finite number, got '-inf'"),
    (f"ratio={BIG}", "--var ratio: expected a finite number, got '99999999999"),
])
def test_var_numbers_are_finite_and_in_range(tmp_path: Path, var: str, message: str) -> None:
    agent = tmp_path / "vars.yaml"
    agent.write_text(HEAD + "vars: {n: 3, ratio: 0.5}\nsystem_prompt: '{{ n }} {{ ratio }}'\n")
    result = cli("check", "--var", var, agent)
    assert result.returncode == 1
    assert len(errors(result)) == 1 and message in errors(result)[0], result.stdout
    assert cli("render", "--var", var, agent).returncode == 1


@pytest.mark.parametrize(("text", "message"), [
    ("settings: {speed: .nan}", "1:19: error: invalid number: .nan is not a finite number"),
    (f"faults: {{reset_after_events: {BIG}}}",
     "1:30: error: invalid number: 9999999999...9999 (5000 characters)"),
    ("faults: {time_limit_s: 1.0e+300}",
     "1:10: error: faults.time_limit_s: must be at most 86400, got 1e+300"),
    ("faults: {stream_error_at_turn: 1000000000}",
     "1:10: error: faults.stream_error_at_turn: must be at most 100000"),
])
def test_scenario_numbers_are_finite_and_in_range(tmp_path: Path, text: str, message: str) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(text + "\n")
    result = cli("emulate", "-q", "--scenario", scenario)  # before: served (.nan) or crashed (exit 3)
    assert result.returncode == 1 and f"{scenario}:{message}" in result.stderr, result.stderr


def _wav(rate: int = 16000, channels: int = 1, width: int = 2, data: bytes = b"\0\0" * 1600,
         declared: int | None = None) -> bytes:
    size = len(data) if declared is None else declared
    fmt = struct.pack("<IHHIIHH", 16, 1, channels, rate, (rate * channels * width) % 2**32,
                      (channels * width) % 2**16, width * 8)
    return b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE" + b"fmt " + fmt + b"data" \
        + struct.pack("<I", size) + data


@pytest.mark.parametrize(("wav", "message"), [
    (_wav(rate=1), "sample rate 1 Hz in the header is not an audio rate (1000-384000 Hz are accepted)"),
    (_wav(rate=0), "sample rate 0 Hz in the header is not an audio rate"),
    (_wav(rate=4_000_000_000), "sample rate 4000000000 Hz in the header is not an audio rate"),
    (_wav(channels=0), "not a PCM WAV file (bad # of channels)"),
    (_wav(channels=1000, data=b"\0" * 4000), "1000 channels in the header (1-32 are accepted)"),
    (_wav(width=0), "not a PCM WAV file (bad sample width)"),
    (_wav(declared=10**9), "the data chunk claims 1000000000 bytes of audio but the file holds 3200"),
    (_wav(data=b"\0" * 3001, declared=10**6),
     "the data chunk claims 1000000 bytes of audio but the file holds 3001"),
])
def test_a_wav_with_an_absurd_header_is_refused_before_the_run_starts(
        tmp_path: Path, wav: bytes, message: str) -> None:
    (tmp_path / "in.wav").write_bytes(wav)
    out = tmp_path / "out.wav"
    result = cli("agents/simple.yaml", "--emulate", "--input", tmp_path / "in.wav", "--output", out, "-q")
    # before: ValueError tracebacks (0 Hz, odd sizes) or a 1 Hz file resampled to 16,000 times its size
    assert result.returncode == 1, result.stderr
    assert f"agent-run: error: {tmp_path / 'in.wav'}: {message}" in result.stderr
    assert not out.exists()  # nothing was created: the run never started


def test_a_streamed_wav_of_unknown_length_plays_what_it_holds(tmp_path: Path) -> None:
    # ffmpeg or sox writing into a pipe marks the data length 0xFFFFFFFF: not an absurd header.
    wav = (ROOT / "samples" / "thanks_bye.wav").read_bytes()
    at = wav.index(b"data") + 4
    (tmp_path / "in.wav").write_bytes(wav[:at] + b"\xff\xff\xff\xff" + wav[at + 4:] + b"\0")
    out = tmp_path / "out.wav"
    result = cli("agents/simple.yaml", "--emulate", "--input", tmp_path / "in.wav", "--output", out, "-q")
    assert result.returncode == 0, result.stderr
    assert out.stat().st_size > 44


# --- $ref in a tool's input_schema ---------------------------------------------------------------

@pytest.mark.parametrize(("schema", "ref", "message"), [
    ("{type: object, properties: {timezone: {$ref: 'https://example.com/tz.json'}}}",
     "https://example.com/tz.json", "is not a reference inside this schema"),
    ("{type: object, properties: {timezone: {$ref: 'file:///etc/passwd'}}}",
     "file:///etc/passwd", "is not a reference inside this schema"),
    ("{type: object, properties: {timezone: {$ref: '../secrets.json'}}}",
     "../secrets.json", "is not a reference inside this schema"),
    ("{$id: 'https://example.com/x.json', type: object, properties: {timezone: {$ref: 'tz.json'}}}",
     "tz.json", "is not a reference inside this schema"),
    ("{type: object, properties: {timezone: {$dynamicRef: 'http://127.0.0.1:9/x'}}}",
     "http://127.0.0.1:9/x", "is not a reference inside this schema"),
    ("{type: object, properties: {timezone: {$ref: '#/$defs/nowhere'}}}",
     "#/$defs/nowhere", "does not point at anything in this schema"),
])
def test_a_ref_that_is_not_local_to_the_schema_is_refused_at_its_line(
        tmp_path: Path, schema: str, ref: str, message: str) -> None:
    agent = tmp_path / "ref.yaml"
    agent.write_text(AGENT + TOOL + schema + "\n")
    found = check_all_ways(agent)  # before: accepted, and resolved (fetched) when the tool was called
    keyword = "$dynamicRef" if "$dynamicRef" in schema else "$ref"
    col = len("    input_schema: ") + schema.index(keyword) + 1
    why = (": only local references ('#/$defs/NAME') are allowed; nothing is ever fetched from the "
           "network or read from a file") if "inside" in message else ""
    assert found == [f"{agent}:10:{col}: error: tools[0].input_schema.properties.timezone.{keyword}: "
                     f"{ref!r} {message}{why}"]


def test_local_refs_work(tmp_path: Path) -> None:
    agent = tmp_path / "ref.yaml"
    agent.write_text(AGENT + TOOL + "{type: object, $defs: {tz: {type: string}}, "
                                    "properties: {timezone: {$ref: '#/$defs/tz'}}}\n")
    result = cli("check", agent)
    assert result.returncode == 0, result.stdout


# --- check --json and render, for one input of each class ----------------------------------------

REPRESENTATIVES = {
    "deep.yaml": AGENT + "vars: {x: " + "[" * 5000 + "]" * 5000 + "}\n",
    "nul.yaml": HEAD + 'system_prompt_file: "a\\0b"\n',
    "surrogate.yaml": HEAD + 'system_prompt: "hi \\ud800"\n',
    "template.yaml": HEAD + "system_prompt: \"{{ '\\\\udfff' }}\"\n",
    "big.yaml": AGENT + f"inference: {{temperature: {BIG}}}\n",
    "nan.yaml": AGENT + "session: {rotate_after_s: .nan}\n",
    "schema.yaml": AGENT + TOOL + "{type: object, properties: {timezone: " + "{items: " * 30 + "{}"
    + "}" * 30 + "}}\n",
    "ref.yaml": AGENT + TOOL + "{type: object, properties: {timezone: {$ref: 'https://example.com/x'}}}\n",
}


def test_check_json_and_render_refuse_every_class_cleanly(tmp_path: Path) -> None:
    paths = []
    for name, text in REPRESENTATIVES.items():
        paths.append(tmp_path / name)
        paths[-1].write_text(text)
    raw = os.fsencode(tmp_path) + b"/\xff\x07.yaml"  # a name that is not UTF-8, with a control character
    with open(raw, "w", encoding="utf-8") as f:
        f.write(AGENT + "inference: {temperature: .nan}\n")
    checked = cli("check", *paths, raw)
    assert checked.returncode == 1
    as_json = cli("check", "--json", *paths, raw)
    assert as_json.returncode == 1
    problems = json.loads(as_json.stdout)  # before: a traceback instead of JSON for most of these
    lines = [f"{p['file']}:{p['line']}:{p['col']}: {p['severity']}: {p['message']}" for p in problems]
    assert lines == errors(checked)
    assert {p["file"] for p in problems} == {*map(str, paths), f"{tmp_path}/\\xff\\x07.yaml"}
    assert len(problems) == len(paths) + 1, lines  # one error per file
    for path, line in zip([*paths, raw], lines, strict=True):
        rendered = cli("render", path)
        assert rendered.returncode == 1 and rendered.stdout == "", rendered.stdout
        assert line in rendered.stderr


def test_a_scenario_say_that_renders_a_nul_or_a_lone_surrogate_is_spoken_not_crashed(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text("turns:\n  - assistant:\n      - say: \"{{ '\\\\ud800' }} and {{ '\\\\x00' }}\"\n")
    transcript = tmp_path / "t.jsonl"
    result = cli("agents/simple.yaml", "--emulate", scenario, "--input", ROOT / "samples" / "thanks_bye.wav",
                 "--output", tmp_path / "out.wav", "--transcript", transcript, "-q")
    # before: the emulator's espeak-ng call raised UnicodeEncodeError (a traceback in the run)
    assert result.returncode == 0, result.stderr
    texts = [json.loads(line).get("text") for line in transcript.read_text().splitlines()]
    assert "\ufffd and \ufffd" in texts, texts


def test_an_event_template_that_writes_a_lone_surrogate_is_refused_at_its_line(tmp_path: Path) -> None:
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "textInput.json.j2").write_text(
        '{"event": {"textInput": {\n  "promptName": {{ prompt_name | tojson }},\n'
        '  "contentName": {{ content_name | tojson }},\n'
        '  "content": {{ ("\\ud800" ~ content) | tojson }}\n}}}\n')
    agent = tmp_path / "agent.yaml"
    agent.write_text(AGENT + "templates: t\n")
    # before: check passed and render (or a run) ended in a UnicodeEncodeError traceback
    assert check_all_ways(agent) == [f"{tmp_path / 't' / 'textInput.json.j2'}:4:1: error: rendered textInput "
                                     f"holds a lone surrogate U+D800, which has no UTF-8 form"]
    rendered = cli("render", agent)
    assert rendered.returncode == 1 and "holds a lone surrogate U+D800" in rendered.stderr


def test_names_too_long_for_the_file_system_are_errors_not_tracebacks(tmp_path: Path) -> None:
    long = "a" * 5000  # ENAMETOOLONG from every lookup
    agent = tmp_path / "agent.yaml"
    agent.write_text(AGENT + f"templates: {long}\n" + TOOL.replace("builtin:current_datetime", f"{long}:f")
                     + "{type: object}\n")
    found = check_all_ways(agent)  # before: OSError tracebacks (exit 3)
    assert found == [
        f"{agent}:6:1: error: templates folder '{'a' * 50}...(5000 characters)': File name too long",
        f"{agent}:10:5: error: tools[0].handler: cannot look for the module of "
        f"'{'a' * 50}...(5002 characters)': File name too long"]
    result = cli("check", tmp_path / f"{long}.yaml")
    assert result.returncode == 1
    assert errors(result) == [f"{tmp_path}/{long}.yaml:1:1: error: cannot read: file name too long"]


@pytest.mark.parametrize(("say", "why"), [
    ("{{ " + "[" * 400 + " }}", "expressions nested too deeply"),
    ("{{ " + BIG + " }}", "ValueError: Exceeds the limit (4300 digits) for integer string conversion"),
])
def test_a_scenario_say_template_that_cannot_compile_is_refused_at_load(
        tmp_path: Path, say: str, why: str) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(f'turns:\n  - assistant:\n      - say: "{say}"\n')
    result = cli("emulate", "-q", "--scenario", scenario)  # before: RecursionError/ValueError traceback
    assert result.returncode == 1
    assert f"{scenario}:3:14: error: turns[0].assistant[0].say: template cannot be compiled: {why}" \
        in result.stderr
