"""`isotune compare RESULT_OR_RUN ...`: the side-by-side table of eval results and training runs, their
ranking, and how alignment and uniformity correlate with accuracy over them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from isotune.errors import DataError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="print the side-by-side table of several eval results or runs",
        description="Print one Markdown table with a row per model: every variant of each `isotune eval "
        "--output` JSON file, and the before and after rows of each run folder (its metrics.json). Then rank "
        "the models (each eval variant and each run's after row) and give Spearman's rho of alignment and "
        "uniformity against STS avg and transfer avg over them (see docs/sweeps.md).",
    )
    parser.add_argument(
        "results",
        nargs="+",
        metavar="RESULT_OR_RUN",
        help="eval JSON file, run folder, metrics.json, or a sweep folder (its finished runs)",
    )
    parser.add_argument(
        "--rank-by",
        metavar="SCORE",
        help="score to rank by: sts_avg (default), transfer_avg, an STS or transfer task name, alignment or "
        "uniformity (lower ranks first for the last two)",
    )
    parser.add_argument("--markdown", type=Path, help="also write the table, ranking and correlations to this file")
    parser.add_argument(
        "--plots",
        type=Path,
        metavar="DIR",
        help="write the alignment-uniformity plane, the spectrum, and each STS score against the average cosine",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from isotune.evaluation.correlation import correlation_section
    from isotune.evaluation.plots import plot_alignment_uniformity, plot_spectrum, plot_sts_against_average_cosine
    from isotune.evaluation.report import results_table
    from isotune.evaluation.scores import score_rows
    from isotune.fileio import check_output_paths, write_text_atomic

    check_output_paths({"--markdown": args.markdown}, {"--plots": args.plots})
    arguments = _expand_sweeps(args.results)
    rows = _load_rows(arguments, ("before", "after"))
    if not rows:
        raise DataError(
            f"Nothing to compare: no task results in {', '.join(args.results)} (an isotune eval output "
            "written with --layers and no --tasks has layer results only). Pass eval results with tasks or run "
            "folders."
        )
    # The runs of one base model share its before row, so only after rows count as compared models.
    models = score_rows(_load_rows(arguments, ("after",)))
    count = len(models.values)
    described = (
        f"the {count} compared model{'' if count == 1 else 's'} (each eval variant and each run's after row; "
        "before rows are left out because the runs of one base model share them)"
    )
    sections = [results_table(rows), _ranking(models, args.rank_by), correlation_section(models, described)]
    text = "\n".join(sections)
    print(text)
    if args.markdown is not None:
        write_text_atomic(args.markdown, text)
    if args.plots is not None:
        for path in (
            plot_alignment_uniformity(rows, args.plots / "alignment-uniformity.png"),
            plot_spectrum(rows, args.plots / "spectrum.png"),
            plot_sts_against_average_cosine(rows, _sts_tasks(rows), args.plots / "sts-vs-average-cosine.png"),
        ):
            if path is not None:
                print(f"Plot written to {path}")
    return 0


def _sts_tasks(rows: dict[str, dict[str, dict]]) -> list[str]:
    """Return the STS tasks that some row has, in registry order."""
    from isotune.evaluation.tasks import STS_TASKS

    return [task for task in STS_TASKS if any(task in results for results in rows.values())]


def _load_rows(arguments: list[str], stages: tuple[str, ...]) -> dict[str, dict[str, dict]]:
    from isotune.evaluation.results import load_labelled_results

    rows: dict[str, dict[str, dict]] = {}
    for argument in arguments:
        for label, results in load_labelled_results(argument, stages).items():
            # Two files may hold a row of the same label (two evals of one model): name the file too.
            rows[label if label not in rows else f"{label} ({argument})"] = results
    return rows


def _expand_sweeps(arguments: list[str]) -> list[str]:
    """Replace each sweep folder (one with sweep.json) by its finished run folders (metrics.json with "after")."""
    from isotune.sweep.record import sweep_run_folders

    expanded = []
    for argument in arguments:
        folders = sweep_run_folders(Path(argument))
        if folders is None:
            expanded.append(argument)
            continue
        finished = [folder for folder in folders if _finished(folder)]
        if len(finished) < len(folders):
            missing = len(folders) - len(finished)
            print(
                f"{argument}: {missing} of {len(folders)} sweep runs are not finished (no after results) and are "
                "left out.",
                file=sys.stderr,
            )
        expanded += [str(folder) for folder in finished]
    return expanded


def _finished(run_folder: Path) -> bool:
    """Return True when the run's metrics.json has "after" results; an unreadable file counts as finished,
    so that loading it reports the error."""
    from isotune.evaluation.results import load_labelled_results

    if not (run_folder / "metrics.json").is_file():
        return False
    try:
        return bool(load_labelled_results(run_folder, ("after",)))
    except DataError:
        return True


def _ranking(models, rank_by: str | None) -> str:
    """Rank by `rank_by`, or by STS avg when it is None and any model has it."""
    from isotune.evaluation.correlation import ranking_section
    from isotune.evaluation.scores import STS_AVG

    if rank_by is None:
        if not models.values:
            return "## Ranking\n\nNo ranking: no eval variant or run after row to rank (before rows are not ranked).\n"
        if not models.has(STS_AVG):
            return "## Ranking\n\nNo ranking: the compared models have no STS task in common; pass --rank-by.\n"
        rank_by = STS_AVG
    return ranking_section(models, rank_by)
