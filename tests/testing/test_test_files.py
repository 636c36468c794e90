"""Test files are checked like agent files: every problem at FILE:LINE:COL, nothing half-loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.errors import ConfigError
from runner.testing.load import check_tests, find_test_files, load_tests
from runner.testing.model import AudioInput, SpeechInput, TextInput

REPO = Path(__file__).resolve().parents[2]
AGENTS = REPO / "agents"


def write(tmp_path: Path, text: str, name: str = "t.test.yaml") -> Path:
    path = tmp_path / name
    path.write_text(f"version: 1\nagent: {AGENTS / 'orders.yaml'}\n{text}", encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    loaded, found = check_tests(path)
    assert loaded is None
    return [p.format().removeprefix(f"{path}:") for p in found]


@pytest.mark.parametrize("name", ["orders", "concierge", "simple"])
def test_the_shipped_examples_load(name: str) -> None:
    loaded, found = check_tests(AGENTS / f"{name}.test.yaml")
    assert found == []
    assert loaded is not None and loaded.tests.cases
    assert loaded.agent.name == name


def test_the_examples_carry_the_editor_modeline() -> None:
    for path in AGENTS.glob("*.test.yaml"):
        modeline = "# yaml-language-server: $schema=../schemas/agent-test.schema.json"
        assert path.read_text().startswith(modeline)


def test_a_valid_file_becomes_typed_values(tmp_path: Path) -> None:
    wav = tmp_path / "q.wav"
    wav.write_bytes((REPO / "samples" / "thanks_bye.wav").read_bytes())
    path = write(tmp_path, """\
timeout_s: 5
mocks: {trackOrderTool: {result: {orderStatus: Shipped}}}
cases:
  - name: one
    turns:
      - user: hi
        expect: [{says: hello}, {no_tool_called: true}]
      - say: bye
        barge_in_ms: 300
      - audio: q.wav
        wait_ms: 100
      - expect: [{interrupted: false}]
  - name: two
    targets: [emulator]
    mocks: {getDateAndTimeTool: {error: down}}
    timeout_s: 2.5
    model: {scenario: %s}
    turns: [{user: hi}]
""" % (REPO / "samples" / "orders.scenario.yaml"))
    tests = load_tests(path).tests
    one, two = tests.cases
    assert [type(t.input) for t in one.turns] == [TextInput, SpeechInput, AudioInput, type(None)]
    assert one.turns[1].barge_in_ms == 300 and one.turns[2].wait_ms == 100
    assert isinstance(one.turns[2].input, AudioInput) and one.turns[2].input.path == wav
    assert one.timeout_s == 5 and two.timeout_s == 2.5
    assert [e.where.line for e in one.turns[0].expectations] == [9, 9]
    assert set(two.mocks) == {"trackOrderTool", "getDateAndTimeTool"}  # the file's mocks, and the case's
    assert two.mocks["getDateAndTimeTool"].error == "down"
    assert one.model.scenario is None and two.model.scenario is not None
    assert one.targets == ("emulator", "bedrock") and two.targets == ("emulator",)
    assert str(one.where) == f"{path}:6"


def test_every_problem_is_located(tmp_path: Path) -> None:
    path = write(tmp_path, """\
vars: {nope: 1}
model:
  turns:
    - assistant:
        - sya: hi
mocks:
  trackOrdrTool: {result: 1}
cases:
  - name: x
    turns:
      - user: hi
        say: ho
      - user: hi
        expect:
          - tool_caled: trackOrderTool
          - says: {regex: "("}
          - says: 3
          - tool_called: {name: x, arg: {}}
          - {says: a, heard: b}
          - first_audio_within_ms: 0
      - audio: missing.wav
      - say: x
        wait_ms: 1
        barge_in_ms: 2
  - name: x
    turns: []
""")
    assert problems(path) == [
        "3:8: error: vars.nope: no such variable in vars (declared: none)",
        "7:11: error: unknown key 'sya' in model.turns[0].assistant[0]; did you mean 'say'?",
        "14:9: error: cases[0].turns[0]: a turn has one input: `user` (text), `say` (speech) or "
        "`audio` (a WAV); here: user, say",
        "17:13: error: unknown key 'tool_caled' in cases[0].turns[1].expect[0]; did you mean 'tool_called'?",
        "18:13: error: cases[0].turns[1].expect[1].says: invalid regular expression '(': missing ), "
        "unterminated subpattern at position 0",
        "19:13: error: cases[0].turns[1].expect[2].says: expected a text (contains) or "
        "{contains, not_contains, regex, not_regex}, got a number (3)",
        "20:36: error: unknown key 'arg' in cases[0].turns[1].expect[3].tool_called; did you mean 'args'?",
        "21:13: error: cases[0].turns[1].expect[4]: an expectation is one key, its kind (one of: "
        "tool_called, no_tool_called, says, heard, interrupted, first_audio_within_ms, "
        "tool_latency_below_ms, tokens_below, ended)",
        "22:13: error: cases[0].turns[1].expect[5].first_audio_within_ms: must be at least 1, got 0",
        f"23:9: error: cases[0].turns[2].audio: {tmp_path / 'missing.wav'} no such file",
        "26:9: error: cases[0].turns[3]: `wait_ms` waits for the assistant to finish, `barge_in_ms` "
        "does not: use one",
        "27:5: error: cases[1].name: 'x' is already the name of cases[0]",
        "28:5: error: cases[1].turns: must not be empty",
    ]


def test_tool_names_are_checked_against_the_agent(tmp_path: Path) -> None:
    path = write(tmp_path, """\
mocks: {trackOrdrTool: {result: 1}, trackOrderTool: {}}
cases:
  - name: x
    turns:
      - user: hi
        expect: [{tool_called: getTime}, {no_tool_called: nope}]
""")
    assert problems(path) == [
        "3:9: error: mocks: the agent has no tool 'trackOrdrTool' "
        "(it has: getDateAndTimeTool, trackOrderTool)",
        "3:37: error: mocks.trackOrderTool: give either `result` or `error`",
        "8:19: error: cases[0].turns[0].expect[0].tool_called: the agent has no tool 'getTime' "
        "(it has: getDateAndTimeTool, trackOrderTool)",
        "8:43: error: cases[0].turns[0].expect[1].no_tool_called: the agent has no tool 'nope' "
        "(it has: getDateAndTimeTool, trackOrderTool)",
    ]


def test_the_agent_file_problems_are_reported_in_the_agent_file(tmp_path: Path) -> None:
    agent = tmp_path / "a.yaml"
    agent.write_text("version: 1\nname: a\nmodel: {id: amazon.nova-2-sonic-v1:0}\nvoice: matthew\n"
                     "system_prompt: hi\npolicy: nope\n")
    path = tmp_path / "t.test.yaml"
    path.write_text("version: 1\nagent: a.yaml\ncases: [{name: x, turns: [{user: hi}]}]\n")
    _, found = check_tests(path)
    assert [p.format() for p in found] == [
        f"{agent}:6:1: error: policy: 'nope' is not one of: barge-in, simple",
        f"{path}:2:1: error: agent: the agent file a.yaml has errors (listed above)",
    ]
    with pytest.raises(ConfigError, match=r"2 error\(s\)"):
        load_tests(path)


@pytest.mark.parametrize(("text", "expected"), [
    ("", "1:1: error: a test file must be a mapping of keys (version, agent, cases, ...)"),
    ("cases: [\n", "2:1: error: invalid YAML"),
    ("- 1\n", "1:1: error: a test file must be a mapping of keys"),
])
def test_not_a_test_file(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "t.test.yaml"
    path.write_text(text)
    assert problems(path)[0].startswith(expected)


def test_a_missing_file_and_a_scenario_with_errors(tmp_path: Path) -> None:
    assert problems(tmp_path / "none.test.yaml") == ["1:1: error: no such file"]
    scenario = tmp_path / "s.yaml"
    scenario.write_text("turns:\n  - assistant: []\n")
    path = write(tmp_path, "model: {scenario: s.yaml}\ncases: [{name: x, turns: [{user: hi}]}]\n")
    _, found = check_tests(path)
    assert [p.format() for p in found] == [
        f"{scenario}:2:5: error: turns[0].assistant: must not be empty (add a `say` or `tool` item)"]
    path = write(tmp_path, "model: {scenario: s.yaml, turns: []}\ncases: [{name: x, turns: [{user: hi}]}]\n")
    assert problems(path) == ["3:27: error: model: one model side: `scenario: FILE`, `replay: DIR` or a "
                              "scenario written inline; here: `scenario` and inline turns"]
    path = write(tmp_path, "model: {replay: nowhere}\ncases: [{name: x, turns: [{user: hi}]}]\n")
    assert problems(path) == [f"3:9: error: model.replay: {tmp_path / 'nowhere'}: not a folder holding a "
                              "recording (agent-run --record DIR)"]


def test_find_test_files(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.test.yaml").write_text("")
    (tmp_path / "a" / "y.yaml").write_text("")
    (tmp_path / "empty").mkdir()
    found, missing = find_test_files([tmp_path / "a", tmp_path / "a" / "x.test.yaml", tmp_path / "empty",
                                      tmp_path / "nothing"])
    assert found == [tmp_path / "a" / "x.test.yaml"]
    assert missing == [f"{tmp_path / 'empty'}: no .test.yaml files in this folder",
                       f"{tmp_path / 'nothing'}: no such file or folder"]


def test_typed_text_needs_a_nova_2_model(tmp_path: Path) -> None:
    agent = tmp_path / "a.yaml"
    agent.write_text("version: 1\nname: a\nmodel: {id: amazon.nova-sonic-v1:0}\nvoice: matthew\n"
                     "system_prompt: hi\n")
    path = tmp_path / "t.test.yaml"
    path.write_text("version: 1\nagent: a.yaml\ncases:\n  - name: x\n    turns:\n      - user: hi\n"
                    "      - say: hi\n")
    assert problems(path)[-1] == ("6:9: error: cases[0].turns[0].user: typed text needs a Nova 2 model; "
                                  "amazon.nova-sonic-v1:0 only hears speech (use `say:` or `audio:`)")


def test_a_first_turn_barges_in_only_on_a_greeting(tmp_path: Path) -> None:
    path = write(tmp_path, "cases: [{name: x, turns: [{say: hi, barge_in_ms: 10}]}]\n")
    assert problems(path) == ["3:37: error: cases[0].turns[0].barge_in_ms: the first turn has no answer to "
                              "speak over (the agent has no greeting)"]
    greeter = tmp_path / "g.test.yaml"
    greeter.write_text(f"version: 1\nagent: {AGENTS / 'concierge.yaml'}\n"
                       "cases: [{name: x, turns: [{say: hi, barge_in_ms: 10}]}]\n")
    assert check_tests(greeter)[1] == []
