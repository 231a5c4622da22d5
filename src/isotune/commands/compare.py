"""`isotune compare RESULT_OR_RUN ...`: the side-by-side table of eval results and training runs."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="print the side-by-side table of several eval results or runs",
        description="Print one Markdown table with a row per model: every variant of each `isotune eval "
        "--output` JSON file, and the before and after rows of each run folder (its metrics.json).",
    )
    parser.add_argument(
        "results", nargs="+", metavar="RESULT_OR_RUN", help="eval JSON file, run folder or metrics.json"
    )
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    parser.add_argument(
        "--plots", type=Path, metavar="DIR", help="write the alignment-uniformity plane and the spectrum of all rows"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from isotune.evaluation.plots import plot_alignment_uniformity, plot_spectrum
    from isotune.evaluation.report import results_table
    from isotune.evaluation.results import load_labelled_results
    from isotune.fileio import write_text_atomic

    rows: dict[str, dict[str, dict]] = {}
    for argument in args.results:
        for label, results in load_labelled_results(argument).items():
            # Two files may hold a row of the same label (two evals of one model): name the file too.
            rows[label if label not in rows else f"{label} ({argument})"] = results
    table = results_table(rows)
    print(table)
    if args.markdown is not None:
        write_text_atomic(args.markdown, table)
    if args.plots is not None:
        for path in (
            plot_alignment_uniformity(rows, args.plots / "alignment-uniformity.png"),
            plot_spectrum(rows, args.plots / "spectrum.png"),
        ):
            if path is not None:
                print(f"Plot written to {path}")
    return 0
