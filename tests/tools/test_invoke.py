from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from typing import Any

import pytest

from runner.errors import ToolError
from runner.tools.invoke import PREVIEW_CHARS, ToolOutcome, invoke_tool, result_to_json, validate_arguments

SCHEMA = {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"],
          "additionalProperties": False}


def call(fn: Any, arguments: dict[str, Any] | None = None, *, timeout_s: float = 2.0,
         schema: dict[str, Any] | None = None) -> ToolOutcome:
    args = {"order_id": "42"} if arguments is None else arguments
    return asyncio.run(invoke_tool(fn, args, input_schema=SCHEMA if schema is None else schema,
                                   timeout_s=timeout_s))


def get_order(order_id: str) -> dict[str, Any]:
    return {"order_id": order_id, "status": "shipped", "thread": threading.current_thread().name}


async def get_order_async(order_id: str) -> dict[str, Any]:
    await asyncio.sleep(0)
    return {"order_id": order_id, "thread": threading.current_thread().name}


def test_sync_handler_runs_in_a_thread() -> None:
    outcome = call(get_order)
    assert outcome.ok and outcome.error is None
    result = json.loads(outcome.result_json)
    assert result["status"] == "shipped" and result["thread"] != threading.main_thread().name
    assert outcome.duration_ms >= 0


def test_async_handler_runs_on_the_loop() -> None:
    outcome = call(get_order_async)
    assert outcome.ok
    assert json.loads(outcome.result_json) == {"order_id": "42", "thread": threading.main_thread().name}


def test_sync_handler_does_not_block_the_loop() -> None:
    def slow(order_id: str) -> dict[str, str]:
        time.sleep(0.2)
        return {"order_id": order_id}

    async def main() -> tuple[ToolOutcome, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            for _ in range(10):
                await asyncio.sleep(0.01)
                ticks += 1

        async with asyncio.TaskGroup() as group:
            group.create_task(ticker())
            tool = group.create_task(invoke_tool(slow, {"order_id": "1"}, input_schema=SCHEMA, timeout_s=2))
        return tool.result(), ticks

    outcome, ticks = asyncio.run(main())
    assert outcome.ok and ticks == 10


@pytest.mark.parametrize(("arguments", "message"), [
    ({}, "'order_id' is a required property"),
    ({"order_id": 42}, "order_id: 42 is not of type 'string'"),
    ({"order_id": "1", "extra": True}, "Additional properties are not allowed"),
])
def test_invalid_arguments_are_refused_before_the_call(arguments: dict[str, Any], message: str) -> None:
    called = []
    outcome = call(lambda **kw: called.append(kw), arguments)
    assert not outcome.ok and called == []
    assert message in (outcome.error or "")
    error = json.loads(outcome.result_json)
    assert error["error"].startswith("invalid arguments") and error["tool"] == "<lambda>"


def test_invalid_schema_is_an_error_result() -> None:
    outcome = call(get_order, schema={"type": "no-such-type"})
    assert not outcome.ok and "input_schema is invalid" in (outcome.error or "")


def test_async_timeout() -> None:
    async def hang(order_id: str) -> None:
        await asyncio.sleep(10)

    started = time.perf_counter()
    outcome = call(hang, timeout_s=0.05)
    assert time.perf_counter() - started < 1
    assert not outcome.ok and outcome.error == "timed out after 0.05 s"
    assert json.loads(outcome.result_json) == {"error": "timed out after 0.05 s", "tool": "hang"}


def test_sync_timeout() -> None:
    release = threading.Event()

    def stuck(order_id: str) -> None:
        release.wait(5)

    async def main() -> ToolOutcome:
        try:
            return await invoke_tool(stuck, {"order_id": "1"}, input_schema=SCHEMA, timeout_s=0.05)
        finally:
            release.set()  # else asyncio.run waits for the worker thread at shutdown

    outcome = asyncio.run(main())
    assert not outcome.ok and outcome.error == "timed out after 0.05 s"


def test_timeout_error_raised_by_the_tool_is_not_our_timeout() -> None:
    def raises(order_id: str) -> None:
        raise TimeoutError("backend slow")

    outcome = call(raises)
    assert not outcome.ok and outcome.error == "TimeoutError raised by the tool"


def test_exception_becomes_its_message_not_a_traceback() -> None:
    def broken(order_id: str) -> None:
        raise KeyError("no such order")

    outcome = call(broken)
    assert not outcome.ok and outcome.error == "KeyError: 'no such order'"
    assert "Traceback" not in outcome.result_json


def test_tool_error_message_is_used_as_is() -> None:
    async def refuses(order_id: str) -> None:
        raise ToolError("order 42 belongs to another customer")

    outcome = call(refuses)
    assert json.loads(outcome.result_json) == {"error": "order 42 belongs to another customer",
                                               "tool": "refuses"}


@pytest.mark.parametrize("bad", [object(), {"n": math.nan}, {1, 2}])
def test_non_json_result_is_an_error(bad: Any) -> None:
    outcome = call(lambda order_id: bad)
    assert not outcome.ok and "not JSON-serialisable" in (outcome.error or "")
    assert json.loads(outcome.result_json)["tool"] == "<lambda>"


@pytest.mark.parametrize(("result", "expected"), [
    ("shipped", {"result": "shipped"}),
    ('{"status": "shipped"}', {"status": "shipped"}),
    ("[1, 2]", {"result": "[1, 2]"}),
    ("42", {"result": "42"}),
    ([1, 2], {"result": [1, 2]}),
    (None, {"result": None}),
    ({"café": "crème"}, {"café": "crème"}),
])
def test_results_are_always_json_objects(result: Any, expected: dict[str, Any]) -> None:
    outcome = call(lambda order_id: result)
    assert outcome.ok and json.loads(outcome.result_json) == expected


def test_str_json_object_with_nan_is_refused() -> None:
    with pytest.raises(ValueError, match="not JSON"):
        result_to_json('{"x": NaN}')


def test_caller_cancellation_propagates() -> None:
    async def hang(order_id: str) -> None:
        await asyncio.sleep(10)

    async def main() -> None:
        task = asyncio.create_task(invoke_tool(hang, {"order_id": "1"}, input_schema=SCHEMA, timeout_s=5))
        await asyncio.sleep(0.01)
        task.cancel()
        await task

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(main())


def test_caller_cancellation_of_a_sync_handler_propagates() -> None:
    release = threading.Event()

    async def main() -> None:
        task = asyncio.create_task(invoke_tool(lambda order_id: release.wait(5), {"order_id": "1"},
                                               input_schema=SCHEMA, timeout_s=5))
        await asyncio.sleep(0.01)
        task.cancel()
        try:
            await task
        finally:
            release.set()

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(main())


def test_a_hung_sync_handler_does_not_delay_the_end_of_the_loop() -> None:
    # asyncio.to_thread's default executor is joined when asyncio.run closes the loop: a handler
    # stuck for seconds kept the whole run alive that long after it ended.
    release = threading.Event()
    started = time.monotonic()
    outcome = call(lambda order_id: release.wait(10), timeout_s=0.05)
    took = time.monotonic() - started
    release.set()
    assert outcome.error == "timed out after 0.05 s"
    assert took < 2.0, took


def _exits(order_id: str) -> None:
    raise SystemExit(3)


def _exits_plain(order_id: str) -> None:
    raise SystemExit


def _interrupts(order_id: str) -> None:
    raise KeyboardInterrupt


def _cancels(order_id: str) -> None:
    raise asyncio.CancelledError


def _stops(order_id: str) -> None:
    raise StopIteration


class Odd(BaseException):
    pass


def _odd(order_id: str) -> None:
    raise Odd("strange")


async def _exits_async(order_id: str) -> None:
    await asyncio.sleep(0)
    raise SystemExit(4)


async def _interrupts_async(order_id: str) -> None:
    raise KeyboardInterrupt


async def _cancels_async(order_id: str) -> None:
    raise asyncio.CancelledError


async def _odd_async(order_id: str) -> None:
    raise Odd("async strange")


@pytest.mark.parametrize(("fn", "message"), [
    (_exits, "the tool called sys.exit(3)"),
    (_exits_plain, "the tool called sys.exit()"),
    (_interrupts, "KeyboardInterrupt"),
    (_cancels, "CancelledError"),
    (_stops, "StopIteration"),
    (_odd, "Odd: strange"),
    (_exits_async, "the tool called sys.exit(4)"),
    (_interrupts_async, "KeyboardInterrupt"),
    (_cancels_async, "CancelledError raised by the tool"),
    (_odd_async, "Odd: async strange"),
])
def test_any_base_exception_is_an_error_result(fn: Any, message: str) -> None:
    async def main() -> tuple[ToolOutcome, str]:
        outcome = await invoke_tool(fn, {"order_id": "1"}, input_schema=SCHEMA, timeout_s=2)
        await asyncio.sleep(0.01)  # the loop is still alive and well
        return outcome, "after"

    outcome, after = asyncio.run(main())
    assert after == "after"
    assert not outcome.ok and outcome.error == message, outcome
    assert json.loads(outcome.result_json) == {"error": message, "tool": fn.__name__}


def test_an_oversized_result_is_refused_with_its_size() -> None:
    big = {"rows": "x" * 5000}
    size = len(json.dumps(big))
    async def main() -> ToolOutcome:
        return await invoke_tool(lambda order_id: big, {"order_id": "1"}, input_schema=SCHEMA,
                                 timeout_s=2, max_result_bytes=4096)

    outcome = asyncio.run(main())
    assert not outcome.ok
    assert outcome.error == f"result too large: {size} bytes (this tool's max_result_bytes is 4096)"
    assert outcome.oversized_preview is not None and len(outcome.oversized_preview) == PREVIEW_CHARS
    assert json.loads(outcome.result_json)["error"] == outcome.error


def test_a_result_at_the_cap_is_sent() -> None:
    result = {"rows": "x" * 100}
    size = len(json.dumps(result))

    async def main() -> ToolOutcome:
        return await invoke_tool(lambda order_id: result, {"order_id": "1"}, input_schema=SCHEMA,
                                 timeout_s=2, max_result_bytes=size)

    assert asyncio.run(main()).ok


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise ValueError("no")


class _RaisingItems(dict[str, Any]):
    def items(self) -> Any:  # type: ignore[override]
        raise RuntimeError("items() refuses")


def test_failures_that_cannot_be_printed_or_serialised_are_error_results() -> None:
    def unprintable() -> None:
        raise _Unprintable()

    outcome = asyncio.run(invoke_tool(unprintable, {}, input_schema={"type": "object"}, timeout_s=2))
    assert outcome.error == "_Unprintable: <_Unprintable that cannot be printed: ValueError>"
    outcome = asyncio.run(invoke_tool(lambda: {"n": 10 ** 5000}, {}, input_schema={"type": "object"},
                                      timeout_s=2))
    assert outcome.error is not None and outcome.error.startswith("result is not JSON-serialisable: Exceeds")
    with pytest.raises(ValueError, match="not JSON-serialisable"):
        result_to_json({"a": _RaisingItems(x="1")})
    # Lone surrogates cannot be UTF-8 (and strict parsers refuse their escapes): each becomes U+FFFD,
    # while two halves that make a pair become the one character they stand for.
    assert result_to_json({"t": "\ud800", "pair": "\ud83d\ude00"}) == '{"t": "\ufffd", "pair": "\U0001f600"}'


def test_arguments_nested_too_deeply_for_a_recursive_schema_are_an_error_not_a_crash() -> None:
    deep = json.loads('{"timezone": ' * 300 + "1" + "}" * 300)
    schema = {"type": "object", "properties": {"timezone": {"$ref": "#"}}}
    assert validate_arguments(deep, schema) == "the arguments are nested too deeply to check"
