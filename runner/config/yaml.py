"""The only module that imports PyYAML: safe loading that remembers where every value came from.

`load` composes the node graph (never constructs arbitrary Python objects: safe tags only) and
converts it to plain data while recording the line and column of every mapping key and sequence
item, so every later problem can be reported as FILE:LINE:COL.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
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


def _mark(m: yaml.Mark | yaml._yaml.Mark | None) -> Mark:
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
_MERGE_TAG = "tag:yaml.org,2002:merge"

# The most values that aliases (`*name`, `<<: *name`) may add to a document. Real agent files use
# a handful; a "billion laughs" file (aliases of aliases of lists) would expand to billions of
# values, and building them would take minutes and gigabytes. Documented in the README ("Limits").
MAX_ALIAS_VALUES = 100_000


class _Loader(yaml.SafeLoader):
    """SafeLoader whose aliases are distinct nodes that remember where the `*name` was written.

    PyYAML returns the anchored node itself for every alias, so the position of each use (the
    place to report an alias bomb) would be lost. Here an alias composes to a shallow copy of the
    anchored node with the alias's own mark, and `aliases` maps the copy to (target, name).
    """

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.aliases: dict[int, tuple[yaml.Node, str]] = {}
        self.composed = 0  # nodes written in the text (aliases not counted)
        self._keep: list[yaml.Node] = []  # keeps the copies alive, so their ids stay unique

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if not self.check_event(yaml.AliasEvent):
            self.composed += 1
            return super().compose_node(parent, index)
        event: yaml.AliasEvent = self.peek_event()  # type: ignore[no-untyped-call]
        target = self.anchors.get(event.anchor)
        if target is None:
            return super().compose_node(parent, index)  # raises "found undefined alias"
        self.get_event()  # type: ignore[no-untyped-call]
        if target.end_mark is None:  # still being composed: `&a [*a]` has no JSON equivalent
            raise YamlSyntaxError(f"invalid YAML: recursive alias *{event.anchor}", _mark(event.start_mark))
        clone = copy.copy(target)
        clone.start_mark = clone.end_mark = event.start_mark
        if isinstance(target, yaml.CollectionNode):
            clone.value = list(target.value)  # merging edits a mapping's list in place
        self.aliases[id(clone)] = (target, str(event.anchor))
        self._keep.append(clone)
        return clone


class _Builder:
    def __init__(self, loader: _Loader) -> None:
        self._loader = loader
        self.positions: dict[Path, Position] = {}
        self.issues: list[tuple[Mark, str]] = []
        self._sizes: dict[int, int] = {}
        self._expanded = 0  # values added by aliases so far
        self._in_alias = 0  # > 0 while building an alias's value: counted once, at the outermost
        self._outer: yaml.Node | None = None  # that outermost alias
        self._built = 0  # every value built: the safety net for expansions `_charge` cannot see

    def _size(self, node: yaml.Node) -> int:
        """How many values `node` expands to (memoised: linear in the file, not the expansion)."""
        alias = self._loader.aliases.get(id(node))
        if alias is not None:
            node = alias[0]
        size = self._sizes.get(id(node))
        if size is None:
            size = 1
            if isinstance(node, yaml.SequenceNode):
                size += sum(self._size(item) for item in node.value)
            elif isinstance(node, yaml.MappingNode):
                size += sum(self._size(k) + self._size(v) for k, v in node.value)
            self._sizes[id(node)] = size
        return size

    def _bomb(self, node: yaml.Node) -> YamlSyntaxError:
        alias = self._loader.aliases.get(id(node))
        what = f"alias *{alias[1]}" if alias is not None else "merge keys (<<)"
        return YamlSyntaxError(f"invalid YAML: {what} expands the document to more than {MAX_ALIAS_VALUES} "
                               f"values (aliases of aliases: a YAML bomb?)", _mark(node.start_mark))

    @contextmanager
    def _alias_scope(self, node: yaml.Node) -> Iterator[None]:
        """Building `node`: an alias's whole expansion is counted against the budget before it is built."""
        if id(node) not in self._loader.aliases:
            yield
            return
        outer = self._outer
        if self._in_alias == 0:
            self._expanded += self._size(node)
            if self._expanded > MAX_ALIAS_VALUES:
                raise self._bomb(node)
            self._outer = node
        self._in_alias += 1
        try:
            yield
        finally:
            self._in_alias -= 1
            self._outer = outer

    def build(self, node: yaml.Node, path: Path) -> Any:
        self._built += 1
        if self._built > self._loader.composed + MAX_ALIAS_VALUES:
            raise self._bomb(self._outer or node)
        with self._alias_scope(node):
            if isinstance(node, yaml.MappingNode | yaml.SequenceNode) and node.tag not in _PLAIN_TAGS:
                # Scalars go through SafeConstructor, which refuses unknown tags; collections are
                # walked here, so refuse theirs explicitly rather than silently ignore them.
                raise YamlSyntaxError(f"invalid YAML: unsupported tag {node.tag!r}", _mark(node.start_mark))
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path)
            if isinstance(node, yaml.SequenceNode):
                return self._sequence(node, path)
            return self._loader.construct_object(node, deep=True)

    def _record(self, path: Path, key_node: yaml.Node, value_node: yaml.Node) -> None:
        block = isinstance(value_node, yaml.ScalarNode) and value_node.style in ("|", ">")
        self.positions[path] = Position(_mark(key_node.start_mark), _mark(value_node.start_mark), block)

    def _key(self, key_node: yaml.Node, path: Path) -> str | None:
        key = self.build(key_node, path) if isinstance(key_node, yaml.ScalarNode) else None
        if not isinstance(key, str):
            self.issues.append((_mark(key_node.start_mark),
                                f"keys must be text; got {key_node.value!r}" if key is not None
                                else "keys must be text, not a list or mapping"))
            return None
        return key

    def _mapping(self, node: yaml.MappingNode, path: Path) -> dict[str, Any]:
        result: dict[str, Any] = {}
        merges = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merges.append(value_node)
                continue
            key = self._key(key_node, path)
            if key is None:
                continue
            if key in result:
                first = self.positions[(*path, key)].key.line
                self.issues.append((_mark(key_node.start_mark),
                                    f"duplicate key {key!r} (first defined at line {first})"))
                continue
            self._record((*path, key), key_node, value_node)
            result[key] = self.build(value_node, (*path, key))
        merged: dict[str, Any] = {}
        for value_node in merges:
            self._merge(value_node, path, merged, result)
        return {**merged, **result} if merged else result

    def _sequence(self, node: yaml.SequenceNode, path: Path) -> list[Any]:
        items = []
        for index, item in enumerate(node.value):
            self._record((*path, index), item, item)
            items.append(self.build(item, (*path, index)))
        return items

    def _merge(self, value_node: yaml.Node, path: Path, merged: dict[str, Any], own: dict[str, Any]) -> None:
        """`<<: *base` or `<<: [*a, *b]`: keys written in the mapping itself win, then earlier bases."""
        with self._alias_scope(value_node):
            sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for source in sources:
                with self._alias_scope(source):
                    for key_node, item in self._merged_entries(source):
                        key = self._loader.construct_object(key_node, deep=True) \
                            if isinstance(key_node, yaml.ScalarNode) else None
                        if isinstance(key, str) and key not in own and key not in merged:
                            self._record((*path, key), key_node, item)
                            merged[key] = self.build(item, (*path, key))

    def _merged_entries(self, value_node: yaml.Node) -> list[tuple[yaml.Node, yaml.Node]]:
        """The (key, value) nodes a merge key brings in, first the base's own then its merges."""
        sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
        entries: list[tuple[yaml.Node, yaml.Node]] = []
        for source in sources:
            if not isinstance(source, yaml.MappingNode) or source.tag not in _PLAIN_TAGS:
                raise YamlSyntaxError("invalid YAML: a merge key (<<) takes a mapping or a list of "
                                      "mappings", _mark(source.start_mark))
            entries.extend((k, v) for k, v in source.value if k.tag != _MERGE_TAG)
            for k, v in source.value:
                if k.tag == _MERGE_TAG:
                    entries.extend(self._merged_entries(v))
        return entries


def load(text: str) -> YamlDocument:
    """Parse one YAML document safely. Raises YamlSyntaxError (with a location) when invalid."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return YamlDocument(None, {})
        builder = _Builder(loader)
        data = builder.build(node, ())
        return YamlDocument(data, builder.positions, tuple(builder.issues))
    except yaml.YAMLError as exc:
        raise _syntax_error(exc) from None
    except RecursionError:  # the parser and the builder recurse once per level of nesting
        raise YamlSyntaxError("invalid YAML: lists and mappings nested too deeply", Mark(1, 1)) from None
    finally:
        loader.dispose()
