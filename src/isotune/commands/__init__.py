"""Subcommands of the `isotune` CLI: each module defines `add_parser(subparsers)` and `run(args) -> int`."""
