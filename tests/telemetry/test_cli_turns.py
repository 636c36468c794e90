"""Per-turn latency, tokens and cost, and OpenTelemetry, through the real CLI and the emulator.

Each run is `agent-run agents/orders.yaml --emulate ... --input WAV` as a subprocess (the real SDK
over TLS against the in-process emulator); the module starts them all before waiting for any.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import (
    DATA,
    ORDERS,
    ORDERS_SCENARIO,
    REPO,
    SAMPLES,
    Finished,
    Run,
    base_env,
    read_jsonl,
    sample,
    silence,
    types,
    write_wav,
)

from runner.telemetry.prices import BUILTIN_PRICES

NOVA2 = "amazon.nova-2-sonic-v1:0"
# The emulator answers once it has heard this much silence after speech (scenario settings.speech_end_ms):
# no answer can come sooner after the end of speech. The margin covers speech synthesis and a loaded machine.
EMULATOR_SPEECH_END_S = 0.6
MARGIN_S = 5.0

otel_installed = True
try:
    from otlp_receiver import OtlpReceiver
except ImportError:  # the `otel` extra is not installed: only the OTLP test is skipped
    otel_installed = False


# --idle-exit 3: on a loaded machine the emulator may take seconds to end the user's turn; a shorter
# idle exit would end the run before the answer.
def orders_args(tmp: Path, *extra: str | Path) -> list[str | Path]:
    return [ORDERS, "--emulate", ORDERS_SCENARIO, "--input", SAMPLES / "where_is_my_order.wav", "--mute",
            "--transcript", tmp / "t.jsonl", "--idle-exit", "3", "--time-limit", "30", *extra]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    started: dict[str, Run] = {}
    found: dict[str, Any] = {}
    receiver = OtlpReceiver() if otel_installed else None
    try:
        if receiver is not None:
            receiver.__enter__()
            found["receiver"] = receiver
        verbose = tmp_path_factory.mktemp("verbose")
        started["verbose"] = Run(orders_args(verbose, "-v"), transcript=verbose / "t.jsonl")
        priced = tmp_path_factory.mktemp("priced")
        prices = priced / "prices.yaml"
        prices.write_text(f"{NOVA2}: {{input_speech: 1, input_text: 1, output_speech: 10, "
                          "output_text: 10}\n")
        started["priced"] = Run(orders_args(priced), transcript=priced / "t.jsonl",
                                env=base_env(AGENT_RUN_PRICES=str(prices)))
        shadow = tmp_path_factory.mktemp("no_otel")
        (shadow / "opentelemetry").mkdir()
        (shadow / "opentelemetry" / "__init__.py").write_text("")  # hides the installed SDK
        started["no_otel"] = Run(orders_args(shadow), transcript=shadow / "t.jsonl",
                                 env=base_env(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9",
                                              PYTHONPATH=str(shadow)))
        if receiver is not None:
            traced = tmp_path_factory.mktemp("traced")
            started["traced"] = Run(orders_args(traced), transcript=traced / "t.jsonl",
                                    env=base_env(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
                                                 OTEL_METRIC_EXPORT_INTERVAL="600000"))
        # tests/e2e/test_barge_in.py's input: a question, then an utterance ~2 s into the long answer.
        barge = tmp_path_factory.mktemp("barge_in")
        talk_over = write_wav(barge / "talk_over.wav", [sample("thanks_bye.wav"), silence(2.8),
                                                        sample("what_time_is_it.wav")])
        started["barge_in"] = Run([DATA / "chat.yaml", "--emulate", DATA / "long_answer.scenario.yaml",
                                   "--input", talk_over, "--mute", "--transcript", barge / "t.jsonl",
                                   "--idle-exit", "3", "--time-limit", "40"], transcript=barge / "t.jsonl")
        for name, run in started.items():
            found[name] = run.finish(timeout_s=90)
        yield found
    finally:
        for run in started.values():
            run.kill()
        if receiver is not None:
            receiver.__exit__()


def the_turn(done: Finished) -> dict[str, Any]:
    assert done.returncode == 0, done.describe()
    assert "Traceback" not in done.stderr, done.describe()
    turns = done.entries("turn")
    assert len(turns) == 1, done.describe()
    return turns[0]


def test_the_turn_entry_has_plausible_latency_figures(runs: dict[str, Any]) -> None:
    done: Finished = runs["verbose"]
    turn = the_turn(done)
    assert turn["turn"] == 1 and turn["trigger"] == "speech" and turn["stream"] == 1
    first_audio = turn["speech_end_to_first_audio_ms"]
    # The emulator cannot answer before it has heard its end-of-speech silence: a smaller figure would
    # mean the end of speech was taken too late (e.g. at the transcript's arrival).
    assert EMULATOR_SPEECH_END_S * 1000 - 100 < first_audio < (EMULATOR_SPEECH_END_S + MARGIN_S) * 1000, turn
    assert turn["speech_end_to_transcript_ms"] <= first_audio
    assert first_audio <= turn["speech_end_to_first_played_ms"] < first_audio + MARGIN_S * 1000
    assert 0 < turn["stream_setup_ms"] < MARGIN_S * 1000
    assert [t["name"] for t in turn["tools"]] == ["trackOrderTool"] and turn["tools"][0]["ok"] is True
    assert turn["tool_ms"] == turn["tools"][0]["duration_ms"]


def test_the_turn_tokens_are_the_emulators_usage_events_with_their_cost(runs: dict[str, Any]) -> None:
    done: Finished = runs["verbose"]
    turn = the_turn(done)
    tokens = turn["tokens"]
    assert tokens["input_speech"] > 0 and tokens["output_speech"] > 0 and tokens["output_text"] > 0
    last_usage = done.entries("usage")[-1]  # the service's cumulative totals
    assert tokens["total"] == last_usage["total_tokens"]
    assert tokens["input_speech"] + tokens["input_text"] == last_usage["input_tokens"]
    p = BUILTIN_PRICES[NOVA2]
    expected = (tokens["input_speech"] * p.input_speech + tokens["input_text"] * p.input_text
                + tokens["output_speech"] * p.output_speech + tokens["output_text"] * p.output_text) / 1000
    assert turn["cost_usd"] == pytest.approx(expected, abs=1e-6)


def test_the_summary_entry_and_the_transcript_still_ends_with_the_session_end(runs: dict[str, Any]) -> None:
    done: Finished = runs["verbose"]
    turn = the_turn(done)
    [summary] = done.entries("summary")
    assert summary["turns"] == 1
    assert summary["figures"]["speech_end_to_first_audio_ms"] == {
        "p50": turn["speech_end_to_first_audio_ms"], "p95": turn["speech_end_to_first_audio_ms"], "n": 1}
    assert summary["tokens"] == turn["tokens"] and summary["cost_usd"] == turn["cost_usd"]
    assert "built-in" in summary["prices"]
    # The summary is written just before the session end, which stays the transcript's last entry.
    assert types(done.transcript)[-2:] == ["summary", "session"], types(done.transcript)
    assert done.transcript[-1]["event"] == "end"


def test_verbose_prints_a_line_per_turn_and_the_summary(runs: dict[str, Any]) -> None:
    done: Finished = runs["verbose"]
    turn = the_turn(done)
    [line] = [x for x in done.stdout.splitlines() if "[turn 1 (speech)" in x]
    assert f"end of speech -> audio {turn['speech_end_to_first_audio_ms']:.0f} ms" in line
    assert "tools " in line and f"${turn['cost_usd']:.4f}" in line
    assert "summary: 1 turn (p50 / p95)" in done.stdout
    assert "end of speech -> first played" in done.stdout
    assert "estimated cost $" in done.stdout
    # Without -v there is no turn line, but the summary is still printed.
    plain: Finished = runs["priced"]
    assert "[turn 1" not in plain.stdout and "summary: 1 turn" in plain.stdout, plain.describe()


def test_a_price_file_sets_the_cost(runs: dict[str, Any]) -> None:
    done: Finished = runs["priced"]
    turn = the_turn(done)
    t = turn["tokens"]
    expected = (t["input_speech"] + t["input_text"] + 10 * (t["output_speech"] + t["output_text"])) / 1000
    assert turn["cost_usd"] == pytest.approx(expected, abs=1e-6)
    assert done.entries("summary")[0]["prices"].endswith("prices.yaml")


def test_a_bad_price_file_is_a_located_error_before_connecting(tmp_path: Path) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_text(f"{NOVA2}:\n  input_speech: 1\n  input_text: 1\n  output_speech: -1\n"
                      "  output_text: 1\n")
    done = Run(orders_args(tmp_path), env=base_env(AGENT_RUN_PRICES=str(prices))).finish(timeout_s=30)
    assert done.returncode != 0
    assert f"{prices}:4:3: {NOVA2}.output_speech: expected a number >= 0" in done.stderr, done.describe()
    assert "Traceback" not in done.stderr
    assert "emulator:" not in done.stdout  # refused before anything started


def test_otel_variables_without_the_extra_warn_and_the_run_goes_on(runs: dict[str, Any]) -> None:
    done: Finished = runs["no_otel"]
    the_turn(done)
    assert "OTEL_* variables are set but OpenTelemetry is not installed" in done.stderr, done.describe()
    assert done.stderr.count("OpenTelemetry is not installed") == 1


@pytest.mark.skipif(not otel_installed, reason="the `otel` extra (opentelemetry-proto) is not installed")
def test_a_run_exports_its_trace_and_metrics_over_otlp_http(runs: dict[str, Any]) -> None:
    done: Finished = runs["traced"]
    turn = the_turn(done)
    received = runs["receiver"].received
    deadline = time.monotonic() + 5  # the exporter's requests were answered before the process ended
    while "/v1/metrics" not in received.paths and time.monotonic() < deadline:
        time.sleep(0.05)
    spans = {s.name: s for s in received.spans}
    assert {"conversation", "stream 1", "turn 1", "tool trackOrderTool"} <= set(spans), sorted(spans)
    assert len({s.trace_id for s in received.spans}) == 1
    root = spans["conversation"]
    assert root.service == "agent-run"
    assert root.attributes["agent_run.model"] == NOVA2
    assert root.attributes["agent_run.agent"] == "orders"
    assert root.attributes["agent_run.voice"]
    turn_span = spans["turn 1"]
    assert turn_span.parent_span_id == root.span_id
    figure = turn["speech_end_to_first_audio_ms"]
    assert turn_span.attributes["agent_run.speech_end_to_first_audio_ms"] == figure
    assert turn_span.attributes["gen_ai.usage.output_tokens"] == (
        turn["tokens"]["output_speech"] + turn["tokens"]["output_text"])
    assert spans["tool trackOrderTool"].parent_span_id == turn_span.span_id
    assert spans["tool trackOrderTool"].attributes["gen_ai.tool.name"] == "trackOrderTool"
    assert spans["stream 1"].parent_span_id == root.span_id
    assert received.metric_exports, received.paths
    metrics = received.metric_exports[-1]  # cumulative: the last export has everything
    [histogram] = metrics["agent_run.turn.speech_end_to_first_audio"]
    assert histogram.count == 1
    assert histogram.sum == pytest.approx(turn["speech_end_to_first_audio_ms"], abs=0.1)
    tokens = sum(p.as_int or p.as_double for p in metrics["agent_run.tokens"])
    assert tokens == turn["tokens"]["total"]


def test_without_otel_variables_opentelemetry_is_not_even_imported(tmp_path: Path) -> None:
    env = {k: v for k, v in base_env().items() if not k.startswith("OTEL_")}
    script = ("import sys\nfrom runner.cli import main\ncode = main(sys.argv[1:])\n"
              "imported = any(m.startswith('opentelemetry') for m in sys.modules)\n"
              "print('otel imported:', imported, file=sys.stderr)\n"
              "sys.exit(code)\n")
    args = [str(a) for a in orders_args(tmp_path)]
    proc = subprocess.run([sys.executable, "-c", script, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr
    assert "otel imported: False" in proc.stderr, proc.stderr
    assert [e for e in read_jsonl(tmp_path / "t.jsonl") if e["type"] == "turn"], "the run had no turn"


def test_a_barge_in_marks_the_interrupted_turn_and_measures_the_next(runs: dict[str, Any]) -> None:
    done: Finished = runs["barge_in"]
    assert done.returncode == 0, done.describe()
    turns = done.entries("turn")
    assert [t["trigger"] for t in turns] == ["speech", "speech"], done.describe()
    first, second = turns
    assert first.get("interrupted") is True and "interrupted" not in second, turns
    assert first["speech_end_to_first_played_ms"] >= first["speech_end_to_first_audio_ms"] > 0
    # The second utterance's own end of speech (the scenario's speech_end_ms is 400): not the first's.
    assert 300 < second["speech_end_to_first_audio_ms"] < MARGIN_S * 1000, turns
    assert second["at_s"] > first["at_s"] + 2
    [summary] = done.entries("summary")
    assert summary["turns"] == 2 and summary["figures"]["speech_end_to_first_audio_ms"]["n"] == 2
