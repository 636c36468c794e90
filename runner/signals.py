"""The signals that end a run, and what the process does before the event loop can handle them.

SIGINT (Ctrl-C), SIGTERM and SIGHUP (the terminal went away) all end a run the same way: the
conversation closes its stream in the documented order, the transcript gets its end record, and
the process exits 128 + the signal number (130, 143, 129), as a shell reports a process the signal
killed. While a conversation runs, the event loop handles them (engine._signals_stop). Before that
(imports, loading the agent, starting the emulator) and after, `install_early()`'s handler raises
`Interrupted`, which the CLI turns into one line and that exit code instead of a traceback. A second
signal while the first is being handled exits at once.

This module imports only the standard library, so it can be installed before anything else loads.
"""

from __future__ import annotations

import contextlib
import os
import signal
from types import FrameType

STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def exit_code(signum: int) -> int:
    """The exit status of a run ended by `signum` (the shell's convention: 128 + n)."""
    return 128 + signum


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


class Interrupted(KeyboardInterrupt):
    """A stop signal arrived while no event loop was handling signals."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal_name(signum))
        self.signum = signum

    @property
    def code(self) -> int:
        return exit_code(self.signum)


_raised = False


def _on_signal(signum: int, frame: FrameType | None) -> None:
    global _raised
    if _raised:  # the first one is being handled (cleanup is under way): do not wait for it
        os._exit(exit_code(signum))
    _raised = True
    raise Interrupted(signum)


def install_early() -> None:
    """Make every stop signal raise `Interrupted` (main thread only; idempotent)."""
    for signum in STOP_SIGNALS:
        # ValueError: not the main thread (an embedding program); it keeps its own handlers.
        with contextlib.suppress(ValueError, OSError):
            signal.signal(signum, _on_signal)
