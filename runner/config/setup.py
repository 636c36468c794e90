"""Maps an agent's config to what a protocol session needs (the core never sees agent files)."""

from __future__ import annotations

from runner.config.model import AgentConfig
from runner.models import model_info
from runner.protocol.setup import SessionSetup, ToolSpec


def session_setup(agent: AgentConfig) -> SessionSetup:
    info = model_info(agent.model.id)
    # Unknown ids are assumed to be newer Nova 2 style models (see runner.models.is_nova2).
    endpointing = agent.endpointing_sensitivity if info is None or info.supports_endpointing else None
    return SessionSetup(
        model_id=agent.model.id,
        voice_id=agent.voice,
        system_prompt=agent.system_prompt,
        inference=agent.inference,
        endpointing_sensitivity=endpointing,
        input_sample_rate=agent.audio.input_sample_rate,
        output_sample_rate=agent.audio.output_sample_rate,
        tools=tuple(ToolSpec(t.name, t.description, t.input_schema) for t in agent.tools),
        # Passed through as written: the session decides what a v1 model can do with it.
        greeting=agent.greeting,
    )
