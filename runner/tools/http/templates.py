"""HTTP tool templates: the text of `url`, `headers` and `body` as pieces, rendered at each call.

Pure functions (no I/O): `parse_template` reads `{argument}`, `{vars.NAME}`, `${env:NAME}` and
`{{`/`}}`; `render_text` and `render_body` fill them in from a `Context`, which notes every secret
value it hands out so the caller can scrub it from whatever comes back.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from runner.config.model import VarValue
from runner.errors import ToolError

# {{ / }} (literal braces), ${env:NAME}, {placeholder}, or a brace on its own (an error).
_TOKEN = re.compile(r"(?P<open>\{\{)|(?P<close>\}\})|(?P<env>\$\{env:(?P<envname>[A-Za-z_][A-Za-z0-9_]*)\})"
                    r"|\{(?P<name>[^{}]*)\}|(?P<stray>[{}])")
_ARGUMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_VAR_PREFIX = "vars."


class TemplateSyntaxError(ValueError):
    """A url/header/body template cannot be read."""


@dataclass(frozen=True, slots=True)
class Placeholder:
    name: str
    kind: Literal["argument", "var", "env"]


Piece = str | Placeholder


@dataclass(frozen=True, slots=True)
class TextTemplate:
    pieces: tuple[Piece, ...]

    def placeholders(self, kind: str) -> list[str]:
        return [p.name for p in self.pieces if isinstance(p, Placeholder) and p.kind == kind]

    @property
    def single(self) -> Placeholder | None:
        """The placeholder, when the whole text is exactly one (a typed body value)."""
        if len(self.pieces) == 1 and isinstance(self.pieces[0], Placeholder):
            return self.pieces[0]
        return None


def parse_template(text: str) -> TextTemplate:
    """The pieces of `text`; raises TemplateSyntaxError for a brace that is not a placeholder."""
    pieces: list[Piece] = []
    literal = ""
    position = 0
    for match in _TOKEN.finditer(text):
        literal += text[position:match.start()]
        position = match.end()
        if match.group("open") or match.group("close"):
            literal += match.group(0)[0]
            continue
        if match.group("stray"):
            raise TemplateSyntaxError(f"a lone {match.group('stray')!r} at character {match.start() + 1}: "
                                      f"write {{{{ or }}}} for a literal brace")
        if literal:
            pieces.append(literal)
            literal = ""
        if match.group("env"):
            pieces.append(Placeholder(match.group("envname"), "env"))
            continue
        name = match.group("name").strip()
        if name.startswith(_VAR_PREFIX) and name[len(_VAR_PREFIX):].isidentifier():
            pieces.append(Placeholder(name[len(_VAR_PREFIX):], "var"))
        elif _ARGUMENT.fullmatch(name) and not name.startswith(_VAR_PREFIX):
            pieces.append(Placeholder(name, "argument"))
        else:
            raise TemplateSyntaxError(f"{match.group(0)!r} is not a placeholder: write {{argument}}, "
                                      f"{{vars.NAME}} or ${{env:NAME}} ({{{{ and }}}} for literal braces)")
    literal += text[position:]
    if literal:
        pieces.append(literal)
    return TextTemplate(tuple(pieces))


def as_text(value: Any) -> str:
    """An argument or variable as text: strings as they are, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@dataclass
class Context:
    """What templates are rendered with at one call; `secrets` collects the values resolved."""

    arguments: Mapping[str, Any]
    variables: Mapping[str, VarValue]
    environ: Mapping[str, str]
    secrets: dict[str, str] = field(default_factory=dict)

    def value(self, placeholder: Placeholder) -> Any:
        if placeholder.kind == "argument":
            return self.arguments.get(placeholder.name)  # an optional argument left out: empty
        if placeholder.kind == "var":
            return self.variables.get(placeholder.name)
        if placeholder.name not in self.environ:
            raise ToolError(f"environment variable {placeholder.name} is not set")
        secret = self.environ[placeholder.name]
        self.secrets[placeholder.name] = secret
        return secret


def render_text(template: TextTemplate, context: Context, *, url: bool = False) -> str:
    """The text, arguments URL-encoded when `url` (whole value: '/', '?', '#', '@' included).
    Variables and secrets are the author's: inserted as written, so `${env:BASE_URL}` can be one."""
    out = []
    for piece in template.pieces:
        if isinstance(piece, str):
            out.append(piece)
            continue
        text = as_text(context.value(piece))
        if url and piece.kind == "argument":
            # Encoding leaves '.' as it is, and the URL library (then the server) resolves a path
            # segment of "." or ".." even written %2E: it would walk the path up to another endpoint.
            if text in (".", ".."):
                raise ToolError(f"argument {piece.name} cannot be {text!r} in the URL "
                                f"(it would change the path)")
            text = urllib.parse.quote(text, safe="")
        out.append(text)
    return "".join(out)


# -- body templates: any JSON value, whose strings are text templates --------------------------------

BodyPath = tuple[str | int, ...]


def body_strings(value: Any, path: BodyPath = ()) -> Iterator[tuple[BodyPath, str]]:
    """Every string inside a JSON body template (keys stay literal), with its path."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from body_strings(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from body_strings(item, (*path, index))


def render_body(value: Any, context: Context) -> Any:
    if isinstance(value, str):
        template = parse_template(value)
        single = template.single
        if single is not None and single.kind != "env":
            return context.value(single)  # typed: a number stays a number
        return render_text(template, context)
    if isinstance(value, dict):
        return {key: render_body(item, context) for key, item in value.items()}
    if isinstance(value, list):
        return [render_body(item, context) for item in value]
    return value
