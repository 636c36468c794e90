"""check_agent / load_agent on small agents written into a temporary folder."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from runner.config.loader import check_agent, load_agent
from runner.config.prompt import MAX_PROMPT_BYTES
from runner.errors import ConfigError

MINIMAL = """\
version: 1
name: t
model:
  id: amazon.nova-2-sonic-v1:0
voice: matthew
system_prompt: Hello.
"""

Write = Callable[..., Path]


def messages(path: Path, **overrides: str) -> list[str]:
    return [p.format().split(": ", 1)[1] for p in check_agent(path, overrides)[1]]


def test_minimal_agent_gets_the_documented_defaults(write_agent: Write) -> None:
    agent = load_agent(write_agent())
    inference = agent.inference
    assert (inference.max_tokens, inference.temperature, inference.top_p) == (1024, 0.7, 0.9)
    assert (agent.audio.input_sample_rate, agent.audio.output_sample_rate, agent.audio.chunk_ms) == (
        16000, 24000, 32)
    assert agent.policy == "barge-in"
    assert agent.session.rotate_after_s == 360.0
    assert agent.endpointing_sensitivity is None and agent.greeting is None and agent.tools == ()
    assert agent.model.region is None and agent.description == ""
    with pytest.raises(dataclasses.FrozenInstanceError):
        agent.name = "other"  # type: ignore[misc]


def test_load_agent_raises_config_error_listing_every_error(write_agent: Write) -> None:
    path = write_agent(MINIMAL.replace("voice: matthew", "voice: greta") + "polcy: simple\n")
    with pytest.raises(ConfigError) as caught:
        load_agent(path)
    assert "2 error(s)" in str(caught.value)
    assert f"{path}:5:1: error: voice 'greta'" in str(caught.value)
    assert f"{path}:7:1: error: unknown key 'polcy'; did you mean 'policy'?" in str(caught.value)
    assert len(caught.value.problems) == 2


def test_var_overrides_are_converted_to_the_declared_type(write_agent: Write) -> None:
    path = write_agent(MINIMAL.replace("system_prompt: Hello.", "") + """\
vars: {who: Ann, n: 2, ratio: 0.5, polite: false}
system_prompt: "{{ who }} {{ n + 1 }} {{ ratio * 2 }} {{ 'please' if polite else 'now' }}"
""")
    assert load_agent(path).system_prompt == "Ann 3 1.0 now"
    agent = load_agent(path, {"who": "Bob=B", "n": "41", "ratio": "0.25", "polite": "yes"})
    assert agent.system_prompt == "Bob=B 42 0.5 please"
    assert agent.vars == {"who": "Bob=B", "n": 41, "ratio": 0.25, "polite": True}


def test_var_override_errors(write_agent: Write) -> None:
    path = write_agent(MINIMAL + "vars: {n: 2, polite: false}\n")
    found = messages(path, nn="1", n="two", polite="maybe")
    assert "error: --var nn: no such variable in vars; did you mean 'n'? (declared: n, polite)" in found
    assert "error: --var n: expected an integer, got 'two'" in found
    assert "error: --var polite: expected true or false, got 'maybe'" in found


def test_system_prompt_file_is_relative_to_the_agent(write_agent: Write) -> None:
    text = MINIMAL.replace("system_prompt: Hello.", "system_prompt_file: prompts/main.j2\nvars: {x: 1}")
    path = write_agent(text, files={"prompts/main.j2": "Line one.\nx is {{ x }}.\n"})
    assert load_agent(path).system_prompt == "Line one.\nx is 1."


def test_system_prompt_file_problems_point_into_the_prompt_file(write_agent: Write) -> None:
    text = MINIMAL.replace("system_prompt: Hello.", "system_prompt_file: p.j2")
    path = write_agent(text, files={"p.j2": "ok\n{{ nope }}\n"})
    (p,) = check_agent(path)[1]
    assert (p.file, p.line, p.col) == (str(path.parent / "p.j2"), 2, 1)
    assert "undefined variable 'nope'" in p.message


def test_missing_prompt_file(write_agent: Write) -> None:
    path = write_agent(MINIMAL.replace("system_prompt: Hello.", "system_prompt_file: gone.txt"))
    (p,) = check_agent(path)[1]
    assert p.line == 6 and "system_prompt_file 'gone.txt': no such file" in p.message


def test_prompt_syntax_error_is_located_in_a_block_scalar(write_agent: Write) -> None:
    text = MINIMAL.replace("system_prompt: Hello.", "system_prompt: |\n  fine\n    {% if %}\n")
    (p,) = check_agent(write_agent(text))[1]
    assert (p.line, p.col) == (8, 5) and "template syntax error" in p.message


def test_prompt_over_40_kb_is_an_error(write_agent: Write) -> None:
    text = MINIMAL.replace("Hello.", "\"{{ 'x' * n }}\"") + "vars: {n: 10}\n"
    path = write_agent(text)
    assert check_agent(path)[1] == []
    assert check_agent(path, {"n": str(MAX_PROMPT_BYTES)})[1] == []
    (p,) = check_agent(path, {"n": str(MAX_PROMPT_BYTES + 1)})[1]
    assert p.line == 6 and "at most 40960 bytes" in p.message


def test_unknown_model_is_a_warning_and_accepts_any_known_voice(write_agent: Write) -> None:
    path = write_agent(MINIMAL.replace("amazon.nova-2-sonic-v1:0", "amazon.nova-9-sonic-v1:0")
                       .replace("matthew", "olivia") + "turn_detection: {endpointing_sensitivity: LOW}\n")
    config, problems = check_agent(path)
    assert config is not None and config.endpointing_sensitivity == "LOW"
    (p,) = problems
    assert p.severity == "warning" and (p.line, p.col) == (4, 3) and "unknown model id" in p.message


@pytest.mark.parametrize("prefix", ["us.", "global.", "eu.", "apac.",
                                    "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us."])
def test_cross_region_profile_id_is_known(write_agent: Write, prefix: str) -> None:
    path = write_agent(MINIMAL.replace("amazon.nova-2-sonic-v1:0", f"{prefix}amazon.nova-2-sonic-v1:0")
                       .replace("matthew", "olivia"))  # a Nova 2 voice: the profile is that model
    assert check_agent(path)[1] == []


V1 = MINIMAL.replace("amazon.nova-2-sonic-v1:0", "amazon.nova-sonic-v1:0")
RETIRED = ("amazon.nova-sonic-v1:0 (Nova Sonic) reached end of life on 2026-09-14: Bedrock no longer "
           "serves it; use amazon.nova-2-sonic-v1:0 instead")


def test_retired_v1_model_is_a_warning_at_model_id_with_date_and_replacement(write_agent: Write) -> None:
    config, problems = check_agent(write_agent(V1))
    assert config is not None
    (p,) = problems
    assert (p.line, p.col, p.severity, p.message) == (4, 3, "warning", RETIRED)


@pytest.mark.parametrize("prefix", ["us.", "global.", "eu."])
def test_retired_model_behind_a_profile_prefix_still_warns(write_agent: Write, prefix: str) -> None:
    (p,) = check_agent(write_agent(V1.replace("amazon.nova-sonic", f"{prefix}amazon.nova-sonic")))[1]
    assert p.severity == "warning" and "reached end of life on 2026-09-14" in p.message
    assert p.message.startswith(f"{prefix}amazon.nova-sonic-v1:0 (Nova Sonic)")


def test_nova_2_5_is_unknown_but_allowed_with_nova_2_capabilities(write_agent: Write) -> None:
    text = (MINIMAL.replace("amazon.nova-2-sonic-v1:0", "amazon.nova-2-5-sonic")
            + "greeting: Hi\nturn_detection: {endpointing_sensitivity: HIGH}\n")
    config, problems = check_agent(write_agent(text))
    assert config is not None and config.endpointing_sensitivity == "HIGH"
    (p,) = problems
    assert p.severity == "warning" and "unknown model id 'amazon.nova-2-5-sonic'" in p.message


def test_v1_voices_are_checked_per_model(write_agent: Write) -> None:
    # greta is v1's only; olivia is Nova 2's only.
    assert [p.message for p in check_agent(write_agent(V1.replace("matthew", "greta")))[1]] == [RETIRED]
    on_v1 = [p.message for p in check_agent(write_agent(V1.replace("matthew", "olivia")))[1]]
    assert any(m.startswith("voice 'olivia' is not available for Nova Sonic (amazon.nova-sonic-v1:0)")
               for m in on_v1)
    (p,) = check_agent(write_agent(MINIMAL.replace("matthew", "greta")))[1]
    assert p.message.startswith("voice 'greta' is not available for Nova 2 Sonic (amazon.nova-2-sonic-v1:0) "
                                "(it is a Nova Sonic voice); did you mean 'tina'?")


def test_capitalised_voice_gets_a_lowercase_hint(write_agent: Write) -> None:
    assert messages(write_agent(MINIMAL.replace("matthew", "Matthew"))) == [
        "error: voice ids are lowercase: write 'matthew'"]


def test_greeting_is_rendered_and_warned_about_on_v1(write_agent: Write) -> None:
    text = V1 + "vars: {who: Ann}\ngreeting: Hi {{ who }}\n"
    config, problems = check_agent(write_agent(text))
    assert config is not None and config.greeting == "Hi Ann"
    assert [(p.severity, p.message.split(" ", 2)[1]) for p in problems] == [
        ("warning", "(Nova"), ("warning", "cannot")]  # retired model at 4:3, greeting at 8:1
    nova2 = text.replace("amazon.nova-sonic-v1:0", "amazon.nova-2-sonic-v1:0")
    assert check_agent(write_agent(nova2))[1] == []


@pytest.mark.parametrize(("text", "expected"), [
    ("", "1:1: error: the file is empty"),
    ("- a\n- b\n", "1:1: error: an agent file must be a mapping"),
    (MINIMAL + "name: again\n", "7:1: error: duplicate key 'name' (first defined at line 2)"),
    (MINIMAL + "1: x\n", "7:1: error: keys must be text"),
    (MINIMAL + "greeting:\n", "7:1: error: greeting: expected a string, got null"),
    (MINIMAL.replace("version: 1", "version: 2"), "1:1: error: version: unsupported format version 2"),
    (MINIMAL.replace("version: 1", 'version: "1"'),
     "1:1: error: version: must be the number 1, not a string ('1'): write `version: 1` without quotes"),
    (MINIMAL + "vars: {when: 2024-01-01}\n", "error: vars.when: expected a string or a number or a boolean"),
    (MINIMAL.replace("name: t\n", ""), "1:1: error: missing required key 'name'"),
    (MINIMAL + "session: {rotate_after_s: 600}\n",
     "7:11: error: session.rotate_after_s: must be at most 470"),
    (MINIMAL + "tools: [{name: a, description: d, input_schema: {type: object}, handler: x:y, extra: 1}]\n",
     "error: unknown key 'extra' in tools[0] (allowed: description, handler, http, input_schema, "
     "max_result_bytes, name, timeout_s, transfer)"),
    (MINIMAL + "tools: [{name: a, description: d, input_schema: {type: object}, handler: builtin:calculator, "
               "max_result_bytes: 0}]\n", "error: tools[0].max_result_bytes: must be at least 64"),
    (MINIMAL + "tools: [{name: a, description: d, input_schema: {type: object}, handler: builtin:calculator, "
               "max_result_bytes: 2.5}]\n", "error: tools[0].max_result_bytes: expected an integer"),
])
def test_structural_problems(write_agent: Write, text: str, expected: str) -> None:
    path = write_agent(text)
    lines = [p.format().removeprefix(f"{path}:") for p in check_agent(path)[1]]
    assert any(line.startswith(expected) or expected in line for line in lines), lines


def test_bad_yaml_reports_position(write_agent: Write) -> None:
    (p,) = check_agent(write_agent("version: 1\nname: [unclosed\n"))[1]
    assert p.line == 3 and "invalid YAML" in p.message


def test_python_tags_are_refused(write_agent: Write) -> None:
    (p,) = check_agent(write_agent(MINIMAL + "x: !!python/object/apply:os.system [echo]\n"))[1]
    assert (p.line, p.col) == (7, 4) and "unsupported tag 'tag:yaml.org,2002:python/object/apply:os.system'" \
        in p.message
    (p,) = check_agent(write_agent(MINIMAL + "x: !!python/name:os.system ''\n"))[1]
    assert (p.line, p.col) == (7, 4) and "could not determine a constructor" in p.message


def test_missing_file_and_directory(tmp_path: Path) -> None:
    (p,) = check_agent(tmp_path / "nope.yaml")[1]
    assert p.format() == f"{tmp_path}/nope.yaml:1:1: error: no such file"
    (p,) = check_agent(tmp_path)[1]
    assert p.message == "is a directory, not an agent file"


def test_tools_are_built_with_their_functions(write_agent: Write) -> None:
    text = MINIMAL + """\
tools:
  - name: add
    description: Adds.
    input_schema:
      type: object
      properties: {a: {type: integer}, b: {type: integer}}
      required: [a, b]
    handler: mytools:add
    timeout_s: 2.5
"""
    path = write_agent(text, files={"mytools.py": "def add(a: int, b: int) -> int:\n    return a + b\n"})
    (tool,) = load_agent(path).tools
    assert tool.function(a=2, b=3) == 5
    assert tool.timeout_s == 2.5 and tool.handler == "mytools:add"
    assert tool.input_schema["required"] == ["a", "b"]


def test_template_override_is_used(write_agent: Write) -> None:
    builtin = Path("runner/protocol/templates/sessionEnd.json.j2")
    assert builtin.is_file()
    custom = '{"event": {"sessionEnd": {}}}\n'
    path = write_agent(MINIMAL + "templates: tpl\n", files={"tpl/sessionEnd.json.j2": custom})
    agent = load_agent(path)
    assert agent.templates.source("sessionEnd").filename == str(path.parent / "tpl/sessionEnd.json.j2")
    assert agent.templates.render("sessionEnd", {}) == {"event": {"sessionEnd": {}}}


def test_template_override_problems(write_agent: Write) -> None:
    path = write_agent(MINIMAL + "templates: tpl\n", files={"tpl/sesionEnd.json.j2": "{}"})
    (p,) = check_agent(path)[1]
    assert p.file == str(path.parent / "tpl/sesionEnd.json.j2")
    assert "unknown event template 'sesionEnd'; did you mean 'sessionEnd'?" in p.message
    (p,) = check_agent(write_agent(MINIMAL + "templates: nowhere\n"))[1]
    assert p.line == 7 and "templates folder 'nowhere' not found" in p.message
    path = write_agent(MINIMAL + "templates: t2\n", files={"t2/promptEnd.json.j2": '{"event": {{ "x" }\n'})
    (p,) = check_agent(path)[1]
    assert p.file.endswith("t2/promptEnd.json.j2") and p.line == 1 and "syntax error" in p.message


def test_a_misspelt_required_key_is_reported_once(write_agent: Write) -> None:
    path = write_agent(MINIMAL.replace("name: t", "nmae: t").replace("system_prompt", "sytem_prompt"))
    assert messages(path) == ["error: unknown key 'nmae'; did you mean 'name'?",
                              "error: unknown key 'sytem_prompt'; did you mean 'system_prompt'?"]
    path = write_agent(MINIMAL.replace("name: t\n", "").replace("system_prompt: Hello.\n", ""))
    assert messages(path) == ["error: missing required key 'name'",
                              "error: missing the system prompt: add system_prompt (or system_prompt_file)"]
