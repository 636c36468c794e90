from __future__ import annotations

import dataclasses
from pathlib import Path

from runner.config.loader import load_agent
from runner.config.model import ModelConfig
from runner.config.setup import session_setup
from runner.protocol.setup import ToolSpec

AGENTS = Path(__file__).resolve().parents[2] / "agents"


def test_concierge_maps_everything() -> None:
    agent = load_agent(AGENTS / "concierge.yaml", {"city": "Oslo"})
    setup = session_setup(agent)
    assert setup.model_id == "amazon.nova-2-sonic-v1:0" and setup.voice_id == "tiffany"
    assert setup.endpointing_sensitivity == "MEDIUM"
    assert setup.greeting == agent.greeting and setup.greeting is not None
    assert "in Oslo" in setup.system_prompt
    assert setup.inference == agent.inference
    assert (setup.input_sample_rate, setup.output_sample_rate) == (16000, 24000)
    assert setup.tools == tuple(ToolSpec(t.name, t.description, t.input_schema) for t in agent.tools)
    assert setup.history == ()


def test_endpointing_is_dropped_for_v1_and_kept_for_unknown_models() -> None:
    agent = load_agent(AGENTS / "concierge.yaml")
    v1 = dataclasses.replace(agent, model=ModelConfig("amazon.nova-sonic-v1:0"))
    assert session_setup(v1).endpointing_sensitivity is None
    future = dataclasses.replace(agent, model=ModelConfig("amazon.nova-3-sonic-v1:0"))
    assert session_setup(future).endpointing_sensitivity == "MEDIUM"


def test_orders_has_no_endpointing_and_passes_tools() -> None:
    setup = session_setup(load_agent(AGENTS / "orders.yaml"))
    assert setup.endpointing_sensitivity is None and setup.greeting is None
    assert [t.name for t in setup.tools] == ["getDateAndTimeTool", "trackOrderTool"]
    assert setup.tools[1].input_schema["required"] == ["orderId"]
