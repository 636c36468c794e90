from __future__ import annotations

import pytest

from runner.config.yaml import Mark, YamlSyntaxError, load

TEXT = """\
a: 1
b:
  - x
  - {c: 2}
d: |
  hi
  there
"""


def test_positions_of_keys_items_and_values() -> None:
    doc = load(TEXT)
    assert doc.data == {"a": 1, "b": ["x", {"c": 2}], "d": "hi\nthere\n"}
    assert doc.positions[("a",)].key == Mark(1, 1) and doc.positions[("a",)].value == Mark(1, 4)
    assert doc.positions[("b", 0)].key == Mark(3, 5)
    assert doc.positions[("b", 1, "c")].key == Mark(4, 6)
    assert doc.positions[("d",)].block_scalar and not doc.positions[("a",)].block_scalar


def test_locate_falls_back_to_the_nearest_ancestor() -> None:
    doc = load(TEXT)
    assert doc.locate(("b", 1, "missing", 3)) == Mark(4, 5)
    assert doc.locate(()) == Mark(1, 1)


def test_merge_keys_and_duplicates() -> None:
    doc = load("base: &b {x: 1}\nc:\n  <<: *b\n  y: 2\nc: 3\n")
    assert doc.data == {"base": {"x": 1}, "c": {"x": 1, "y": 2}}
    assert doc.issues == ((Mark(5, 1), "duplicate key 'c' (first defined at line 2)"),)


@pytest.mark.parametrize(("text", "mark", "message"), [
    ("a: [1\nb: 2", Mark(2, 2), "expected ',' or ']'"),
    ("a: &x [*x]", Mark(1, 4), "recursive alias"),
    ("a: 1\n---\nb: 2\n", Mark(2, 1), "expected a single document"),
    ("a: !!python/object:os.system x", Mark(1, 4), "could not determine a constructor"),
    ("a: *nowhere", Mark(1, 4), "found undefined alias"),
    ("a:\n\tb: 1", Mark(2, 1), "found character '\\t' that cannot start any token"),
])
def test_syntax_errors_are_located(text: str, mark: Mark, message: str) -> None:
    with pytest.raises(YamlSyntaxError) as caught:
        load(text)
    assert caught.value.mark == mark
    assert message in caught.value.message and caught.value.message.startswith("invalid YAML: ")


def test_empty_document() -> None:
    assert load("# only a comment\n").data is None
