"""`isotune eval MODEL`: STS, transfer and geometry of a model, a run folder or a checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path

from isotune.errors import ConfigError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a model on STS, transfer and geometry tasks",
        description="Evaluate a sentence-transformers model, a Hugging Face model (mean pooling), a run "
        "folder's model/ or a checkpoint (RUN/checkpoints/step-N) on STS (Spearman x100 of cosine "
        "similarity), SentEval transfer tasks (logistic regression accuracy) and geometry (alignment, "
        "uniformity, average cosine, isotropy, effective rank, top principal component share). Tasks whose "
        "data is missing are reported and skipped. --layers measures the hidden states of every layer. See "
        "docs/evaluation.md.",
    )
    parser.add_argument(
        "model", help="model folder, run folder, checkpoint folder, or Hub id (all-MiniLM-L6-v2 works offline)"
    )
    parser.add_argument(
        "--tasks",
        nargs="+",
        default=None,
        metavar="TASK",
        help="tasks or groups to run (default: sts geometry, or none with --layers). Groups: sts = stsb-dev "
        "stsb-train stsb-test sts12 sts13 sts14 sts15 sts16 sick-trial sick-train sick-test; transfer = mr cr subj "
        "mpqa sst2 trec mrpc. Transfer tasks embed about 120,000 sentences.",
    )
    parser.add_argument(
        "--data-root",
        type=Path,
        default=Path("../shared/data"),
        help="folder with sts/ and transfer/ (default: ../shared/data)",
    )
    parser.add_argument(
        "--sts-source",
        choices=["local", "hub"],
        default="local",
        help="read STS tasks from --data-root (local, default) or from their Hugging Face Hub copies (hub)",
    )
    parser.add_argument(
        "--postprocess",
        nargs="+",
        default=[],
        metavar="SPEC",
        help="also evaluate post-processed embeddings: center (remove the mean), whiten, whiten:K (keep K "
        "dimensions) or abtt:D (remove the mean and the top D principal directions); several give several rows",
    )
    parser.add_argument(
        "--fit-corpus",
        default="stsb-train",
        help="sentences that --postprocess is fitted on: a task name or a text file with one sentence per "
        "line (default: stsb-train)",
    )
    parser.add_argument(
        "--geometry-pairs",
        default="stsb-dev",
        help="STS task whose pairs with gold score >= 4 measure alignment, and whose sentences form the "
        "geometry sample (default: stsb-dev)",
    )
    parser.add_argument(
        "--layers",
        action="store_true",
        help="also measure average cosine, uniformity and effective rank of the mean-pooled hidden states at "
        "every layer, on the sentences of --geometry-pairs; a run folder or checkpoint is compared with its "
        "base model. Without --tasks, no task runs.",
    )
    parser.add_argument(
        "--layers-base",
        metavar="MODEL2",
        help="with --layers: the model to compare with, in place of the run's base model",
    )
    parser.add_argument(
        "--layers-sentences",
        type=int,
        metavar="N",
        help="with --layers: distinct sentences sampled from --geometry-pairs (default: 2000)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of samples, folds and bootstrap (default: 0)")
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=200,
        help="bootstrap resamples per geometry interval; 0 turns them off (default: 200)",
    )
    parser.add_argument("--batch-size", type=int, default=128, help="sentences per encoding batch (default: 128)")
    parser.add_argument("--device", default="cpu", help="torch device for encoding (default: cpu)")
    parser.add_argument(
        "--output", type=Path, help="write the results as JSON to this file (schema: docs/evaluation.md)"
    )
    parser.add_argument("--markdown", type=Path, help="write the Markdown tables to this file")
    parser.add_argument("--plots", type=Path, metavar="DIR", help="write PNG plots to this folder")
    parser.add_argument("--quiet", action="store_true", help="hide progress bars")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from isotune.evaluation.command import evaluate_command
    from isotune.fileio import check_output_paths

    check_output_paths({"--output": args.output, "--markdown": args.markdown}, {"--plots": args.plots})
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}.")
    if args.bootstrap < 0:
        raise ConfigError(f"--bootstrap must be >= 0 (0 turns it off), got {args.bootstrap}.")
    return evaluate_command(args)
