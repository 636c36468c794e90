from __future__ import annotations

# First of all, so that a signal during the imports below ends the process with its exit code and
# without a traceback (runner.signals imports only the standard library).
from runner.signals import Interrupted, install_early

install_early()

try:
    from runner.cli import main
except Interrupted as exc:
    raise SystemExit(exc.code) from None

raise SystemExit(main())
