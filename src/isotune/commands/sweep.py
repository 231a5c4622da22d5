"""`isotune sweep RECIPE --grid KEY=V1,V2 ...`: train every combination, then tabulate, plot and correlate."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from isotune.commands import add_override_option
from isotune.errors import ConfigError

logger = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sweep",
        help="train and evaluate every combination of a hyperparameter grid, then compare the runs",
        usage="%(prog)s RECIPE [--grid KEY=V1,V2 ...] [--objective NAME[,NAME]] [--set KEY=VALUE]\n"
        "                     [--output-dir DIR] [--print-commands [LAUNCHER]] [--dry-run]",
        description="Train one run per combination of the grid's values, one after another, each evaluated as "
        "the recipe's evaluation section sets. Then write sweep.md (table, ranking, Spearman correlations of "
        "alignment and uniformity with accuracy), sweep.csv and plots/ into the sweep folder. Every run is "
        "validated before the first one trains. Finished runs are skipped and interrupted runs resume, so the "
        "same command continues a sweep. See docs/sweeps.md.",
    )
    # Optional for argparse only: `--grid` takes every word up to the next option, so a recipe written after
    # it is read as a grid item, and `run` then explains that instead of argparse's "required: recipe".
    parser.add_argument(
        "recipe", type=Path, nargs="?", help="base YAML recipe (required, before --grid), e.g. recipes/sweep_small.yaml"
    )
    parser.add_argument(
        "--grid",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=V1,V2",
        help="values of one recipe key per item: alpha, t, lambda and temperature stand for objective.*, any "
        "other key is dotted (training.learning_rate=5e-6,2e-5); values are YAML, as for --set",
    )
    parser.add_argument(
        "--objective",
        metavar="NAME[,NAME]",
        help="objectives to sweep, e.g. align_uniform,info_nce; keys an objective does not read are not varied "
        "for its runs (default: the recipe's objective)",
    )
    add_override_option(parser, "training.max_steps=40", " for every run")
    parser.add_argument(
        "--output-dir",
        type=Path,
        metavar="DIR",
        help="sweep folder, one subfolder per run (default: the recipe's output_dir)",
    )
    parser.add_argument(
        "--print-commands",
        nargs="?",
        const="isotune",
        choices=["isotune", "accelerate"],
        metavar="LAUNCHER",
        help="print the train command of each unfinished run instead of training, to launch them as separate "
        "jobs: `isotune train ...` (default) or, with 'accelerate', `accelerate launch -m isotune.cli train ...`; "
        "running the sweep again afterwards collects their results",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="validate the grid and list each run and its status; write nothing"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from isotune.recipe import load_recipe
    from isotune.sweep.grid import expand_grid, parse_grid
    from isotune.sweep.record import build_record, check_folder, write_record
    from isotune.sweep.runner import FINISHED, check_run_models, plan_runs, train_command

    if args.recipe is None:
        taken = [item for item in args.grid if "=" not in item]
        hint = f" --grid took {taken[-1]!r} as a grid item." if taken else ""
        raise ConfigError(
            f"isotune sweep needs a base recipe.{hint} Put the recipe before the options: isotune sweep "
            "RECIPE --grid KEY=V1,V2 ..."
        )
    if any(override.partition("=")[0].strip() == "output_dir" for override in args.overrides):
        raise ConfigError("isotune sweep names each run's folder; set the sweep folder with --output-dir, not --set.")
    grid = parse_grid(args.grid, args.objective)
    base_recipe = load_recipe(args.recipe, args.overrides)
    runs = expand_grid(grid, args.recipe, args.overrides)
    folder = args.output_dir if args.output_dir is not None else Path(base_recipe.output_dir)
    record = build_record(args.recipe, args.overrides, base_recipe, runs)
    check_folder(folder, record)
    planned = plan_runs(folder, runs, args.recipe, args.overrides)
    pending = [item for item in planned if item.status != FINISHED]

    if args.dry_run:
        for index, item in enumerate(planned, start=1):
            print(f"{index:>3}  {item.status:<8}  {item.folder}")
        print(f"{len(planned)} runs: {len(planned) - len(pending)} finished, {len(pending)} to train or resume.")
        return 0
    if args.print_commands is None:
        _check_one_process(planned)
        check_run_models(planned)
    write_record(folder, record)
    if args.print_commands is not None:
        for item in pending:
            print(train_command(args.recipe, args.overrides, item, args.print_commands))
        logger.info(
            "%d of %d runs are finished. Run this sweep again without --print-commands to write its report.",
            len(planned) - len(pending),
            len(planned),
        )
        return 0
    return _train_and_report(args, folder, record, planned)


def _check_one_process(planned: list) -> None:
    """Check that the runs can train one after another in this process."""
    precisions = {item.recipe.training.precision for item in planned}
    if len(precisions) > 1:
        raise ConfigError(
            f"training.precision varies over the sweep ({', '.join(sorted(precisions))}), but Accelerate fixes the "
            "precision for the whole process at the first run. Pass --print-commands and launch each run as a "
            "separate job, or sweep one precision at a time."
        )
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1:
        raise ConfigError(
            f"isotune sweep trains its runs one after another in one process, but {launched} processes were "
            "launched. Run it without accelerate launch, or pass --print-commands accelerate and launch each run."
        )


def _train_and_report(args: argparse.Namespace, folder: Path, record: dict, planned: list) -> int:
    from transformers.utils import logging as transformers_logging

    from isotune.sweep.report import collect_results, write_sweep_outputs
    from isotune.sweep.runner import train_command, train_runs
    from isotune.training.run import base_results_key

    transformers_logging.disable_progress_bar()  # per-file "Loading weights" bars on every model load
    failures = train_runs(planned, lambda item: train_command(args.recipe, args.overrides, item))
    base_keys = {item.run.name: base_results_key(item.recipe) for item in planned}
    results = collect_results(folder, [item.run for item in planned], base_keys)
    report = write_sweep_outputs(folder, record, results, failures)
    print(report.read_text(encoding="utf-8"))
    if failures:
        logger.error("%d of %d sweep runs stopped: %s.", len(failures), len(planned), ", ".join(failures))
        return 1
    return 0
