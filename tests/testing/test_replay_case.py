"""`replay: DIR` in a test file: a recorded session (`agent-run --record`) becomes an offline test,
and a case whose runner sends something else fails with the replay's first difference."""

from __future__ import annotations

from pathlib import Path

from test_agent_run_test import REPO, run


def test_a_recording_replayed_as_a_test_case(tmp_path: Path) -> None:
    recorded = run("agents/orders.yaml", "--emulate", "samples/orders.scenario.yaml", "--input",
                   "samples/where_is_my_order.wav", "--output", tmp_path / "a.wav",
                   "--record", tmp_path / "rec", "-q")
    assert recorded.returncode == 0, recorded.stdout + recorded.stderr
    tests = tmp_path / "replay.test.yaml"
    tests.write_text(f"""\
version: 1
agent: {REPO / 'agents' / 'orders.yaml'}
model: {{replay: rec}}
cases:
  - name: as recorded
    turns:
      - audio: {REPO / 'samples' / 'where_is_my_order.wav'}
        expect:
          - tool_called: {{name: trackOrderTool, args: {{orderId: "12345"}}}}
          - says: order 12345 is
  - name: another tool result
    mocks: {{trackOrderTool: {{result: {{orderStatus: Lost}}}}}}
    turns:
      - audio: {REPO / 'samples' / 'where_is_my_order.wav'}
""")
    done = run("test", tests, "--parallel", "2")
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"PASS  {tests}: as recorded (" in done.stdout
    assert (f"--- FAIL another tool result\n{tests}:11: another tool result: replay: stream 1, input event #"
            in done.stdout)
    assert "(toolResult): at toolResult.content.orderNumber: missing (expected '12345')" in done.stdout
