"""Command line: `isotune train` and `isotune eval`."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

from isotune.errors import ConfigError, DataError, ModelNotFoundError, TrainingError

logger = logging.getLogger("isotune")

# Errors caused by input the user can fix: printed as one message, without a traceback.
USER_ERRORS = (ConfigError, DataError, ModelNotFoundError, TrainingError)


def build_parser() -> argparse.ArgumentParser:
    from isotune.recipe import describe_keys

    parser = argparse.ArgumentParser(
        prog="isotune",
        description="Fine-tune and evaluate sentence encoders for alignment and uniformity on the hypersphere.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser(
        "train",
        help="train a model from a recipe and evaluate it before and after",
        description="Train an encoder as RECIPE describes, evaluate it before and after, and write a run "
        "folder with model/ (sentence-transformers format), recipe.yaml, metrics.json, report.md and "
        "checkpoints/.",
        epilog="Recipe keys (set in the YAML file or with --set SECTION.KEY=VALUE):\n" + describe_keys(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("recipe", type=Path, help="YAML recipe file, e.g. recipes/quickstart.yaml")
    train.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one recipe key, e.g. --set training.max_steps=20 (repeatable; VALUE is YAML)",
    )
    train.add_argument("--output-dir", type=Path, help="run folder (overrides the recipe's output_dir)")
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in the output folder from its latest checkpoint, with the same recipe",
    )

    evaluate = commands.add_parser(
        "eval",
        help="evaluate a model on STS and geometry tasks",
        description="Evaluate a sentence-transformers model, a Hugging Face model (mean pooling) or a run "
        "folder's model/ on STS (Spearman x100 of cosine similarity) and geometry tasks.",
    )
    evaluate.add_argument("model", help="model folder, run folder, or Hub id (all-MiniLM-L6-v2 works offline)")
    evaluate.add_argument(
        "--tasks",
        nargs="+",
        default=None,
        metavar="TASK",
        help="tasks to run (default: stsb-dev sts12 sick-trial geometry)",
    )
    evaluate.add_argument(
        "--data-root",
        type=Path,
        default=Path("../shared/data"),
        help="folder with sts/ (default: ../shared/data)",
    )
    evaluate.add_argument("--batch-size", type=int, default=128, help="sentences per encoding batch (default: 128)")
    evaluate.add_argument("--output", type=Path, help="write the results as JSON to this file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("httpx", "sentence_transformers", "transformers", "accelerate"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        if args.command == "train":
            return _train(args)
        return _evaluate(args)
    except USER_ERRORS as error:
        print(f"isotune {args.command}: error: {error}", file=sys.stderr)
        return 2


def _train(args: argparse.Namespace) -> int:
    from isotune.recipe import load_recipe
    from isotune.training.run import run_training

    overrides = list(args.overrides)
    if args.output_dir is not None:
        overrides.append(f"output_dir={args.output_dir}")
    recipe = load_recipe(args.recipe, overrides)
    command = shlex.join(["isotune", *sys.argv[1:]]) if sys.argv[0].endswith("isotune") else ""
    run_training(recipe, resume=args.resume, command=command or f"isotune train {args.recipe}")
    print((Path(recipe.output_dir) / "report.md").read_text(encoding="utf-8"))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from isotune.encoder import load_encoder, make_embedder
    from isotune.evaluation.suite import DEFAULT_TASKS, markdown_table, run_evaluation, summary_row
    from isotune.fileio import write_json_atomic

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}.")
    model_path = Path(args.model)
    if (model_path / "model" / "modules.json").is_file():
        model_path = model_path / "model"  # a run folder
    model = load_encoder(str(model_path) if model_path.exists() else args.model)
    tasks = args.tasks or list(DEFAULT_TASKS)
    results = run_evaluation(make_embedder(model, args.batch_size), tasks, args.data_root)
    print(markdown_table({args.model: summary_row(results)}))
    if args.output is not None:
        write_json_atomic(args.output, {"model": args.model, "tasks": tasks, "results": results})
        print(f"Results written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
