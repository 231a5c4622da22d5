"""`isotune eval MODEL`: STS and geometry of a model, a model folder or a run folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from isotune.errors import ConfigError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a model on STS and geometry tasks",
        description="Evaluate a sentence-transformers model, a Hugging Face model (mean pooling) or a run "
        "folder's model/ on STS (Spearman x100 of cosine similarity) and geometry tasks.",
    )
    parser.add_argument("model", help="model folder, run folder, or Hub id (all-MiniLM-L6-v2 works offline)")
    parser.add_argument(
        "--tasks",
        nargs="+",
        default=None,
        metavar="TASK",
        help="tasks to run (default: stsb-dev sts12 sick-trial geometry)",
    )
    parser.add_argument(
        "--data-root", type=Path, default=Path("../shared/data"), help="folder with sts/ (default: ../shared/data)"
    )
    parser.add_argument("--batch-size", type=int, default=128, help="sentences per encoding batch (default: 128)")
    parser.add_argument("--output", type=Path, help="write the results as JSON to this file")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
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
