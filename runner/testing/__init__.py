"""`agent-run test`: conversation tests for agents (`*.test.yaml`), run by a CLI and a pytest plugin.

- `model`: the test file as frozen typed values; `load`: reading and checking a test file
  (every problem at FILE:LINE:COL, like `agent-run check`).
- `expectations`: what a turn must show (one class per kind, and the registry `EXPECTATIONS`).
- `record`: what happened in a turn (`TurnRecord`), built from the conversation's timeline.
- `harness`: runs one case against the emulator or real Bedrock; `runner`: cases, repeats,
  parallelism and outcomes; `plugin`: the pytest plugin; `report`: the readable summary.
"""
