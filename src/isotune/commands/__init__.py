"""Subcommands of the `isotune` CLI: each module defines `add_parser(subparsers)` and `run(args) -> int`."""

from __future__ import annotations

import argparse


def add_override_option(parser: argparse.ArgumentParser, example: str, scope: str = "") -> None:
    """Add `--set KEY=VALUE` (repeatable, collected in `args.overrides`), read by `isotune.recipe.load_recipe`."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override one recipe key{scope}, e.g. --set {example} (repeatable; VALUE is YAML)",
    )
