"""Front ends: one module per way a caller reaches the agent, registered in `FRONT_ENDS`."""

from runner.serve.frontends.base import FRONT_ENDS, CallerIO, CallerRefused, FrontEnd, ServeContext, converse

__all__ = ["FRONT_ENDS", "CallerIO", "CallerRefused", "FrontEnd", "ServeContext", "converse"]
