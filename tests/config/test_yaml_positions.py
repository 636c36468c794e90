from __future__ import annotations

import pytest

from runner.config.yaml import MAX_ALIAS_VALUES, Mark, YamlSyntaxError, load

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


def test_a_key_written_after_a_merge_overrides_it_and_is_no_duplicate() -> None:
    doc = load("base: &b {x: 1, y: 2}\nc:\n  <<: *b\n  y: 3\nd: {<<: [*b, {z: 4}], x: 0}\n")
    assert doc.issues == ()
    assert doc.data["c"] == {"x": 1, "y": 3} and list(doc.data["c"]) == ["x", "y"]
    assert doc.data["d"] == {"x": 0, "y": 2, "z": 4}
    assert doc.positions[("c", "y")].key == Mark(4, 3)  # the override, where it is written
    assert doc.positions[("c", "x")].key == Mark(1, 11)  # merged: where the base defines it


def test_aliases_of_plain_values_and_small_lists_keep_working() -> None:
    doc = load("a: &a [1, 2]\nb: [*a, *a]\nc: &s text\nd: *s\n")
    assert doc.data == {"a": [1, 2], "b": [[1, 2], [1, 2]], "c": "text", "d": "text"}
    assert doc.positions[("b", 1)].key == Mark(2, 9)  # the alias itself, not the anchor


def billion_laughs(levels: int) -> str:
    lines = ['l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_at_the_alias_that_exceeds_the_budget() -> None:
    with pytest.raises(YamlSyntaxError) as caught:
        load(billion_laughs(9))
    # l4 = 9**5 values: its first alias, in l5's list on line 6, is the one that does not fit.
    assert caught.value.mark == Mark(6, 10)
    assert f"alias *l4 expands the document to more than {MAX_ALIAS_VALUES} values" in caught.value.message


@pytest.mark.parametrize("merge", ["*m", "[*m]", "[{a: 1}, *m]"])
def test_merge_keys_count_against_the_alias_budget(merge: str) -> None:
    # A base of 10 000 values written out (no alias inside it), merged 30 times.
    text = "m: &m {k: [" + ", ".join(["0"] * 10000) + "]}\n"
    text += "".join(f"x{i}: {{<<: {merge}}}\n" for i in range(30))
    with pytest.raises(YamlSyntaxError) as caught:
        load(text)
    assert "alias *m expands the document" in caught.value.message


@pytest.mark.parametrize(("text", "mark", "message"), [
    ("a: [1\nb: 2", Mark(2, 2), "expected ',' or ']'"),
    ("a: &x [*x]", Mark(1, 8), "recursive alias *x"),
    ("a: &x {b: {<<: *x}}", Mark(1, 16), "recursive alias *x"),
    ("a: {<<: [1]}", Mark(1, 10), "a merge key (<<) takes a mapping"),
    ("a: " + "[" * 2000 + "]" * 2000, Mark(1, 67), "nested more than 64 levels deep"),
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


@pytest.mark.parametrize(("text", "mark", "message"), [
    ("a: " + "[" * 63 + "]" * 63, None, ""),  # 64 levels: the limit itself is fine
    ("a: " + "{b: " * 64 + "1" + "}" * 64, Mark(1, 256), "nested more than 64 levels deep"),
    ("l0: &l0 " + "[" * 60 + "]" * 60 + "\nx: [[[[[*l0]]]]]", Mark(2, 9), "alias *l0 nests lists"),
    ('a: "x\\0y"', Mark(1, 4), "invalid text: control character U+0000 at character 2"),
    ('a: "\\x85"', Mark(1, 4), "invalid text: control character U+0085"),
    ('a: "\\udc00x"', Mark(1, 4), "invalid text: lone surrogate U+DC00 at character 1"),
    ('"\\x07": 1', Mark(1, 1), "invalid text: control character U+0007"),
    ("a: 9223372036854775808", Mark(1, 4), "invalid number: 9223372036854775808 is out of range"),
    ("a: -9223372036854775808", Mark(1, 4), "is out of range"),
    ("a: 0x" + "f" * 100, Mark(1, 4), "invalid number: 0xffffffff...ffff (102 characters) is out of range"),
    ("a: .NaN", Mark(1, 4), "invalid number: .NaN is not a finite number"),
    ("a: [1, -.Inf]", Mark(1, 8), "invalid number: -.Inf is not a finite number"),
    ("a: 1.5e+400", Mark(1, 4), "invalid number: 1.5e+400 is too large for a number"),
    ("a: 2026-02-30", Mark(1, 4), "invalid value: '2026-02-30' is not a valid timestamp"),
])
def test_values_every_later_stage_can_use(text: str, mark: Mark | None, message: str) -> None:
    if mark is None:
        load(text)
        return
    with pytest.raises(YamlSyntaxError) as caught:
        load(text)
    assert caught.value.mark == mark
    assert message in caught.value.message


def test_text_keeps_tabs_and_newlines_and_joins_surrogate_pairs() -> None:
    assert load('a: "t\\tn\\nr\\r \\ud83d\\ude00"').data == {"a": "t\tn\nr\r \U0001F600"}
    assert load("a: 9223372036854775807\nb: -1.5e+300").data == {"a": 2**63 - 1, "b": -1.5e300}
