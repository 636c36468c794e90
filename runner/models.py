"""What the runner knows about each Nova Sonic model (ids, voices, capabilities, lifecycle).

Voice ids are lowercase; the service rejects "Matthew" (nova-sonic-protocol.md §2.2, §6).
An unknown model id is allowed (with a warning) so that new models keep working.
A model past its end of life is still known (its voices and capabilities keep checking), but
every `check`, `render` and run warns with the date and the model to move to.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, date, datetime


class Lifecycle(enum.Enum):
    ACTIVE = "active"
    LEGACY = "legacy"  # still served, with an announced end of life
    END_OF_LIFE = "end of life"  # no longer served by Bedrock


@dataclass(frozen=True, slots=True)
class ModelInfo:
    id: str
    label: str
    voices: tuple[str, ...]
    # turnDetectionConfiguration.endpointingSensitivity exists only on Nova 2.
    supports_endpointing: bool
    # Interactive (cross-modal) USER text, and so a text greeting, exists only on Nova 2.
    supports_interactive_text: bool
    status: Lifecycle = Lifecycle.ACTIVE
    end_of_life: date | None = None  # announced or past; None while none is announced
    replacement: str | None = None  # the model id to move to

    def status_on(self, today: date) -> Lifecycle:
        """The status on `today`: a legacy model whose date has passed is end of life."""
        if self.end_of_life is not None and today >= self.end_of_life:
            return Lifecycle.END_OF_LIFE
        return self.status


NOVA_2_SONIC = ModelInfo(
    id="amazon.nova-2-sonic-v1:0",
    label="Nova 2 Sonic",
    voices=("tiffany", "matthew", "amy", "olivia", "kiara", "arjun", "ambre", "florian",
            "beatrice", "lorenzo", "tina", "lennart", "lupe", "carlos", "carolina", "leo"),
    supports_endpointing=True,
    supports_interactive_text=True,
)

# Bedrock model card: legacy, end of life 2026-09-14 (nova-2-and-serving.md, "Model lifecycle").
NOVA_SONIC_V1 = ModelInfo(
    id="amazon.nova-sonic-v1:0",
    label="Nova Sonic",
    voices=("tiffany", "matthew", "amy", "ambre", "florian", "beatrice", "lorenzo",
            "greta", "lennart", "lupe", "carlos"),
    supports_endpointing=False,
    supports_interactive_text=False,
    status=Lifecycle.END_OF_LIFE,
    end_of_life=date(2026, 9, 14),
    replacement=NOVA_2_SONIC.id,
)

DEFAULT_MODEL = NOVA_2_SONIC
# Voices a newer model renamed: Nova 2's German feminine voice is tina, v1's was greta.
VOICE_SUCCESSORS: dict[str, str] = {"greta": "tina"}
MODELS: dict[str, ModelInfo] = {m.id: m for m in (NOVA_2_SONIC, NOVA_SONIC_V1)}

ALL_VOICES: tuple[str, ...] = tuple(sorted({v for m in MODELS.values() for v in m.voices}))
ENDPOINTING_SENSITIVITIES: tuple[str, ...] = ("HIGH", "MEDIUM", "LOW")
SAMPLE_RATES: tuple[int, ...] = (8000, 16000, 24000)


def base_model_id(model_id: str) -> str:
    """The model id behind a cross-region inference profile id or ARN.

    `us.amazon.nova-2-sonic-v1:0`, `global.…`, `eu.…`, `apac.…` and
    `arn:aws:bedrock:REGION:ACCOUNT:inference-profile/us.amazon.…` all name `amazon.…`.
    """
    tail = model_id.rpartition("/")[2] if model_id.startswith("arn:") else model_id
    if tail in MODELS:
        return tail
    prefix, dot, rest = tail.partition(".")
    # A profile prefix is a short region-group name (us, eu, apac, global, us-gov), never a
    # provider name, so "amazon.nova-…" itself is left alone.
    if dot and rest.startswith("amazon.") and prefix.replace("-", "").isalpha():
        return rest
    return tail


def model_info(model_id: str) -> ModelInfo | None:
    """The known model for `model_id`, also accepting cross-region profile ids like `us.<id>`."""
    return MODELS.get(base_model_id(model_id))


def is_nova2(model_id: str) -> bool:
    """Nova 2 and later models; unknown ids are treated as Nova 2 capable (newer models)."""
    info = model_info(model_id)
    return True if info is None else info.supports_interactive_text


def lifecycle_warning(model_id: str, today: date | None = None) -> str | None:
    """Why `model_id` should not be used any more (date and replacement), or None when it is
    active or unknown."""
    info = model_info(model_id)
    return None if info is None else describe_lifecycle(info, model_id, today or datetime.now(UTC).date())


def describe_lifecycle(info: ModelInfo, model_id: str, today: date) -> str | None:
    """The warning for a legacy or retired `info` (named `model_id` by the user) on `today`."""
    status = info.status_on(today)
    if status is Lifecycle.ACTIVE:
        return None
    move = f"; use {info.replacement} instead" if info.replacement else ""
    if status is Lifecycle.END_OF_LIFE:
        when = f" on {info.end_of_life.isoformat()}" if info.end_of_life else ""
        return f"{model_id} ({info.label}) reached end of life{when}: Bedrock no longer serves it{move}"
    when = f" until {info.end_of_life.isoformat()}" if info.end_of_life else ""
    return f"{model_id} ({info.label}) is a legacy model, served only{when}{move}"
