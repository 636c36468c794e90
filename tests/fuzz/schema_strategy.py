"""Hypothesis strategies from a JSON Schema: the subset agent.schema.json and scenario.schema.json use.

Supported: type (one or a list), const, enum, minimum / maximum / exclusiveMinimum, minLength /
maxLength, pattern, properties / required / additionalProperties (false or a schema),
propertyNames (pattern), minProperties (over declared properties), items / minItems / uniqueItems, oneOf whose
branches only require keys, dependentRequired and local `$ref`s to `#/$defs/...`. Anything else
raises NotImplementedError, so a schema that grows a new keyword fails loudly here instead of
silently generating the wrong shape.

`hints` maps a property path (a tuple of keys, `*` for any array index) to a strategy used instead
of the schema: values the schema cannot express usefully (a handler that imports, an input_schema
that is a JSON Schema, files next to the agent).

(hypothesis-jsonschema was not used: it is not in the shared venv, and this subset is small.)
"""

from __future__ import annotations

import json
import string
import unicodedata
from collections.abc import Mapping
from typing import Any

from hypothesis import strategies as st

Path = tuple[str, ...]

_KNOWN = {
    "$schema",
    "$id",
    "$defs",
    "$ref",
    "title",
    "description",
    "examples",
    "default",
    "type",
    "const",
    "enum",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "minLength",
    "maxLength",
    "pattern",
    "properties",
    "required",
    "additionalProperties",
    "propertyNames",
    "minProperties",
    "items",
    "minItems",
    "uniqueItems",
    "maxProperties",
    "oneOf",
    "dependentRequired",
}

_TEXT = st.text(alphabet=string.ascii_letters + string.digits + " _-.,?!'éü", min_size=1, max_size=30)
_ANY_SCALAR = st.one_of(
    st.none(), st.booleans(), st.integers(-1000, 1000), st.floats(-1e6, 1e6, allow_nan=False), _TEXT
)


class SchemaStrategy:
    def __init__(self, schema: Mapping[str, Any], hints: Mapping[Path, st.SearchStrategy[Any]] | None = None):
        self.root = schema
        self.hints = dict(hints or {})

    def document(self) -> st.SearchStrategy[Any]:
        return self.build(self.root, ())

    def _resolve(self, node: Mapping[str, Any]) -> Mapping[str, Any]:
        while "$ref" in node:
            ref = node["$ref"]
            if not ref.startswith("#/$defs/"):
                raise NotImplementedError(f"$ref {ref}")
            node = self.root["$defs"][ref.removeprefix("#/$defs/")]
        return node

    def build(self, node: Mapping[str, Any], path: Path) -> st.SearchStrategy[Any]:
        if path in self.hints:
            return self.hints[path]
        node = self._resolve(node)
        unknown = set(node) - _KNOWN
        if unknown:
            raise NotImplementedError(f"schema keywords {sorted(unknown)} at {path}")
        if "const" in node:
            return st.just(node["const"])
        if "enum" in node:
            return st.sampled_from(node["enum"])
        kind = node.get("type")
        if isinstance(kind, list):
            return st.one_of([self.build({**node, "type": k}, path) for k in kind])
        match kind:
            case "object":
                return self._object(node, path)
            case "array":
                item = self.build(node.get("items", {}), (*path, "*"))
                unique = node.get("uniqueItems") is True  # (items the schemas declare unique are strings)
                return st.lists(item, min_size=node.get("minItems", 0), max_size=3,
                                unique_by=(lambda v: json.dumps(v, sort_keys=True)) if unique else None)
            case "string":
                return self._string(node)
            case "integer":
                low = node.get("minimum", -(10**6))
                if "exclusiveMinimum" in node:
                    low = node["exclusiveMinimum"] + 1
                return st.integers(low, node.get("maximum", 10**6))
            case "number":
                low = node.get("minimum", node.get("exclusiveMinimum", -1e6))
                return st.floats(
                    low,
                    node.get("maximum", 1e6),
                    allow_nan=False,
                    allow_infinity=False,
                    exclude_min="exclusiveMinimum" in node,
                )
            case "boolean":
                return st.booleans()
            case None:
                return _ANY_SCALAR
        raise NotImplementedError(f"type {kind} at {path}")

    def _string(self, node: Mapping[str, Any]) -> st.SearchStrategy[str]:
        low, high = node.get("minLength", 0), node.get("maxLength", 40)
        if "pattern" in node:
            pattern = st.from_regex(node["pattern"], fullmatch=True)
            # Text holds no control characters or lone surrogates (README "Limits"): valid documents don't.
            return pattern.filter(lambda s: low <= len(s) <= high and not any(
                unicodedata.category(c) in ("Cc", "Cs") for c in s))
        return st.text(
            alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")),
            min_size=max(low, 1) if low else 0,
            max_size=min(high, 40),
        )

    def _object(self, node: Mapping[str, Any], path: Path) -> st.SearchStrategy[dict[str, Any]]:
        props: Mapping[str, Any] = node.get("properties", {})
        required = set(node.get("required", ()))
        one_of = node.get("oneOf", [])
        for branch in one_of:
            if set(branch) - {"required"}:
                raise NotImplementedError(f"oneOf branch {branch} at {path}")
        dependent: Mapping[str, list[str]] = node.get("dependentRequired", {})
        extra = node.get("additionalProperties", True)
        names = node.get("propertyNames", {})

        @st.composite
        def build(draw: st.DrawFn) -> dict[str, Any]:
            keys = set(required)
            exclusive: set[str] = set()
            if one_of:
                chosen = draw(st.sampled_from(one_of))
                keys |= set(chosen["required"])
                exclusive = {k for b in one_of for k in b["required"]} - set(chosen["required"])
            optional = sorted(set(props) - keys - exclusive)
            at_least = max(0, min(node.get("minProperties", 0) - len(keys), len(optional)))
            at_most = max(at_least, node.get("maxProperties", len(optional) + len(keys)) - len(keys))
            keys |= set(draw(st.lists(st.sampled_from(optional), unique=True, min_size=at_least,
                                      max_size=at_most))
                        if optional else [])
            for key in list(keys):
                keys |= set(dependent.get(key, ()))
            if keys & exclusive:  # a dependency pulled in another branch's key: drop the dependant
                keys -= {k for k in keys if set(dependent.get(k, ())) & exclusive} | exclusive
            result = {key: draw(self.build(props[key], (*path, key))) for key in sorted(keys)}
            if isinstance(extra, dict) and not props:
                key_strategy = (
                    st.from_regex(names["pattern"], fullmatch=True) if "pattern" in names else _TEXT
                )
                more = draw(
                    st.dictionaries(
                        key_strategy.filter(lambda k: len(k) <= 20),
                        self.build(extra, (*path, "*")),
                        max_size=3,
                    )
                )
                result.update(more)
            elif extra is True and not props:
                result.update(draw(st.dictionaries(_TEXT, _ANY_SCALAR, max_size=3)))
            return result

        return build()
