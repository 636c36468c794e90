from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.tools.builtins import current_datetime
from runner.tools.importer import HandlerImportError, resolve_handler, split_handler


def write(folder: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text, encoding="utf-8")


def test_builtin_and_installed_modules(tmp_path: Path) -> None:
    assert resolve_handler("builtin:current_datetime", tmp_path) is current_datetime
    assert resolve_handler("json:dumps", tmp_path) is json.dumps
    assert resolve_handler("os.path:join", tmp_path)("a", "b") == "a/b"


def test_local_module_wins_and_can_import_its_siblings(tmp_path: Path) -> None:
    write(tmp_path, {"json.py": "from helper import VALUE\ndef dumps() -> str:\n    return VALUE\n",
                     "helper.py": "VALUE = 'local'\n",
                     "pkg/__init__.py": "", "pkg/mod.py": "class K:\n    @staticmethod\n    def f() -> int:\n"
                                                          "        return 7\n"})
    assert resolve_handler("json:dumps", tmp_path)() == "local"
    assert resolve_handler("pkg.mod:K.f", tmp_path)() == 7


def test_same_module_name_in_two_folders_does_not_collide(tmp_path: Path) -> None:
    write(tmp_path, {"a/tools.py": "def f() -> str:\n    return 'a'\n",
                     "b/tools.py": "def f() -> str:\n    return 'b'\n"})
    assert resolve_handler("tools:f", tmp_path / "a")() == "a"
    assert resolve_handler("tools:f", tmp_path / "b")() == "b"


@pytest.mark.parametrize(("handler", "files", "message"), [
    ("no_colon", {}, "handler 'no_colon' must be 'module:function' or 'builtin:<name>'"),
    ("a b:c", {}, "must be 'module:function'"),
    ("mod:", {}, "must be 'module:function'"),
    ("builtin:clock", {}, "unknown built-in handler 'clock' (available: calculator"),
    ("builtin:calculater", {}, "did you mean 'calculator'?"),
    ("nowhere_mod_xyz:f", {}, "handler module 'nowhere_mod_xyz' not found (looked for nowhere_mod_xyz.py in"),
    ("m:f", {"m.py": "import nowhere_dep_xyz\n"},
     "importing handler module 'm' raised ModuleNotFoundError: No module named 'nowhere_dep_xyz'"),
    ("m:f", {"m.py": "x = 1\n1/0\n"},
     "importing handler module 'm' raised ZeroDivisionError: division by zero"),
    ("m:f", {"m.py": "def f(:\n"}, "importing handler module 'm' raised SyntaxError"),
    ("m:fn", {"m.py": "def fun() -> None: ...\n"},
     "handler module 'm' has no attribute 'fn'; did you mean 'fun'?"),
    ("m:X", {"m.py": "X = 3\n"}, "handler 'm:X' is a int, not a function"),
    ("json:nope", {}, "handler module 'json' has no attribute 'nope'"),
])
def test_each_failure_has_its_own_message(tmp_path: Path, handler: str, files: dict[str, str],
                                          message: str) -> None:
    write(tmp_path, files)
    with pytest.raises(HandlerImportError) as caught:
        resolve_handler(handler, tmp_path)
    assert message in str(caught.value)


def test_import_error_names_the_line(tmp_path: Path) -> None:
    write(tmp_path, {"m.py": "x = 1\n1/0\n"})
    with pytest.raises(HandlerImportError) as caught:
        resolve_handler("m:f", tmp_path)
    assert str(caught.value).endswith(f"({tmp_path.resolve()}/m.py:2)")


def test_failed_import_is_retried_after_a_fix(tmp_path: Path) -> None:
    write(tmp_path, {"m.py": "raise RuntimeError('boom')\n"})
    with pytest.raises(HandlerImportError):
        resolve_handler("m:f", tmp_path)
    write(tmp_path, {"m.py": "def f() -> int:\n    return 1\n"})
    assert resolve_handler("m:f", tmp_path)() == 1


def test_split_handler() -> None:
    assert split_handler("a.b:c.d") == ("a.b", "c.d")
