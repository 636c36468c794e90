"""Resolves a tool's `handler` string to a callable.

`module:function` looks for the module next to the agent file first (`<dir>/module.py` or
`<dir>/module/__init__.py`, dotted names as sub-folders), then among installed modules.
`builtin:<name>` names a handler in `runner.tools.builtins`. Each way of failing has its own
message, because "module not found" and "the module raised while importing" need different fixes.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import ModuleType
from typing import Any

from runner.errors import ConfigError
from runner.tools.builtins import BUILTINS

BUILTIN_PREFIX = "builtin"


class HandlerImportError(ConfigError):
    """A handler string could not be resolved to a callable."""


def _is_dotted_name(text: str) -> bool:
    return bool(text) and all(part.isidentifier() for part in text.split("."))


def split_handler(handler: str) -> tuple[str, str]:
    """`("module", "function")`, or HandlerImportError when the string is not `module:function`."""
    module, sep, attr = handler.partition(":")
    if not sep or not _is_dotted_name(module) or not _is_dotted_name(attr):
        raise HandlerImportError(
            f"handler {handler!r} must be 'module:function' or 'builtin:<name>'")
    return module, attr


@contextmanager
def _path_first(folder: Path) -> Iterator[None]:
    # Lets an agent's tool module import its own siblings while it is being loaded.
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        with suppress(ValueError):
            sys.path.remove(str(folder))


def _local_file(module: str, folder: Path) -> Path | None:
    rel = Path(*module.split("."))
    for candidate in (folder / rel.with_suffix(".py"), folder / rel / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _where(exc: BaseException, file: Path | None) -> str:
    """` (file:line)` of the deepest frame in the handler module, for import-time errors."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f" ({exc.filename}:{exc.lineno})"
    frames = traceback.extract_tb(exc.__traceback__)
    wanted = [f for f in frames if file is not None and Path(f.filename) == file] or frames[-1:]
    return f" ({wanted[-1].filename}:{wanted[-1].lineno})" if wanted else ""


def _import_failed(module: str, exc: BaseException, file: Path | None) -> HandlerImportError:
    return HandlerImportError(
        f"importing handler module {module!r} raised {type(exc).__name__}: {exc}{_where(exc, file)}")


def _load_local(module: str, file: Path) -> ModuleType:
    # A private, path-derived module name: two agent folders may both have a `tools.py`.
    digest = hashlib.sha1(str(file.resolve()).encode()).hexdigest()[:12]
    name = f"_agent_run_local_{digest}_{module.replace('.', '_')}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise HandlerImportError(f"cannot load handler module {module!r} from {file}")
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[name] = loaded
    try:
        with _path_first(file.parent if file.name != "__init__.py" else file.parent.parent):
            spec.loader.exec_module(loaded)
    except Exception as exc:
        del sys.modules[name]
        raise _import_failed(module, exc, file.resolve()) from None
    return loaded


def _load_installed(module: str, folder: Path) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        # Only "this very module (or a parent package) is missing" means not found; a missing
        # import *inside* the module is an error raised while importing it.
        if exc.name is not None and (module == exc.name or module.startswith(exc.name + ".")):
            raise HandlerImportError(
                f"handler module {module!r} not found (looked for {Path(*module.split('.'))}.py "
                f"in {folder} and among installed modules)") from None
        raise _import_failed(module, exc, None) from None
    except Exception as exc:
        raise _import_failed(module, exc, None) from None


def _attribute(module: ModuleType, module_name: str, attr: str, label: str) -> Callable[..., Any]:
    value: Any = module
    for part in attr.split("."):
        if not hasattr(value, part):
            names = [n for n in dir(value) if not n.startswith("_") and callable(getattr(value, n))]
            close = difflib.get_close_matches(part, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise HandlerImportError(f"{label} {module_name!r} has no attribute {part!r}{hint}")
        value = getattr(value, part)
    if not callable(value):
        raise HandlerImportError(
            f"handler '{module_name}:{attr}' is a {type(value).__name__}, not a function")
    return value  # type: ignore[no-any-return]


def _builtin(name: str) -> Callable[..., Any]:
    if name not in BUILTINS:
        close = difflib.get_close_matches(name, list(BUILTINS), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise HandlerImportError(
            f"unknown built-in handler {name!r} ({hint}available: {', '.join(sorted(BUILTINS))})")
    return BUILTINS[name]


def resolve_handler(handler: str, folder: Path) -> Callable[..., Any]:
    """The callable named by `handler`, looked up from the agent folder `folder`.

    Raises HandlerImportError with a message saying which step failed.
    """
    module_name, attr = split_handler(handler)
    if module_name == BUILTIN_PREFIX:
        return _builtin(attr)
    local = _local_file(module_name, folder)
    module = _load_local(module_name, local) if local else _load_installed(module_name, folder)
    return _attribute(module, module_name, attr, "handler module")
