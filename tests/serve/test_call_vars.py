"""A call's template vars (Twilio's callSid, custom parameters) reach the agent's prompt."""

from __future__ import annotations

import asyncio
from pathlib import Path

from runner.config.loader import load_agent
from runner.serve.conversations import _agent_for

CONCIERGE = Path(__file__).resolve().parents[2] / "agents" / "concierge.yaml"


def test_declared_vars_apply_over_the_command_line_and_others_are_ignored() -> None:
    base = load_agent(CONCIERGE, {"city": "Lyon"})
    agent = asyncio.run(_agent_for(base, {"city": "Lyon"}, {"hotel_name": "Call Inn", "callSid": "CA1"}))
    assert agent.vars["hotel_name"] == "Call Inn"
    assert agent.vars["city"] == "Lyon"  # --var kept under the call's own
    assert "callSid" not in agent.vars
    assert "Call Inn" in agent.system_prompt


def test_no_declared_var_means_the_loaded_agent_itself() -> None:
    base = load_agent(CONCIERGE)
    assert asyncio.run(_agent_for(base, {}, {"callSid": "CA1"})) is base
