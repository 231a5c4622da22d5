"""Command line entry point: `isotune COMMAND`, one module of `isotune.commands` per command."""

from __future__ import annotations

import argparse
import logging
import sys

from isotune.commands import compare, evaluate, publish, sweep, train
from isotune.errors import ConfigError, DataError, ModelNotFoundError, PublishError, TrainingError

# Errors caused by input the user can fix: printed as one message, without a traceback.
USER_ERRORS = (ConfigError, DataError, ModelNotFoundError, TrainingError, PublishError)
COMMANDS = (train, evaluate, publish, compare, sweep)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="isotune",
        description="Fine-tune and evaluate sentence encoders for alignment and uniformity on the hypersphere.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("httpx", "sentence_transformers", "transformers", "accelerate"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        status = args.run(args)
    except USER_ERRORS as error:
        print(f"isotune {args.command}: error: {error}", file=sys.stderr)
        status = 2
    if "torch.distributed" in sys.modules:  # only a command that loaded torch can have started a group
        from isotune.distributed import release_process_group

        release_process_group()
    return status


if __name__ == "__main__":
    sys.exit(main())
