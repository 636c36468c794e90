"""Reads event template files: the built-in set, optionally overridden from an agent's folder."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from runner.errors import ConfigError
from runner.files import MAX_TEXT_FILE_BYTES, UnreadableFileError, read_user_file
from runner.protocol.templates import (
    BUILTIN_PREFIX,
    TEMPLATE_EVENTS,
    TEMPLATE_SUFFIX,
    EventTemplateError,
    EventTemplates,
    TemplateSource,
)


def builtin_sources() -> dict[str, TemplateSource]:
    folder = resources.files("runner.protocol") / "templates"
    return {
        name: TemplateSource((folder / f"{name}{TEMPLATE_SUFFIX}").read_text(encoding="utf-8"),
                             f"{BUILTIN_PREFIX}{name}{TEMPLATE_SUFFIX}")
        for name in TEMPLATE_EVENTS
    }


def override_sources(folder: Path) -> dict[str, TemplateSource]:
    """Templates found in `folder`; an unknown `*.json.j2` file name is an error (likely a typo)."""
    if not folder.is_dir():
        raise ConfigError(f"{folder}: templates folder does not exist")
    found: dict[str, TemplateSource] = {}
    for path in sorted(folder.glob(f"*{TEMPLATE_SUFFIX}")):
        name = path.name.removesuffix(TEMPLATE_SUFFIX)
        if name not in TEMPLATE_EVENTS:
            known = ", ".join(TEMPLATE_EVENTS)
            raise ConfigError(f"{path}:1:1: unknown event template {name!r} (known: {known})")
        try:
            text = read_user_file(path, limit=MAX_TEXT_FILE_BYTES, what="an event template").decode("utf-8")
        except UnreadableFileError as exc:
            raise EventTemplateError(exc.reason, filename=str(path), line=1) from None
        except UnicodeDecodeError:
            raise EventTemplateError("is not UTF-8 text", filename=str(path), line=1) from None
        found[name] = TemplateSource(text, str(path))
    return found


def load_event_templates(override_dir: Path | None = None) -> EventTemplates:
    """The built-in templates with any overrides from `override_dir` applied."""
    sources = builtin_sources()
    if override_dir is not None:
        sources.update(override_sources(override_dir))
    return EventTemplates(sources)
