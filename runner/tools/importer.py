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
import json
import os
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout, suppress
from pathlib import Path
from types import ModuleType
from typing import Any

from runner.errors import ConfigError
from runner.tools.builtins import BUILTINS
from runner.tools.invoke import safe_text

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
        f"importing handler module {module!r} raised {type(exc).__name__}: "
        f"{safe_text(exc)}{_where(exc, file)}")


# The code a probe runs: import the module file as `_load_local` would, then report how it went
# (the failure worded as `_import_failed` words it) on a private pipe: the module's own output goes
# nowhere, and cannot forge the report.
_PROBE = """\
import importlib.util, json, os, sys, traceback
report, file, parent = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def send(**result):
    os.write(report, json.dumps(result).encode())
    os._exit(0)  # at once: threads the module started must not keep the probe alive
def text(value, use_repr=False):  # a module's exception may refuse to be printed
    try:
        out = repr(value) if use_repr else str(value)
        if isinstance(out, str):
            return out.encode("utf-8", "backslashreplace").decode()[:2000]
    except Exception:
        pass
    return f"<{type(value).__name__} that cannot be printed>"
sys.path.insert(0, parent)
try:
    spec = importlib.util.spec_from_file_location("_agent_run_probe", file)
    module = importlib.util.module_from_spec(spec)
    sys.modules["_agent_run_probe"] = module
    spec.loader.exec_module(module)
except BaseException as exc:
    frames = traceback.extract_tb(exc.__traceback__)
    frames = [f for f in frames if f.filename == file] or frames[-1:]
    where = f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    if isinstance(exc, SyntaxError) and exc.filename:
        where = f" ({exc.filename}:{exc.lineno})"
    if isinstance(exc, SystemExit):
        send(status="error", detail=f"called sys.exit({text(exc.code, True)}){where}")
    if isinstance(exc, Exception):
        send(status="error", detail=f"raised {type(exc).__name__}: {text(exc)}{where}")
    send(status="error", detail=f"raised {type(exc).__name__}{where}")
send(status="ok")
"""
# How long importing one handler module may take (README "Tools"); `check` and a run both wait this.
IMPORT_TIMEOUT_S = 5.0
_probed: dict[Path, None] = {}  # module files already probed successfully in this process


def _import_problem(module: str, detail: str) -> HandlerImportError:
    return HandlerImportError(f"importing handler module {module!r} {detail}")


def probe_import(module: str, file: Path, parent: Path, timeout_s: float = IMPORT_TIMEOUT_S) -> None:
    """Import `file` once in a child process first; HandlerImportError if that would end or hang us.

    A module that calls `os._exit()` or loops forever at import time cannot be stopped in-process,
    so the first import of each local module happens in a child with a time limit; its output is
    discarded (it must not reach `check --json`), and only a module that imported cleanly there
    is imported here.
    """
    key = file.resolve()
    if key in _probed:
        return
    read_end, write_end = os.pipe()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", _PROBE, str(write_end), str(key), str(parent)],
            pass_fds=(write_end,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
    except OSError as exc:
        os.close(read_end)
        raise _import_problem(module, f"could not be tried in a child process: {exc}") from None
    finally:
        os.close(write_end)
    with os.fdopen(read_end, "rb") as report:
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise _import_problem(module, f"did not finish within {timeout_s:g} s (an endless loop or a "
                                          f"blocking call at import time?)") from None
        raw = report.read(4096)
    try:
        result = json.loads(raw) if raw else None
    except ValueError:
        result = None
    if not isinstance(result, dict):
        how = (f"killed by signal {signal.Signals(-proc.returncode).name}" if proc.returncode < 0
               else f"exit status {proc.returncode}; os._exit() at import time?")
        raise _import_problem(module, f"ended the process ({how})")
    if result.get("status") != "ok":
        raise _import_problem(module, str(result.get("detail")))
    _probed[key] = None


@contextmanager
def _quiet_stdout() -> Iterator[None]:
    # Whatever a module prints while importing goes to stderr: stdout may be `check --json`.
    with redirect_stdout(sys.stderr):
        yield


def _load_local(module: str, file: Path) -> ModuleType:
    # A private, path-derived module name: two agent folders may both have a `tools.py`.
    digest = hashlib.sha1(str(file.resolve()).encode()).hexdigest()[:12]
    name = f"_agent_run_local_{digest}_{module.replace('.', '_')}"
    if name in sys.modules:
        return sys.modules[name]
    parent = file.parent if file.name != "__init__.py" else file.parent.parent
    probe_import(module, file, parent)
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise HandlerImportError(f"cannot load handler module {module!r} from {file}")
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[name] = loaded
    try:
        with _path_first(parent), _quiet_stdout():
            spec.loader.exec_module(loaded)
    except BaseException as exc:  # SystemExit and KeyboardInterrupt too: they must not end `check`
        del sys.modules[name]
        raise _import_failed(module, exc, file.resolve()) from None
    return loaded


def _load_installed(module: str, folder: Path) -> ModuleType:
    try:
        with _quiet_stdout():
            return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        # Only "this very module (or a parent package) is missing" means not found; a missing
        # import *inside* the module is an error raised while importing it.
        if exc.name is not None and (module == exc.name or module.startswith(exc.name + ".")):
            raise HandlerImportError(
                f"handler module {module!r} not found (looked for {Path(*module.split('.'))}.py "
                f"in {folder} and among installed modules)") from None
        raise _import_failed(module, exc, None) from None
    except BaseException as exc:  # SystemExit and KeyboardInterrupt too: they must not end `check`
        raise _import_failed(module, exc, None) from None


def _attribute(module: ModuleType, module_name: str, attr: str, label: str) -> Callable[..., Any]:
    value: Any = module
    for part in attr.split("."):
        # A module is user code: a module-level __getattr__ (or a property) may raise anything, so
        # one getattr, each failure worded, and no hasattr that would let it escape.
        try:
            value = getattr(value, part)
        except AttributeError:
            close = difflib.get_close_matches(part, _public_callables(value), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise HandlerImportError(f"{label} {module_name!r} has no attribute {part!r}{hint}") from None
        except Exception as exc:
            raise HandlerImportError(
                f"{label} {module_name!r}: looking up {part!r} raised {type(exc).__name__}: "
                f"{safe_text(exc)}") from None
    if not callable(value):
        raise HandlerImportError(
            f"handler '{module_name}:{attr}' is a {type(value).__name__}, not a function")
    return value  # type: ignore[no-any-return]


def _public_callables(value: Any) -> list[str]:
    """Public callable attributes of `value`, for a did-you-mean (skipping any that raise)."""
    names = []
    try:
        candidates = [n for n in dir(value) if isinstance(n, str) and not n.startswith("_")]
    except Exception:
        return []
    for name in candidates:
        try:
            if callable(getattr(value, name)):
                names.append(name)
        except Exception:
            continue
    return names


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
