"""The outputs of a sweep: sweep.md (runs table, ranking, correlations, plots), sweep.csv and plots/.

Every number comes from the runs' metrics.json ("after" results, saved step) and run.json (seconds).
"""

from __future__ import annotations

import csv
import io
import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from isotune.errors import DataError
from isotune.evaluation.correlation import correlation_section, format_score, ranking_section
from isotune.evaluation.scores import STS_AVG, TRANSFER_AVG, RowScores, score_name, score_rows
from isotune.fileio import write_text_atomic
from isotune.sweep.grid import OBJECTIVE_NAME_KEY, SweepRun
from isotune.sweep.plots import plot_plane_by_score, plot_scores_against_key

BASE_LABEL = "base model (before training)"


@dataclass
class RunResult:
    """The results in a sweep run's folder: "before" and "after" results, saved step and minutes (None if absent).

    `base_key` identifies the base model evaluation that the "before" results come from (runs with the same
    model, data, evaluation and seed share it), or is None when unknown.
    """

    run: SweepRun
    before: dict[str, dict] | None
    after: dict[str, dict] | None
    saved_step: int | None
    minutes: float | None
    base_key: str | None = None


def collect_results(
    sweep_folder: Path, runs: list[SweepRun], base_keys: dict[str, str] | None = None
) -> list[RunResult]:
    """Read each run's metrics.json and run.json under `sweep_folder`; a missing file leaves its fields None.

    `base_keys` maps run names to `isotune.training.run.base_results_key` of their recipes.
    """
    collected = []
    for run in runs:
        metrics = _read_json(sweep_folder / run.name / "metrics.json")
        info = _read_json(sweep_folder / run.name / "run.json")
        seconds = info.get("seconds")
        collected.append(
            RunResult(
                run,
                metrics.get("before"),
                metrics.get("after"),
                metrics.get("saved_step"),
                None if seconds is None else seconds / 60,
                (base_keys or {}).get(run.name),
            )
        )
    return collected


def write_sweep_outputs(
    sweep_folder: Path, record: dict[str, Any], results: list[RunResult], failures: dict[str, str]
) -> Path:
    """Write sweep.md, sweep.csv and plots/ for the finished runs of `results`; return the path of sweep.md."""
    finished = [result for result in results if result.after is not None]
    grid_keys = [key for key, values in record["grid"].items() if key != OBJECTIVE_NAME_KEY or len(values) > 1]
    run_scores = score_rows({result.run.name: result.after for result in finished})
    bases = _base_rows(finished)
    table_rows = {**bases, **{result.run.name: result.after for result in finished}}
    table_scores = score_rows(table_rows)
    columns = _score_columns(table_scores)

    write_text_atomic(sweep_folder / "sweep.csv", _csv(finished, grid_keys, columns, run_scores))
    plots = _write_plots(sweep_folder / "plots", finished, record, run_scores)
    lines = [
        f"# Sweep over {record['recipe']}",
        "",
        _settings_line(record),
        "",
        "STS columns are Spearman x 100 of cosine similarity over all pairs of the task; geometry is measured on "
        "L2-normalised embeddings as in each run's report.md. A '-' marks a grid key that the run's objective "
        "does not read. Minutes cover evaluation before and after training too, and for a resumed run only the time "
        "since it resumed.",
        "",
        _markdown_table(finished, list(bases), grid_keys, columns, table_scores).rstrip("\n"),
    ]
    unfinished = [result.run.name for result in results if result.after is None]
    if unfinished:
        lines += ["", "Runs without results yet:", ""]
        lines += [
            f"- {name}: {failures.get(name, 'not trained yet, or stopped before its evaluation')}"
            for name in unfinished
        ]
    lines += [""]
    if run_scores.has(STS_AVG):
        lines += [ranking_section(run_scores, STS_AVG)]
    described = f"the {len(finished)} finished runs of the sweep (after training; the base model is left out)"
    lines += [correlation_section(run_scores, described)]
    if plots:
        lines += ["## Plots", ""] + [f"![{path.stem}](plots/{path.name})" for path in plots] + [""]
    return write_text_atomic(sweep_folder / "sweep.md", "\n".join(lines))


def _base_rows(finished: list[RunResult]) -> dict[str, dict[str, dict]]:
    """Return the table's base model rows: one for the whole sweep when every finished run starts from the
    same base evaluation, else one per base, named after its first run (a grid over model.name, say)."""
    bases: dict[str, tuple[str, dict[str, dict]]] = {}
    for result in finished:
        if result.before is not None:
            key = result.base_key if result.base_key is not None else json.dumps(result.before, sort_keys=True)
            bases.setdefault(key, (result.run.name, result.before))
    if len(bases) == 1:
        return {BASE_LABEL: next(iter(bases.values()))[1]}
    return {f"base model of {name}": before for name, before in bases.values()}


def _score_columns(scores: RowScores) -> list[str]:
    columns = [*scores.sts_tasks, STS_AVG]
    if scores.has(TRANSFER_AVG):
        columns.append(TRANSFER_AVG)
    return columns + ["alignment", "uniformity", "average_cosine"]


def _settings_line(record: dict[str, Any]) -> str:
    overrides = " ".join(f"--set {shlex.quote(item)}" for item in record["overrides"]) or "no --set overrides"
    grid = "; ".join(f"{key} = {', '.join(map(_grid_cell, values))}" for key, values in record["grid"].items())
    return f"Base recipe `{record['recipe']}` with {overrides}. Grid: {grid}. Runs: {len(record['runs'])}."


def _markdown_table(
    finished: list[RunResult], base_labels: list[str], grid_keys: list[str], columns: list[str], scores: RowScores
) -> str:
    headers = ["#", "run", *grid_keys, *(score_name(column) for column in columns), "saved step", "minutes"]
    # Grid keys with text values (objective.name, model.name, ...) are left-aligned, numbers right-aligned.
    text_keys = {key for result in finished for key, value in result.run.values.items() if isinstance(value, str)}
    alignments = ["---:", "---", *("---" if key in text_keys else "---:" for key in grid_keys)]
    alignments += ["---:"] * (len(headers) - len(alignments))
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(alignments) + "|"]
    for label in base_labels:
        cells = ["-", label, *("-" for _ in grid_keys)]
        cells += [format_score(column, scores.values[label].get(column)) for column in columns] + ["-", "-"]
        lines.append("| " + " | ".join(cells) + " |")
    for index, result in enumerate(finished, start=1):
        values = scores.values[result.run.name]
        cells = [str(index), result.run.name]
        cells += [_grid_cell(result.run.values.get(key, "-")) for key in grid_keys]
        cells += [format_score(column, values.get(column)) for column in columns]
        cells += [_grid_cell(result.saved_step), "n/a" if result.minutes is None else f"{result.minutes:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _grid_cell(value: Any) -> str:
    if value is None:
        return "n/a"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _csv(finished: list[RunResult], grid_keys: list[str], columns: list[str], scores: RowScores) -> str:
    """Return one CSV row per finished run with unrounded numbers; an empty cell is a value the run lacks."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["run", *grid_keys, *columns, "saved_step", "minutes"])
    for result in finished:
        values = scores.values[result.run.name]
        row = [result.run.name, *(result.run.values.get(key) for key in grid_keys)]
        row += [values.get(column) for column in columns] + [result.saved_step, result.minutes]
        writer.writerow(["" if cell is None else cell for cell in row])
    return buffer.getvalue()


def _write_plots(folder: Path, finished: list[RunResult], record: dict[str, Any], scores: RowScores) -> list[Path]:
    """Write the planes coloured by STS avg and transfer avg, and accuracy against each varied grid key."""
    accuracies = [score for score in (STS_AVG, TRANSFER_AVG) if scores.has(score)]
    written: list[Path | None] = []
    for score in accuracies:
        points = [
            (str(index), values["uniformity"], values["alignment"], values[score])
            for index, values in enumerate((scores.values[result.run.name] for result in finished), start=1)
            if None not in (values["uniformity"], values["alignment"], values[score])
        ]
        written.append(plot_plane_by_score(points, score_name(score), folder / f"plane-{score.replace('_', '-')}.png"))
    objectives = record["grid"].get(OBJECTIVE_NAME_KEY, [])
    for key, values in record["grid"].items():
        if len(values) < 2:
            continue
        points = [
            (
                result.run.values[key],
                result.run.values[OBJECTIVE_NAME_KEY] if len(objectives) > 1 else "runs",
                {score_name(score): scores.values[result.run.name][score] for score in accuracies},
            )
            for result in finished
            if key in result.run.values
        ]
        path = folder / f"accuracy-vs-{key}.png"
        written.append(plot_scores_against_key(key, points, [score_name(score) for score in accuracies], path))
    return [path for path in written if path is not None]


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"Failed to read {path}: {error}. Delete the run folder to train the run again.") from error
    return content if isinstance(content, dict) else {}
