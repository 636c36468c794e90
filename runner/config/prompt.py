"""The system prompt: `--var` overrides and rendering in the sandboxed template environment."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from types import TracebackType

import jinja2

from runner.config.model import VarValue
from runner.config.yaml import MAX_INT
from runner.protocol.sandbox import TemplateLimitError, render_bounded
from runner.protocol.templates import make_environment

# Nova's documented text budget (nova-sonic-protocol.md §2.4/§2.5): the session splits text into
# ≤1 KB textInput pieces, but the total may not exceed 40 KB.
MAX_PROMPT_BYTES = 40 * 1024

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


class PromptError(Exception):
    """The prompt template failed; `line` is 1-based within the template."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


def convert_override(text: str, default: VarValue) -> VarValue:
    """`text` from `--var` converted to the type of the declared default (ValueError if it can't be)."""
    if isinstance(default, bool):
        lowered = text.strip().lower()
        if lowered in _TRUE | _FALSE:
            return lowered in _TRUE
        raise ValueError(f"expected true or false, got {_shown(text)}")
    if isinstance(default, int):
        try:
            # The length check first: int() refuses over 4300 digits with a message of its own.
            number = int(text) if len(text) <= 64 else None
        except ValueError:
            raise ValueError(f"expected an integer, got {_shown(text)}") from None
        if number is None or abs(number) > MAX_INT:
            raise ValueError(f"{_shown(text)} is out of range (integers are at most {MAX_INT} in size)")
        return number
    if isinstance(default, float):
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"expected a number, got {_shown(text)}") from None
        if not math.isfinite(value):
            raise ValueError(f"expected a finite number, got {_shown(text)}")
        return value
    return text


def _shown(text: str) -> str:
    return repr(text if len(text) <= 40 else f"{text[:30]}...({len(text)} characters)")


def _template_line(tb: TracebackType | None) -> int:
    # Runtime errors carry the template line only in the traceback's "<template>" frames.
    line = 1
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def render_prompt(text: str, variables: Mapping[str, VarValue]) -> str:
    """The rendered prompt. Raises PromptError naming an undefined variable or the failure."""
    env = make_environment()
    try:
        template = env.from_string(text)
    except jinja2.TemplateSyntaxError as exc:
        raise PromptError(f"template syntax error: {exc.message}", exc.lineno or 1) from None
    except Exception as exc:  # e.g. RecursionError: expressions nested thousands deep
        raise PromptError(f"template cannot be compiled: {type(exc).__name__}: {exc}", 1) from None
    try:
        return render_bounded(template, dict(variables))
    except jinja2.UndefinedError as exc:
        line = _template_line(exc.__traceback__)
        match = re.fullmatch(r"'([^']+)' is undefined", exc.message or "")
        if match:
            declared = ", ".join(sorted(variables)) or "none"
            raise PromptError(f"undefined variable {match.group(1)!r} (declared vars: {declared})",
                              line) from None
        raise PromptError(f"template error: {exc.message}", line) from None
    except TemplateLimitError as exc:
        raise PromptError(str(exc), _template_line(exc.__traceback__)) from None
    except Exception as exc:  # a user template can fail in any way (1/0, bad filter argument...)
        raise PromptError(f"rendering failed: {type(exc).__name__}: {exc}",
                          _template_line(exc.__traceback__)) from None
