"""Tool handlers: resolving `module:function` / `builtin:<name>` and the built-in handlers."""
