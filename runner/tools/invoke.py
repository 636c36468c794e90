"""Calls one tool handler for the model and always produces JSON text for `toolResult`.

Every way a call can go wrong (arguments that do not match the tool's `input_schema`, a timeout,
an exception, a result that is not JSON) becomes a JSON error result `{"error": ..., "tool": ...}`
sent to the model, so the conversation goes on (Nova rejects non-JSON tool results with "Tool
Response parsing error", nova-sonic-protocol.md §2.4). Arguments are validated before the handler
runs, so a handler never sees arguments its schema forbids.

Sync handlers run in a worker thread (`asyncio.to_thread`) so they never block audio; async
handlers are awaited on the loop. A timed-out sync handler cannot be stopped: its thread finishes
in the background and its result is discarded. Cancellation of the caller propagates unchanged.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema
from jsonschema.exceptions import best_match

from runner.errors import ToolError


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    ok: bool
    # JSON text of an object: the handler's result, or {"error": ..., "tool": ...}.
    result_json: str
    error: str | None
    duration_ms: float


async def invoke_tool(fn: Callable[..., Any], arguments: Mapping[str, Any], *,
                      input_schema: Mapping[str, Any], timeout_s: float, name: str | None = None,
                      clock: Callable[[], float] = time.perf_counter) -> ToolOutcome:
    """Validate `arguments`, call `fn(**arguments)` within `timeout_s`, and return JSON text."""
    tool = name or getattr(fn, "__name__", "tool")
    started = clock()

    def outcome(result_json: str | None, error: str | None) -> ToolOutcome:
        elapsed = (clock() - started) * 1000
        if error is not None:
            return ToolOutcome(False, json.dumps({"error": error, "tool": tool}, ensure_ascii=False),
                               error, elapsed)
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
    except Exception as exc:  # a tool's failure is reported to the model, never a crash
        return outcome(None, _describe(exc))
    try:
        return outcome(result_to_json(result), None)
    except ValueError as exc:
        return outcome(None, str(exc))


# A tool's schema is a frozen config value used for every call: check and compile it once.
# Keyed by the serialised schema, so equal schemas share a validator and nothing goes stale.
_VALIDATORS: dict[str, jsonschema.protocols.Validator] = {}


def _validator(schema: Mapping[str, Any]) -> jsonschema.protocols.Validator:
    key = json.dumps(schema, sort_keys=True, default=str)
    validator = _VALIDATORS.get(key)
    if validator is None:
        plain = dict(schema)
        cls = jsonschema.validators.validator_for(plain)
        cls.check_schema(plain)
        validator = _VALIDATORS[key] = cls(plain)
    return validator


def validate_arguments(arguments: Mapping[str, Any], schema: Mapping[str, Any]) -> str | None:
    """The most relevant way `arguments` break `schema` (None when they are valid)."""
    try:
        error = best_match(_validator(schema).iter_errors(dict(arguments)))
    except jsonschema.SchemaError as exc:
        return f"the tool's input_schema is invalid: {exc.message}"
    if error is None:
        return None
    where = "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    return f"{where.lstrip('.') or '(arguments)'}: {error.message}"


async def _call(fn: Callable[..., Any], arguments: dict[str, Any]) -> Any:
    if inspect.iscoroutinefunction(fn):
        return await fn(**arguments)
    result = await asyncio.to_thread(fn, **arguments)
    # e.g. a sync wrapper that returns a coroutine
    if inspect.isawaitable(result):
        return await result
    return result


def _describe(exc: Exception) -> str:
    message = str(exc)
    if isinstance(exc, ToolError):  # the handler's own, deliberate message
        return message
    kind = type(exc).__name__
    return f"{kind}: {message}" if message else kind


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
        except (ValueError, RecursionError):
            parsed = None
        if isinstance(parsed, dict):
            payload = parsed
    if not isinstance(payload, dict):
        payload = {"result": payload}
    try:
        return json.dumps(payload, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValueError(f"result is not JSON-serialisable: {exc}") from None
