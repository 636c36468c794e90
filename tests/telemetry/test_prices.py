"""The price table: the built-in one, and an AGENT_RUN_PRICES file replacing or adding models."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.errors import RunnerError
from runner.protocol.events import TokenCounts
from runner.telemetry.prices import BUILTIN_TABLE, PRICES_DATE, PRICES_ENV, price_table

NOVA2 = "amazon.nova-2-sonic-v1:0"


def test_without_the_variable_the_built_in_dated_table_is_used() -> None:
    table = price_table({})
    assert table is BUILTIN_TABLE
    assert PRICES_DATE in table.source
    assert table.for_model("amazon.nova-sonic-v1:0") is not None
    cost = table.cost(NOVA2, TokenCounts(input_speech=1000, output_speech=1000))
    assert cost == pytest.approx(0.003 + 0.012)


def test_a_file_replaces_one_model_and_adds_another(tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(f"{NOVA2}:\n  input_speech: 1\n  input_text: 0\n  output_speech: 2\n  output_text: 0.5\n"
                    "acme.voice-9: {input_speech: 0.1, input_text: 0.1, output_speech: 0.1, "
                    "output_text: 0.1}\n")
    table = price_table({PRICES_ENV: str(path)})
    assert table.source == str(path)
    assert table.cost(NOVA2, TokenCounts(1000, 1000, 1000, 1000)) == pytest.approx(3.5)
    assert table.cost("acme.voice-9", TokenCounts(output_text=2000)) == pytest.approx(0.2)
    assert table.for_model("amazon.nova-sonic-v1:0") == BUILTIN_TABLE.for_model("amazon.nova-sonic-v1:0")


def test_json_works_too(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    zero = '{"input_speech": 0, "input_text": 0, "output_speech": 0, "output_text": 0}'
    path.write_text(f'{{"{NOVA2}": {zero}}}')
    assert price_table({PRICES_ENV: str(path)}).cost(NOVA2, TokenCounts(5, 5, 5, 5)) == 0.0


@pytest.mark.parametrize(("text", "where", "says"), [
    (f"{NOVA2}:\n  input_speech: 1\n  input_text: 0\n  output_speech: -2\n  output_text: 0\n", ":4:3:",
     "output_speech: expected a number >= 0"),
    (f"{NOVA2}:\n  input_speech: 1\n  input_text: 0\n  output_speech: 2\n  output_txt: 0\n", ":5:3:",
     "unknown key 'output_txt'"),
    (f"{NOVA2}:\n  input_speech: 1\n", ":1:1:", "missing input_text, output_speech, output_text"),
    (f"{NOVA2}:\n  input_speech: yes\n  input_text: 0\n  output_speech: 0\n  output_text: 0\n", ":2:3:",
     "expected a number"),
    (f"{NOVA2}: 3\n", ":1:1:", "expected a mapping"),
    ("- a list\n", ":1:1:", "maps model ids to prices"),
    (f"{NOVA2}: {{input_speech: 1\n", ":", ""),  # not YAML: the parser's message, located
])
def test_a_bad_file_is_a_located_error(tmp_path: Path, text: str, where: str, says: str) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(text)
    with pytest.raises(RunnerError) as caught:
        price_table({PRICES_ENV: str(path)})
    message = str(caught.value)
    assert message.startswith(f"{path}{where}"), message
    assert says in message
    assert "Traceback" not in message


def test_a_missing_file_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(RunnerError, match=f"{PRICES_ENV}=.*no-such.yaml: cannot read the price file"):
        price_table({PRICES_ENV: str(tmp_path / "no-such.yaml")})


def test_a_changed_file_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    body = "{input_speech: %s, input_text: 0, output_speech: 0, output_text: 0}"
    path.write_text(f"{NOVA2}: {body % 1}\n")
    assert price_table({PRICES_ENV: str(path)}).cost(NOVA2, TokenCounts(input_speech=1000)) == 1.0
    path.write_text(f"{NOVA2}: {body % 20}\n")
    assert price_table({PRICES_ENV: str(path)}).cost(NOVA2, TokenCounts(input_speech=1000)) == 20.0
