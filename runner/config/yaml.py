"""The only module that imports PyYAML: safe loading that remembers where every value came from.

`load` composes the node graph (never constructs arbitrary Python objects: safe tags only) and
converts it to plain data while recording the line and column of every mapping key and sequence
item, so every later problem can be reported as FILE:LINE:COL.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

PathPart = str | int
Path = tuple[PathPart, ...]


@dataclass(frozen=True, slots=True)
class Mark:
    """A 1-based line and column."""

    line: int
    col: int


@dataclass(frozen=True, slots=True)
class Position:
    """Where a mapping entry (its key) or sequence item starts, and where its value starts."""

    key: Mark
    value: Mark
    # A literal/folded block scalar (`key: |`): its text starts on the line after `value`.
    block_scalar: bool = False


class YamlSyntaxError(Exception):
    """The text is not valid YAML (or not a single document); `mark` locates the cause."""

    def __init__(self, message: str, mark: Mark) -> None:
        super().__init__(message)
        self.message = message
        self.mark = mark


@dataclass(frozen=True)
class YamlDocument:
    """Plain data (dicts, lists, scalars) plus the position of every entry by its path."""

    data: Any
    positions: Mapping[Path, Position]
    # Structural problems that do not stop loading (duplicate or non-text keys).
    issues: tuple[tuple[Mark, str], ...] = field(default=())

    def locate(self, path: Path) -> Mark:
        """The key of `path`, or of its nearest recorded ancestor; the file start for the root."""
        for end in range(len(path), 0, -1):
            pos = self.positions.get(path[:end])
            if pos is not None:
                return pos.key
        return Mark(1, 1)


def _mark(m: yaml.Mark | None) -> Mark:
    return Mark(m.line + 1, m.column + 1) if m is not None else Mark(1, 1)


def _syntax_error(exc: yaml.YAMLError) -> YamlSyntaxError:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        message = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.context_mark is not None and exc.problem:
            message += f" ({exc.context} at line {exc.context_mark.line + 1})"
        return YamlSyntaxError(f"invalid YAML: {message}", _mark(mark))
    return YamlSyntaxError(f"invalid YAML: {exc}", Mark(1, 1))


_PLAIN_TAGS = frozenset({"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"})


class _Builder:
    def __init__(self, loader: yaml.SafeLoader) -> None:
        self._loader = loader
        self.positions: dict[Path, Position] = {}
        self.issues: list[tuple[Mark, str]] = []
        self._active: set[int] = set()

    def build(self, node: yaml.Node, path: Path) -> Any:
        if id(node) in self._active:  # `&a [*a]`: a recursive alias has no JSON equivalent
            raise YamlSyntaxError("invalid YAML: recursive alias", _mark(node.start_mark))
        self._active.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode | yaml.SequenceNode) and node.tag not in _PLAIN_TAGS:
                # Scalars go through SafeConstructor, which refuses unknown tags; collections are
                # walked here, so refuse theirs explicitly rather than silently ignore them.
                raise YamlSyntaxError(f"invalid YAML: unsupported tag {node.tag!r}", _mark(node.start_mark))
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path)
            if isinstance(node, yaml.SequenceNode):
                return self._sequence(node, path)
            return self._loader.construct_object(node, deep=True)
        finally:
            self._active.discard(id(node))

    def _record(self, path: Path, key_node: yaml.Node, value_node: yaml.Node) -> None:
        block = isinstance(value_node, yaml.ScalarNode) and value_node.style in ("|", ">")
        self.positions[path] = Position(_mark(key_node.start_mark), _mark(value_node.start_mark), block)

    def _mapping(self, node: yaml.MappingNode, path: Path) -> dict[str, Any]:
        self._loader.flatten_mapping(node)  # resolves `<<` merge keys
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = self.build(key_node, path) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                self.issues.append((_mark(key_node.start_mark),
                                    f"keys must be text; got {key_node.value!r}" if key is not None
                                    else "keys must be text, not a list or mapping"))
                continue
            if key in result:
                first = self.positions[(*path, key)].key.line
                self.issues.append((_mark(key_node.start_mark),
                                    f"duplicate key {key!r} (first defined at line {first})"))
                continue
            self._record((*path, key), key_node, value_node)
            result[key] = self.build(value_node, (*path, key))
        return result

    def _sequence(self, node: yaml.SequenceNode, path: Path) -> list[Any]:
        items = []
        for index, item in enumerate(node.value):
            self._record((*path, index), item, item)
            items.append(self.build(item, (*path, index)))
        return items


def load(text: str) -> YamlDocument:
    """Parse one YAML document safely. Raises YamlSyntaxError (with a location) when invalid."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return YamlDocument(None, {})
        builder = _Builder(loader)
        data = builder.build(node, ())
        return YamlDocument(data, builder.positions, tuple(builder.issues))
    except yaml.YAMLError as exc:
        raise _syntax_error(exc) from None
    finally:
        loader.dispose()
