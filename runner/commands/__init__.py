"""One module per `agent-run` subcommand; each exposes `add_parser(subparsers)` and `run(args) -> int`."""
