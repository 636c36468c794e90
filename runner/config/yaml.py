"""The only module that imports PyYAML: safe loading that remembers where every value came from.

`load` composes the node graph (never constructs arbitrary Python objects: safe tags only) and
converts it to plain data while recording the line and column of every mapping key and sequence
item, so every later problem can be reported as FILE:LINE:COL.
"""

from __future__ import annotations

import copy
import math
import re
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


_INT_TAG = "tag:yaml.org,2002:int"
_PLAIN_TAGS = frozenset({"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"})
_MERGE_TAG = "tag:yaml.org,2002:merge"

# The most values that aliases (`*name`, `<<: *name`) may add to a document. Real agent files use
# a handful; a "billion laughs" file (aliases of aliases of lists) would expand to billions of
# values, and building them would take minutes and gigabytes. Documented in the README ("Limits").
MAX_ALIAS_VALUES = 100_000


# How deeply lists and mappings may nest (the top-level mapping is level 1). Real agent and
# scenario files use fewer than 15; PyYAML's composer and the builder below recurse once per
# level, so thousands of `[` would otherwise end in a RecursionError. Documented in the README.
MAX_DEPTH = 64

# Integers must fit in 64 bits: JSON consumers (Nova, tool handlers) cannot take more, and Python
# refuses to print an integer of more than 4300 digits. Longer digit strings are refused before
# PyYAML converts them.
MAX_INT = 2**63 - 1
_MAX_INT_TEXT = 64  # characters: a YAML 1.1 int may carry `_` separators, a sign, 0x/0o/0b

# Characters no value may hold: C0 controls other than tab, newline and carriage return, DEL and
# the C1 controls (a `"\0"` or `"\e"` escape writes them). They break file names (NUL), terminals
# and logs, and mean nothing to a voice model.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _shown_number(text: str) -> str:
    return text if len(text) <= 24 else f"{text[:10]}...{text[-4:]} ({len(text)} characters)"


def check_text(value: str) -> str | None:
    """Why `value` cannot be used as text (a control character, a lone surrogate), or None."""
    control = _CONTROL.search(value)
    if control is not None:
        return (f"control character U+{ord(control.group()):04X} at character {control.start() + 1} "
                f"(text may hold tab and newline, no other control character)")
    surrogate = _SURROGATE.search(value)
    if surrogate is not None:
        return (f"lone surrogate U+{ord(surrogate.group()):04X} at character {surrogate.start() + 1} "
                f"(half of a UTF-16 pair: not a character, it cannot be written as UTF-8)")
    return None


def _join_surrogate_pairs(value: str) -> str:
    """`"\ud83d\ude00"` (JSON's way to write an emoji) as the one character it stands for."""
    if _SURROGATE.search(value) is None:
        return value
    joined = value.encode("utf-16-le", "surrogatepass")
    try:
        return joined.decode("utf-16-le")
    except UnicodeDecodeError:  # a lone half: left for check_text to report
        return value


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
        self._depth = 0  # lists and mappings being composed around the current node
        self._keep: list[yaml.Node] = []  # keeps the copies alive, so their ids stay unique

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.SequenceStartEvent, yaml.MappingStartEvent):
            # Refused while composing, at the `[`/`{`/`-` that goes over: PyYAML recurses here.
            if self._depth >= MAX_DEPTH:
                raise _too_deep(self.peek_event().start_mark)  # type: ignore[no-untyped-call]
            self._depth += 1
            try:
                self.composed += 1
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1
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


def _too_deep(mark: yaml.Mark | None, what: str = "lists and mappings nested") -> YamlSyntaxError:
    return YamlSyntaxError(f"invalid YAML: {what} more than {MAX_DEPTH} levels deep", _mark(mark))


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

    def _size(self, node: yaml.Node, depth: int = 0) -> int:
        """How many values `node` expands to (memoised: linear in the file, not the expansion).

        Raises _TooDeep when the expansion nests deeper than any document may (the recursion here
        follows aliases of aliases, so it is bounded like the composer's).
        """
        alias = self._loader.aliases.get(id(node))
        if alias is not None:
            node = alias[0]
        size = self._sizes.get(id(node))
        if size is None:
            if depth > MAX_DEPTH:
                raise _TooDeep
            size = 1
            if isinstance(node, yaml.SequenceNode):
                size += sum(self._size(item, depth + 1) for item in node.value)
            elif isinstance(node, yaml.MappingNode):
                size += sum(self._size(k, depth + 1) + self._size(v, depth + 1) for k, v in node.value)
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
            try:
                self._expanded += self._size(node)
            except _TooDeep:
                raise self._too_deep_alias(node) from None
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
            if isinstance(node, yaml.MappingNode | yaml.SequenceNode):
                if node.tag not in _PLAIN_TAGS:
                    # Scalars go through SafeConstructor, which refuses unknown tags; collections are
                    # walked here, so refuse theirs explicitly rather than silently ignore them.
                    raise YamlSyntaxError(f"invalid YAML: unsupported tag {node.tag!r}",
                                          _mark(node.start_mark))
                if len(path) >= MAX_DEPTH:  # deeper through aliases than the text itself is
                    raise self._too_deep_alias(self._outer) if self._outer is not None \
                        else _too_deep(node.start_mark)
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path)
            if isinstance(node, yaml.SequenceNode):
                return self._sequence(node, path)
            return self._scalar(node)

    def _too_deep_alias(self, alias: yaml.Node) -> YamlSyntaxError:
        name = self._loader.aliases[id(alias)][1]
        return _too_deep(alias.start_mark, f"alias *{name} nests lists and mappings")

    def _scalar(self, node: yaml.Node) -> Any:
        """A scalar's value; only values every later stage can print, encode and send as JSON."""
        out_of_range = f"is out of range (integers are at most {MAX_INT} in size)"
        if node.tag == _INT_TAG and len(str(node.value)) > _MAX_INT_TEXT:
            # Checked on the text: PyYAML's int() refuses 4300+ digits with a ValueError.
            raise self._bad_number(node, out_of_range)
        try:
            value = self._loader.construct_object(node, deep=True)
        except (ValueError, KeyError, AttributeError, TypeError, OverflowError) as exc:
            # A value its tag cannot hold: `2026-13-45` (an implicit date), `!!int x`, `!!bool maybe`.
            kind = str(node.tag).rsplit(":", 1)[-1]
            shown = _shown_number(str(node.value))
            reason = f" ({exc})" if isinstance(exc, ValueError) else ""
            raise YamlSyntaxError(f"invalid value: {shown!r} is not a valid {kind}{reason}; quote it to make "
                                  f"it text", _mark(node.start_mark)) from None
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and abs(value) > MAX_INT:
            raise self._bad_number(node, out_of_range)
        if isinstance(value, float) and not math.isfinite(value):
            too_large = str(node.value).lstrip("+-")[:1].isdigit()
            raise self._bad_number(node, "is too large for a number" if too_large else
                                   "is not a finite number (NaN and infinity have no JSON form)")
        if isinstance(value, str):
            value = _join_surrogate_pairs(value)
            problem = check_text(value)
            if problem is not None:
                raise YamlSyntaxError(f"invalid text: {problem}", _mark(node.start_mark))
        return value

    @staticmethod
    def _bad_number(node: yaml.Node, problem: str) -> YamlSyntaxError:
        return YamlSyntaxError(f"invalid number: {_shown_number(str(node.value))} {problem}; quote it to "
                               f"make it text", _mark(node.start_mark))

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
                        key = self._scalar(key_node) if isinstance(key_node, yaml.ScalarNode) else None
                        if isinstance(key, str) and key not in own and key not in merged:
                            self._record((*path, key), key_node, item)
                            merged[key] = self.build(item, (*path, key))

    def _merged_entries(self, value_node: yaml.Node, depth: int = 0) -> list[tuple[yaml.Node, yaml.Node]]:
        """The (key, value) nodes a merge key brings in, first the base's own then its merges."""
        if depth > MAX_DEPTH:  # bases merging bases merging bases...: the recursion is bounded too
            raise _too_deep(value_node.start_mark, "merge keys (<<) chained")
        sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
        entries: list[tuple[yaml.Node, yaml.Node]] = []
        for source in sources:
            if not isinstance(source, yaml.MappingNode) or source.tag not in _PLAIN_TAGS:
                raise YamlSyntaxError("invalid YAML: a merge key (<<) takes a mapping or a list of "
                                      "mappings", _mark(source.start_mark))
            entries.extend((k, v) for k, v in source.value if k.tag != _MERGE_TAG)
            for k, v in source.value:
                if k.tag == _MERGE_TAG:
                    entries.extend(self._merged_entries(v, depth + 1))
        return entries


class _TooDeep(Exception):
    """An alias's expansion nests deeper than MAX_DEPTH (raised inside _Builder._size)."""


def load(text: str) -> YamlDocument:
    """Parse one YAML document safely. Raises YamlSyntaxError (with a location) when invalid."""
    try:
        # The reader refuses NUL and other unprintable characters as it is constructed.
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:
        before = text[:exc.position]
        mark = Mark(before.count("\n") + 1, exc.position - (before.rfind("\n") + 1) + 1)
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise YamlSyntaxError(f"invalid YAML: the character U+{code:04X} is not allowed in YAML "
                              "(write it as an escape in a double-quoted string, if at all)", mark) from None
    try:
        node = loader.get_single_node()
        if node is None:
            return YamlDocument(None, {})
        builder = _Builder(loader)
        data = builder.build(node, ())
        return YamlDocument(data, builder.positions, tuple(builder.issues))
    except yaml.YAMLError as exc:
        raise _syntax_error(exc) from None
    except RecursionError:  # a safety net: the depth checks above stop nesting well before this
        event = getattr(loader, "current_event", None)  # the parser's last event: where it was
        raise YamlSyntaxError(f"invalid YAML: lists and mappings nested more than {MAX_DEPTH} levels deep",
                              _mark(getattr(event, "start_mark", None))) from None
    finally:
        loader.dispose()
