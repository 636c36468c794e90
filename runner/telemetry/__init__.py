"""Per-turn latency, tokens and cost (turns.py, meter.py, prices.py) and their OpenTelemetry export.

OpenTelemetry is optional (the `otel` extra) and off unless the standard variables configure it:
OTEL_EXPORTER_OTLP_ENDPOINT (or its _TRACES_/_METRICS_ forms), or OTEL_TRACES_EXPORTER /
OTEL_METRICS_EXPORTER set to `otlp`. OTEL_SDK_DISABLED=true turns it off. Only otel.py imports
the SDK, and only when configured: nothing is sent anywhere otherwise.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runner.telemetry.meter import TelemetryExport

_ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                  "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
_EXPORTER_VARS = ("OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER")
_warned: set[str] = set()


def otel_configured(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the OTEL_* variables ask for an export (and the SDK is not disabled)."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if any(env.get(name, "").strip() for name in _ENDPOINT_VARS):
        return True
    return any(env.get(name, "").strip().lower() == "otlp" for name in _EXPORTER_VARS)


def warn_once(message: str) -> None:
    """A telemetry problem is said once per process (on stderr), never raised into a run."""
    if message not in _warned:
        _warned.add(message)
        print(f"agent-run: warning: {message}", file=sys.stderr)


def start_export(*, model_id: str, labels: Mapping[str, str], clock: Callable[[], float] = time.monotonic,
                 environ: Mapping[str, str] | None = None) -> TelemetryExport | None:
    """The OpenTelemetry trace of one conversation, when configured and installed; else None."""
    if not otel_configured(environ):
        return None
    try:
        from runner.telemetry import otel
    except ImportError as exc:
        warn_once(f"OTEL_* variables are set but OpenTelemetry is not installed ({exc.name}); no traces "
                  "or metrics are exported (pip install 'nova-agent-runner[otel]')")
        return None
    try:
        return otel.ConversationTrace(model_id=model_id, labels=labels, clock=clock)
    except Exception as exc:  # a bad OTEL_* value: the run goes on without telemetry
        warn_once(f"OpenTelemetry export not started: {exc}")
        return None


def shutdown(timeout_s: float = 2.0) -> None:
    """Flush what was exported (bounded) before the process ends; nothing when never configured."""
    otel = sys.modules.get("runner.telemetry.otel")
    if otel is not None:
        otel.shutdown(timeout_s)
