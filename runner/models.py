"""What the runner knows about each Nova Sonic model (ids, voices, capabilities).

Voice ids are lowercase; the service rejects "Matthew" (nova-sonic-protocol.md §2.2, §6).
An unknown model id is allowed (with a warning) so that new models keep working.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ModelInfo:
    id: str
    label: str
    voices: tuple[str, ...]
    # turnDetectionConfiguration.endpointingSensitivity exists only on Nova 2.
    supports_endpointing: bool
    # Interactive (cross-modal) USER text, and so a text greeting, exists only on Nova 2.
    supports_interactive_text: bool


NOVA_SONIC_V1 = ModelInfo(
    id="amazon.nova-sonic-v1:0",
    label="Nova Sonic",
    voices=("tiffany", "matthew", "amy", "ambre", "florian", "beatrice", "lorenzo",
            "greta", "lennart", "lupe", "carlos"),
    supports_endpointing=False,
    supports_interactive_text=False,
)

NOVA_2_SONIC = ModelInfo(
    id="amazon.nova-2-sonic-v1:0",
    label="Nova 2 Sonic",
    voices=("tiffany", "matthew", "amy", "olivia", "kiara", "arjun", "ambre", "florian",
            "beatrice", "lorenzo", "tina", "lennart", "lupe", "carlos", "carolina", "leo"),
    supports_endpointing=True,
    supports_interactive_text=True,
)

MODELS: dict[str, ModelInfo] = {m.id: m for m in (NOVA_SONIC_V1, NOVA_2_SONIC)}

ALL_VOICES: tuple[str, ...] = tuple(sorted({v for m in MODELS.values() for v in m.voices}))
ENDPOINTING_SENSITIVITIES: tuple[str, ...] = ("HIGH", "MEDIUM", "LOW")
SAMPLE_RATES: tuple[int, ...] = (8000, 16000, 24000)


def model_info(model_id: str) -> ModelInfo | None:
    """The known model for `model_id`, also accepting cross-region profile ids like `us.<id>`."""
    if model_id in MODELS:
        return MODELS[model_id]
    _, _, rest = model_id.partition(".")
    return MODELS.get(rest)


def is_nova2(model_id: str) -> bool:
    """Nova 2 and later models; unknown ids are treated as Nova 2 capable (newer models)."""
    info = model_info(model_id)
    return True if info is None else info.supports_interactive_text
