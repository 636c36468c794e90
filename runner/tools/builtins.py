"""Built-in tool handlers, usable as `handler: builtin:<name>` so an agent needs no Python.

Each is a plain typed function whose keyword parameters are the tool's input properties; it
returns JSON-serialisable data and raises ToolError (sent to the model as an error result) for
bad input. The call-control ones (end_call, transfer) act on the conversation that called them,
found through runner.conversation.control.current_call(); they are async, so they run on the
conversation's loop and in its context.
"""

from __future__ import annotations

import ast
import base64
import inspect
import ipaddress
import json
import math
import operator
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from runner.config.model import TransferSpec
from runner.errors import ToolError


def current_datetime(timezone: str = "UTC") -> dict[str, Any]:
    """The current date and time in an IANA timezone (e.g. "America/Los_Angeles")."""
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ToolError(f"unknown timezone {timezone!r}; use an IANA name like 'Europe/Paris'") from None
    now = datetime.now(zone)
    return {
        "formatted_time": now.strftime("%I:%M %p"),
        "date": now.strftime("%Y-%m-%d"),
        "year": now.year,
        "month": now.month,
        "day": now.day,
        "day_of_week": now.strftime("%A"),
        "timezone": timezone,
        "utc_offset": now.strftime("%z"),
        "iso": now.isoformat(timespec="seconds"),
    }


_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt, "round": round, "abs": abs, "min": min, "max": max,
}
_CONSTANTS = {"pi": math.pi, "e": math.e}
_MAX_EXPRESSION = 200
# Bounds keep a spoken "two to the power of a billion" from hanging the runner.
_MAX_EXPONENT = 1000
_MAX_MAGNITUDE = 1e100


def _evaluate(node: ast.AST) -> float | int:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) \
            and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))  # type: ignore[no-any-return]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and (abs(right) > _MAX_EXPONENT or abs(left) > _MAX_MAGNITUDE):
            raise ToolError("number too large")
        result = _BINARY[type(node.op)](left, right)
        if abs(result) > _MAX_MAGNITUDE:
            raise ToolError("number too large")
        return result  # type: ignore[no-any-return]
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS
            and not node.keywords):
        return _FUNCTIONS[node.func.id](*(_evaluate(a) for a in node.args))  # type: ignore[no-any-return]
    if isinstance(node, ast.Name):
        raise ToolError(f"unknown name {node.id!r} (known: {', '.join([*_CONSTANTS, *_FUNCTIONS])})")
    raise ToolError(f"unsupported expression element: {type(node).__name__}")


def calculator(expression: str) -> dict[str, Any]:
    """Evaluates an arithmetic expression (+ - * / // % **, parentheses, sqrt, round, abs, min, max)."""
    if len(expression) > _MAX_EXPRESSION:
        raise ToolError("expression too long")
    try:
        tree = ast.parse(expression.replace("^", "**"), mode="eval")
    except SyntaxError:
        raise ToolError(f"not an arithmetic expression: {expression!r}") from None
    try:
        value = _evaluate(tree)
    except (ArithmeticError, ValueError, TypeError) as exc:
        raise ToolError(f"cannot evaluate {expression!r}: {exc}") from None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    elif isinstance(value, float):
        value = round(value, 10)
    return {"expression": expression, "result": value}


def days_between(start_date: str, end_date: str) -> dict[str, Any]:
    """Whole days from start_date to end_date (ISO dates, YYYY-MM-DD), e.g. nights of a stay."""
    try:
        start = datetime.fromisoformat(start_date).date()
        end = datetime.fromisoformat(end_date).date()
    except ValueError:
        raise ToolError("dates must be written YYYY-MM-DD") from None
    return {"start_date": start.isoformat(), "end_date": end.isoformat(), "days": (end - start).days,
            "start_weekday": start.strftime("%A"), "end_weekday": end.strftime("%A")}


# -- call control (runner.conversation.control) ---------------------------------------------------

async def end_call(reason: str = "") -> dict[str, Any]:
    """Ends the conversation once the assistant's goodbye has been played (say goodbye first)."""
    from runner.conversation.control import current_call

    call = current_call()
    if call is None:
        raise ToolError("end_call only works inside a running conversation")
    call.end_call()
    result: dict[str, Any] = {"ending": True, "note": "The call ends once your last words have played; "
                                                      "say nothing more."}
    if reason:
        result["reason"] = reason[:200]
    return result


TRANSFER_HANDLER = "builtin:transfer"
# Twilio's REST API; a test points this variable at a local server standing in for it.
TWILIO_API_ENV = "AGENT_RUN_TWILIO_API_URL"
TWILIO_API = "https://api.twilio.com"
TWILIO_TIMEOUT_S = 8.0
_PHONE = re.compile(r"^\+?[0-9][0-9 ().-]{1,30}$")
_SIP = re.compile(r"^sips?:[^\s<>&\"']{1,200}$")


def _destination(to: str) -> tuple[str, str]:
    """("Number", "+15551234567") or ("Sip", "sip:agent@example.com") for `to`, or ToolError."""
    to = to.strip()
    if _SIP.match(to):
        return "Sip", to
    if _PHONE.match(to):
        digits = re.sub(r"[ ().-]", "", to)
        if 3 <= len(digits.lstrip("+")) <= 15:
            return "Number", digits
    raise ToolError(f"cannot transfer to {to[:80]!r}: give a phone number (+15551234567) or a SIP "
                    "address (sip:name@host)")


def destination_problem(to: str) -> str | None:
    """Why `to` is neither a phone number nor a SIP address (None when it is one)."""
    try:
        _destination(to)
    except ToolError as exc:
        return str(exc)
    return None


def transfer_twiml(to: str) -> str:
    """The TwiML that connects the caller to `to` (a phone number or a SIP address)."""
    kind, target = _destination(to)
    response = ET.Element("Response")
    ET.SubElement(ET.SubElement(response, "Dial"), kind).text = target
    return ET.tostring(response, encoding="unicode")


def transfer_handler(spec: TransferSpec) -> Callable[..., Any]:
    """The handler of a builtin:transfer tool with these settings (see `transfer`)."""
    allowed = {_destination(a)[1] for a in spec.allow if destination_problem(a) is None}

    async def transfer(to: str) -> dict[str, Any]:
        """Transfers the phone call to a number or SIP address (Twilio calls only; say so first)."""
        from runner.conversation.control import current_call

        call = current_call()
        phone = call.phone if call is not None else None
        if call is None or phone is None:
            raise ToolError("transfer only works on a phone call (agent-run serve, Twilio); this "
                            "conversation is not one")
        if phone.provider != "twilio":
            raise ToolError(f"transfer is not supported for {phone.provider} calls")
        target = _destination(to)[1]
        if allowed and target not in allowed:
            raise ToolError(f"transfers to {to[:80]!r} are not allowed; allowed: "
                            f"{', '.join(sorted(allowed))}")
        account, token = _credentials(spec)
        await call.wait_played()  # "I am transferring you" reaches the caller before the line changes
        await _twilio_redirect(phone.account_sid or account, phone.call_sid, account, token,
                               transfer_twiml(target))
        call.transferred()
        return {"transferred": True, "to": target}

    transfer.__name__ = "transfer"
    return transfer


def _credentials(spec: TransferSpec) -> tuple[str, str]:
    from runner.config.secrets import MissingEnvError, resolve_env_refs

    try:
        return resolve_env_refs(spec.account_sid, os.environ), resolve_env_refs(spec.auth_token, os.environ)
    except MissingEnvError as exc:
        raise ToolError(f"cannot transfer: {exc} (the Twilio credentials come from the "
                        "environment)") from None


async def _twilio_redirect(call_account: str, call_sid: str, account: str, token: str, twiml: str) -> None:
    """Twilio's "update a live call": the call leaves this stream for the TwiML's <Dial>."""
    from runner import httpclient

    base = os.environ.get(TWILIO_API_ENV, TWILIO_API).rstrip("/")
    parts = urlsplit(base)
    if parts.scheme != "https" and not (parts.scheme == "http" and _loopback(parts.hostname or "")):
        raise ToolError(f"{TWILIO_API_ENV} must be an https:// URL (http:// only to this machine)")
    path = f"/2010-04-01/Accounts/{quote(call_account, safe='')}/Calls/{quote(call_sid, safe='')}.json"
    auth = base64.b64encode(f"{account}:{token}".encode()).decode()
    try:
        response = await httpclient.request("POST", base + path, form={"Twiml": twiml},
                                            headers={"Authorization": f"Basic {auth}"},
                                            timeout_s=TWILIO_TIMEOUT_S, max_response_bytes=64 * 1024)
    except httpclient.HttpError as exc:
        raise ToolError(f"Twilio did not answer the transfer request: {exc}") from None
    if not response.ok:
        raise ToolError(f"Twilio refused the transfer: HTTP {response.status} "
                        f"{_twilio_message(response.body)}")


def _loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _twilio_message(body: bytes) -> str:
    """Twilio's error message from its JSON answer (never the request, which holds the token)."""
    try:
        message = json.loads(body).get("message", "")
    except (ValueError, AttributeError):
        message = ""
    return str(message)[:300]


BUILTINS: dict[str, Callable[..., Any]] = {
    "current_datetime": current_datetime,
    "calculator": calculator,
    "days_between": days_between,
    "end_call": end_call,
    "transfer": transfer_handler(TransferSpec()),
}


def env_name(text: str) -> str | None:
    """NAME of a `${env:NAME}` reference (the whole of `text`), else None."""
    from runner.config.secrets import env_refs

    names = env_refs(text)
    return names[0] if len(names) == 1 and text == f"${{env:{names[0]}}}" else None


def builtin_listing() -> list[str]:
    """One line per built-in handler, from the registry itself: `builtin:NAME(params)  summary`."""
    lines = []
    for name, fn in BUILTINS.items():
        params = ", ".join(str(p) for p in inspect.signature(fn, eval_str=True).parameters.values())
        summary = (inspect.getdoc(fn) or "").splitlines()[0]
        lines.append(f"builtin:{name}({params})\n    {summary}")
    return lines
