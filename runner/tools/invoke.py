"""Calls one tool handler for the model and always produces JSON text for `toolResult`.

Every way a call can go wrong (arguments that do not match the tool's `input_schema`, a timeout,
an exception, `sys.exit()`, `KeyboardInterrupt` or any other `BaseException` raised by the
handler, a result that is not JSON or is larger than the tool's `max_result_bytes`) becomes a JSON
error result `{"error": ..., "tool": ...}` sent to the model, so the conversation goes on (Nova
rejects non-JSON tool results with "Tool Response parsing error", nova-sonic-protocol.md §2.4).
Arguments are validated before the handler runs, so a handler never sees arguments its schema
forbids.

Sync handlers run in a daemon thread of their own, so they never block audio. A timed-out sync
handler cannot be stopped: its thread goes on in the background, its result is discarded, and,
being a daemon thread outside any executor, it never delays the end of the run (the default
executor of `asyncio.to_thread` is joined when the loop closes, and its threads at interpreter
exit, which kept a run alive for as long as a hung handler slept). Async handlers are awaited on
the loop. Cancellation of the caller propagates unchanged; a `CancelledError` the handler raises
by itself is an error result like any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema
from jsonschema.exceptions import best_match

from runner.config.model import DEFAULT_MAX_RESULT_BYTES
from runner.config.schema import UnresolvableReference, tool_schema_validator
from runner.errors import ToolError
from runner.signals import Interrupted

# How much of an oversized result the transcript keeps, so the user can see what it was.
PREVIEW_CHARS = 2000


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    ok: bool
    # JSON text of an object: the handler's result, or {"error": ..., "tool": ...}.
    result_json: str
    error: str | None
    duration_ms: float
    # Set when the result was refused for its size: its first PREVIEW_CHARS characters.
    oversized_preview: str | None = None


def error_outcome(tool: str, error: str, duration_ms: float, preview: str | None = None) -> ToolOutcome:
    """The outcome that sends the model `{"error": error, "tool": tool}`."""
    return ToolOutcome(False, json.dumps({"error": error, "tool": tool}, ensure_ascii=False),
                       error, duration_ms, preview)


async def invoke_tool(fn: Callable[..., Any], arguments: Mapping[str, Any], *,
                      input_schema: Mapping[str, Any], timeout_s: float, name: str | None = None,
                      max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
                      clock: Callable[[], float] = time.perf_counter) -> ToolOutcome:
    """Validate `arguments`, call `fn(**arguments)` within `timeout_s`, and return JSON text."""
    tool: str = name or str(getattr(fn, "__name__", "tool"))
    started = clock()

    def outcome(result_json: str | None, error: str | None, preview: str | None = None) -> ToolOutcome:
        elapsed = (clock() - started) * 1000
        if error is not None:
            return error_outcome(tool, error, elapsed, preview)
        assert result_json is not None
        return ToolOutcome(True, result_json, None, elapsed)

    problem = validate_arguments(arguments, input_schema)
    if problem is not None:
        return outcome(None, f"invalid arguments: {problem}")
    try:
        async with asyncio.timeout(timeout_s) as deadline:
            result = await _call(fn, dict(arguments))
    except TimeoutError:
        if not deadline.expired():  # the tool itself raised TimeoutError
            return outcome(None, "TimeoutError raised by the tool")
        return outcome(None, f"timed out after {timeout_s:g} s")
    except asyncio.CancelledError:
        if _being_cancelled():
            raise  # the caller is being cancelled: not the tool's doing
        return outcome(None, "CancelledError raised by the tool")
    except Interrupted:
        raise  # a real stop signal (runner.signals), not something the handler did
    # A tool's failure is reported to the model, never a crash: that includes sys.exit() and
    # KeyboardInterrupt raised by handler code.
    except BaseException as exc:
        return outcome(None, _describe(exc))
    try:
        text = result_to_json(result)
    except ValueError as exc:
        return outcome(None, str(exc))
    except Exception as exc:  # e.g. a result whose __class__ raises inside isinstance()
        return outcome(None, f"result is not JSON-serialisable: {_describe(exc)}")
    size = len(text.encode("utf-8"))
    if size > max_result_bytes:
        return outcome(None, f"result too large: {size} bytes (this tool's max_result_bytes is "
                             f"{max_result_bytes})", text[:PREVIEW_CHARS])
    return outcome(text, None)


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


# A tool's schema is a frozen config value used for every call: check and compile it once.
# Keyed by the serialised schema, so equal schemas share a validator and nothing goes stale.
_VALIDATORS: dict[str, jsonschema.protocols.Validator] = {}


def _validator(schema: Mapping[str, Any]) -> jsonschema.protocols.Validator:
    key = json.dumps(schema, sort_keys=True, default=str)
    validator = _VALIDATORS.get(key)
    if validator is None:
        # Compiled with a registry that never fetches a `$ref` from the network or a file.
        validator = _VALIDATORS[key] = tool_schema_validator(dict(schema))
    return validator


def validate_arguments(arguments: Mapping[str, Any], schema: Mapping[str, Any]) -> str | None:
    """The most relevant way `arguments` break `schema` (None when they are valid)."""
    try:
        error = best_match(_validator(schema).iter_errors(dict(arguments)))
    except jsonschema.SchemaError as exc:
        return f"the tool's input_schema is invalid: {exc.message}"
    except UnresolvableReference as exc:  # `check` refuses such schemas; nothing is fetched for them
        return f"the tool's input_schema has a reference that cannot be resolved: {exc}"
    except RecursionError:  # a recursive schema ($ref: "#") and arguments the model nested hundreds deep
        return "the arguments are nested too deeply to check"
    if error is None:
        return None
    where = "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    return f"{where.lstrip('.') or '(arguments)'}: {error.message}"


async def _call(fn: Callable[..., Any], arguments: dict[str, Any]) -> Any:
    if inspect.iscoroutinefunction(fn):
        return await fn(**arguments)
    result = await _in_daemon_thread(fn, arguments)
    # e.g. a sync wrapper that returns a coroutine
    if inspect.isawaitable(result):
        return await result
    return result


async def _in_daemon_thread(fn: Callable[..., Any], arguments: dict[str, Any]) -> Any:
    """`fn(**arguments)` in a new daemon thread; whatever it raises (BaseException included) is
    re-raised here. Abandoning the wait (timeout, cancellation) leaves the thread to finish alone."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if future.done():  # the caller gave up waiting
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    def work() -> None:
        try:
            value: Any = fn(**arguments)
            ok = True
        except BaseException as exc:
            value, ok = _as_raisable(exc), False
        # The loop may already be closed when a hung handler finally returns: nothing to tell.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, ok, value)

    threading.Thread(target=work, name=f"tool:{getattr(fn, '__name__', 'handler')}", daemon=True).start()
    return await future


def _as_raisable(exc: BaseException) -> BaseException:
    # asyncio futures refuse StopIteration (and KeyboardInterrupt/SystemExit would stop the loop
    # when raised inside a task step): carry those as a RuntimeError naming the original.
    if isinstance(exc, StopIteration | KeyboardInterrupt | SystemExit | asyncio.CancelledError):
        return _ToolRaised(exc)
    return exc


class _ToolRaised(Exception):
    """A BaseException a handler raised, carried across to the loop as an ordinary exception."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(original)
        self.original = original


def _describe(exc: BaseException) -> str:
    if isinstance(exc, _ToolRaised):
        exc = exc.original
    message = safe_text(exc)
    if isinstance(exc, ToolError):  # the handler's own, deliberate message
        return message
    kind = type(exc).__name__
    if isinstance(exc, SystemExit):
        code = "" if exc.code is None else safe_text(exc.code, use_repr=True)
        return f"the tool called sys.exit({code})"
    return f"{kind}: {message}" if message else kind


# A tool's exception message goes to the model, the transcript and the console: kept short.
MAX_MESSAGE_CHARS = 2000


def safe_text(value: object, *, use_repr: bool = False) -> str:
    """`str(value)` (or repr) of a user object that may refuse: its `__str__` can raise, return a
    non-str, be enormous or hold lone surrogates (which no UTF-8 file or event can carry)."""
    try:
        text = repr(value) if use_repr else str(value)
        if not isinstance(text, str):
            raise TypeError("not a str")
    except Exception as exc:
        return f"<{type(value).__name__} that cannot be printed: {type(exc).__name__}>"
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[:MAX_MESSAGE_CHARS] + f"... ({len(text)} characters)"
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def result_to_json(result: Any) -> str:
    """JSON text of an object for `result`; raises ValueError if it cannot be JSON.

    A str that already is JSON text of an object is sent as is; any other non-object result is
    wrapped as {"result": ...} so the model always gets an object.
    """
    payload: Any = result
    if isinstance(result, str):
        try:
            # Re-serialised so that non-standard JSON (NaN) is refused like any other result.
            parsed = json.loads(result)
        except Exception:  # not JSON, too deep, or a str subclass that misbehaves
            parsed = None
        if isinstance(parsed, dict):
            payload = parsed
    if not isinstance(payload, dict):
        payload = {"result": payload}
    try:
        text = json.dumps(payload, ensure_ascii=False, allow_nan=False)
    # A result is user code: serialising it may raise anything (a dict subclass whose items()
    # raises, a 5,000-digit int, keys that are tuples).
    except Exception as exc:
        raise ValueError(f"result is not JSON-serialisable: {safe_text(exc)}") from None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates have no UTF-8 form, and a "\ud800" escape is refused as invalid JSON text
        # by strict parsers: a UTF-16 round trip joins the halves that make a pair and turns each
        # lone one into U+FFFD, as a decoder does with bytes it cannot read.
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text
