"""Mutators for generated documents, and a YAML writer that can say what PyYAML's dumper cannot.

Data-level mutations (on the generated dict) delete keys, swap types and plant huge, special or
deeply nested values. Text-level mutations (on the YAML text or its bytes) plant bad bytes (NUL,
lone surrogates, invalid UTF-8, BOMs, CRLF, control characters) and YAML features (anchors and
aliases, merge keys, tags such as `!!python/object`, several documents).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st


@dataclass(frozen=True)
class Raw:
    """A scalar written verbatim into the YAML text (a 5,000-digit int, `.nan`, a tag)."""

    text: str


SPECIAL_VALUES: list[Any] = [
    Raw("9" * 5000),
    Raw("-" + "9" * 5000),
    Raw("1" + "0" * 400 + ".5"),
    Raw("1e999"),
    Raw("-1e999"),
    Raw(".nan"),
    Raw(".NaN"),
    Raw(".inf"),
    Raw("-.inf"),
    Raw("0x7fffffffffffffffffff"),
    Raw("0o777"),
    Raw("~"),
    Raw("null"),
    Raw("!!binary aGVsbG8="),
    Raw("!!python/object/apply:os.system ['true']"),
    Raw("!!python/object:builtins.dict {}"),
    Raw("!!set {a, b}"),
    Raw("!!timestamp 2001-12-14"),
    Raw("!custom x"),
    Raw("!!float nan"),
    Raw("!!int '12'"),
    Raw("2001-12-14t21:59:43.10-05:00"),
    Raw('"\\0"'),
    Raw('"\\ud800"'),
    Raw('"\\udfff x"'),
    Raw('"a\\x01b"'),
    Raw('"\\x1b[31mred"'),
    Raw('"tab\\there"'),
    Raw('"\\u2028\\u2029"'),
    Raw('"\\uFEFF"'),
    Raw("''"),
    Raw('""'),
    Raw("[]"),
    Raw("{}"),
    Raw("- "),
    Raw("*undefined_alias"),
    0,
    -1,
    -(2**63),
    2**64,
    10**30,
    -0.0,
    1e308,
    -1e-308,
    5e-324,
    True,
    False,
    None,
    "",
    " ",
    "x" * 100_000,
    "é" * 5000,
    "{{ 1 }}",
    "{% for x in range(10**9) %}{% endfor %}",
    "{{ ''.__class__.__mro__ }}",
    "/dev/zero",
    "/dev/urandom",
    "../../../../etc/passwd",
    "~/x",
    "https://",
    "http://[::1",
    "a:b",
    ":",
    "builtin:nope",
    "os:system",
    "sys:exit",
    "\u202e",
]

_DEPTHS = [50, 300, 1200, 5000]


def nested(depth: int, kind: str) -> Raw:
    if kind == "list":
        return Raw("[" * depth + "]" * depth)
    if kind == "map":
        return Raw("{a: " * depth + "1" + "}" * depth)
    return Raw("[" * depth + "{a: " * depth + "}" * depth + "]" * depth)


def special_value() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.sampled_from(SPECIAL_VALUES),
        st.builds(nested, st.sampled_from(_DEPTHS), st.sampled_from(["list", "map", "mixed"])),
        st.integers(),
        st.floats(),
        st.text(max_size=50),
    )


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


def _replace(value: Any, path: tuple[Any, ...], new: Any, *, delete: bool = False) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        copy = dict(value)
        if delete and not rest:
            copy.pop(head, None)
        else:
            copy[head] = _replace(value.get(head), rest, new, delete=delete)
        return copy
    copy_list = list(value)
    if delete and not rest:
        del copy_list[head]
    else:
        copy_list[head] = _replace(value[head], rest, new, delete=delete)
    return copy_list


@st.composite
def mutate_data(draw: st.DrawFn, doc: Any, rounds: int = 3) -> Any:
    """Up to `rounds` mutations of `doc`: deletions, type swaps, special values, new keys."""
    for _ in range(draw(st.integers(1, rounds))):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths))
        action = draw(st.sampled_from(["delete", "special", "swap", "add", "wrap"]))
        if action == "delete" and path:
            doc = _replace(doc, path, None, delete=True)
        elif action == "add" and isinstance(_get(doc, path), dict):
            key = draw(
                st.one_of(
                    st.sampled_from(["version", "name", "tools", "say", "<<", "x", "", "1", "true", "null"]),
                    st.text(max_size=10),
                )
            )
            doc = _replace(doc, (*path, key), draw(special_value()))
        elif action == "wrap":
            doc = _replace(doc, path, draw(st.sampled_from([[_get(doc, path)], {"x": _get(doc, path)}])))
        elif action == "swap":
            doc = _replace(doc, path, draw(st.sampled_from([[], {}, "text", 1, 1.5, True, None, ["a"]])))
        else:
            doc = _replace(doc, path, draw(special_value()))
    return doc


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        value = value[key]
    return value


# --- a YAML writer ------------------------------------------------------------------------------


def _scalar(value: Any) -> str:
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        if value != value:
            return ".nan"
        if value in (float("inf"), float("-inf")):
            return ".inf" if value > 0 else "-.inf"
        mantissa, e, exponent = repr(value).partition("e")
        # YAML 1.1 (PyYAML) reads 5e-324 as a string: the mantissa needs a dot, the exponent a sign.
        return (mantissa if "." in mantissa else mantissa + ".0") + (e + exponent if e else "")
    if isinstance(value, int):
        return str(value)
    # JSON string syntax is YAML double-quoted syntax (lone surrogates become \udXXX escapes).
    return json.dumps(str(value))


def _key(key: Any) -> str:
    return _scalar(key) if not isinstance(key, str) or not key.isidentifier() else key


def to_yaml(value: Any, indent: int = 0, *, flow: bool = False) -> str:
    """Block-style YAML for `value` (flow style with `flow`), Raw scalars written as they are."""
    pad = "  " * indent
    if flow or not isinstance(value, dict | list) or not value:
        if isinstance(value, dict):
            return "{" + ", ".join(f"{_key(k)}: {to_yaml(v, flow=True)}" for k, v in value.items()) + "}"
        if isinstance(value, list):
            return "[" + ", ".join(to_yaml(v, flow=True) for v in value) + "]"
        return _scalar(value)
    lines = []
    if isinstance(value, dict):
        for key, child in value.items():
            if isinstance(child, dict | list) and child:
                lines.append(f"{pad}{_key(key)}:\n{to_yaml(child, indent + 1)}")
            else:
                lines.append(f"{pad}{_key(key)}: {to_yaml(child, flow=True)}")
    else:
        for child in value:
            if isinstance(child, dict | list) and child:
                inner = to_yaml(child, indent + 1)
                lines.append(f"{pad}- {inner.lstrip()}")
            else:
                lines.append(f"{pad}- {to_yaml(child, flow=True)}")
    return "\n".join(lines)


# --- text and byte mutations ----------------------------------------------------------------------

_YAML_SNIPPETS = [
    "base: &b {a: 1}\nother:\n  <<: *b\n  a: 2\n",
    "x: &a [1, 2]\ny: *a\n",
    "<<: {version: 1}\n",
    "<<: [*nope]\n",
    "a: &a [*a]\n",
    "a: !!python/object/apply:os.system ['true']\n",
    "a: !!python/name:os.system\n",
    "--- \n...\n--- {a: 1}\n",
    "---\nsecond: document\n",
    "%YAML 1.1\n---\n",
    "%TAG ! tag:example.com,2000:\n---\n",
    "? [complex, key]\n: value\n",
    "a: |\n  block\n   more\n",
    "a: >-\n  folded\n",
    "\t- tab indented\n",
    "key: value\nkey: duplicate\n",
    "a: b: c\n",
    "'unterminated\n",
    "[" * 20_000 + "\n",
]

_BYTES = [
    b"\x00",
    b"\xff",
    b"\xfe",
    b"\xc0\x80",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\x80",
    b"\xef\xbb\xbf",
    b"\xff\xfe",
    b"\xfe\xff",
    b"\r\n",
    b"\r",
    b"\x1b[2J",
    b"\x07",
    b"\x0c",
    b"\x85",
    b"\xe2\x80\xa8",
    b"\x7f",
    b"\t",
]


@st.composite
def mutate_text(draw: st.DrawFn, text: str) -> bytes:
    """The YAML text as bytes, with YAML snippets and bad bytes planted, CRLF endings or a BOM."""
    raw = text.encode("utf-8", "surrogatepass")
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.sampled_from(["snippet", "byte", "crlf", "bom", "truncate", "duplicate"]))
        at = draw(st.integers(0, len(raw)))
        if action == "snippet":
            line_start = raw.rfind(b"\n", 0, at) + 1
            raw = raw[:line_start] + draw(st.sampled_from(_YAML_SNIPPETS)).encode() + raw[line_start:]
        elif action == "byte":
            raw = raw[:at] + draw(st.sampled_from(_BYTES)) + raw[at:]
        elif action == "crlf":
            raw = raw.replace(b"\n", b"\r\n")
        elif action == "bom":
            raw = draw(st.sampled_from([b"\xef\xbb\xbf", b"\xff\xfe", b"\xef\xbb\xbf\xef\xbb\xbf"])) + raw
        elif action == "truncate":
            raw = raw[:at]
        else:
            raw = raw + b"\n" + raw
    return raw
