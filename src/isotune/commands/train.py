"""`isotune train RECIPE`: train, evaluate before and after, write the run folder."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from isotune.commands import add_override_option
from isotune.errors import ConfigError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from isotune.recipe import describe_keys

    parser = subparsers.add_parser(
        "train",
        help="train a model from a recipe and evaluate it before and after",
        description="Train an encoder as RECIPE describes, evaluate it before and after, and write a run "
        "folder with model/ (sentence-transformers format), recipe.yaml, metrics.json, report.md, run.json "
        "and checkpoints/.",
        epilog="Recipe keys (set in the YAML file or with --set SECTION.KEY=VALUE):\n" + describe_keys(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("recipe", type=Path, help="YAML recipe file, e.g. recipes/quickstart.yaml")
    add_override_option(parser, "training.max_steps=20")
    parser.add_argument("--output-dir", type=Path, help="run folder (overrides the recipe's output_dir)")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in the output folder from its latest checkpoint, with the same recipe",
    )
    parser.add_argument(
        "--allow-recipe-change",
        action="store_true",
        help="with --resume, continue from the latest checkpoint even if it was written with a different recipe",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from isotune.recipe import load_recipe

    overrides = list(args.overrides)
    if args.output_dir is not None:
        overrides.append(f"output_dir={args.output_dir}")
    recipe = load_recipe(args.recipe, overrides)

    # Imported only now: torch and transformers take seconds to import, and a recipe error needs neither.
    from transformers.utils import logging as transformers_logging

    from isotune.training.run import run_training

    transformers_logging.disable_progress_bar()  # per-file "Loading weights" bars on every model load

    command = shlex.join(["isotune", *sys.argv[1:]]) if Path(sys.argv[0]).name == "isotune" else ""
    if args.allow_recipe_change and not args.resume:
        raise ConfigError("--allow-recipe-change only applies with --resume.")
    metrics = run_training(
        recipe,
        resume=args.resume,
        allow_other_recipe=args.allow_recipe_change,
        command=command or f"isotune train {args.recipe}",
    )
    if metrics:  # empty on all processes but the main one, which wrote the report
        print((Path(recipe.output_dir) / "report.md").read_text(encoding="utf-8"))
    return 0
