"""Markdown tables of evaluation results: one row per model (or variant), plus STS and geometry details."""

from __future__ import annotations

from isotune.evaluation.tasks import GEOMETRY_TASK, STS_TASKS, TRANSFER_TASKS

# Geometry columns: result key -> (column header, decimals).
GEOMETRY_COLUMNS = {
    "alignment": ("align", 3),
    "uniformity": ("uniform", 3),
    "average_cosine": ("avg cos", 3),
    "isotropy": ("isotropy", 3),
    "effective_rank": ("eff. rank", 1),
    "top_component_share": ("top PC", 3),
}


def _format(value: float | None, decimals: int) -> str:
    return "n/a" if value is None else f"{value:.{decimals}f}"


def _columns(tasks: set[str]) -> list[tuple[str, str, str, int]]:
    """Return (header, task, key, decimals) for each column that the tasks in `tasks` fill."""
    columns = [(name, name, "spearman", 2) for name in STS_TASKS if name in tasks]
    for name in TRANSFER_TASKS:
        if name in tasks:
            columns.append((name, name, "accuracy", 2))
            if name == "mrpc":
                columns.append(("mrpc F1", name, "f1", 2))
    if GEOMETRY_TASK in tasks:
        columns += [(header, GEOMETRY_TASK, key, decimals) for key, (header, decimals) in GEOMETRY_COLUMNS.items()]
    return columns


def _cell(result: dict | None, task: str, key: str, decimals: int) -> str:
    if result is None:
        return "n/a"
    value = result.get(key)
    if task in STS_TASKS and value is not None:
        value = value["all"]
    return _format(value, decimals)


def results_table(rows: dict[str, dict[str, dict]]) -> str:
    """Format `{label: {task: result}}` as one Markdown table with a row per label.

    STS columns are Spearman x 100 over all pairs of the task, transfer columns accuracy x 100 (and F1
    for MRPC), geometry columns the raw measures. A task that a row lacks shows "n/a".
    """
    tasks = {task for results in rows.values() for task in results}
    columns = _columns(tasks)
    lines = [
        "| model | " + " | ".join(header for header, *_ in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for label, results in rows.items():
        cells = [_cell(results.get(task), task, key, decimals) for _, task, key, decimals in columns]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def sts_detail_table(results: dict[str, dict]) -> str:
    """Format every STS subset of `results`: Spearman and Pearson x 100, pairs scored and skipped."""
    lines = ["| task | subset | Spearman | Pearson | pairs | skipped |", "|---|---|---:|---:|---:|---:|"]
    for task, result in results.items():
        if task not in STS_TASKS:
            continue
        # A task of one subset shows only its `all` row, which equals the subset and `wmean`.
        shown = ["all"] if len(result["pairs"]) == 1 else list(result["spearman"])
        for subset in shown:
            spearman = result["spearman"][subset]
            pairs = result["pairs"].get(subset, sum(result["pairs"].values()))
            skipped = result["skipped"].get(subset, sum(result["skipped"].values()))
            pearson = result["pearson"][subset]
            lines.append(
                f"| {task} | {subset} | {_format(spearman, 2)} | {_format(pearson, 2)} | {pairs} | {skipped} |"
            )
    return "\n".join(lines) + "\n"


def geometry_detail_table(rows: dict[str, dict[str, dict]]) -> str:
    """Format each label's geometry measures with their bootstrap intervals and sample sizes."""
    lines = ["| model | measure | value | 95% interval | sample |", "|---|---|---:|---|---|"]
    for label, results in rows.items():
        result = results.get(GEOMETRY_TASK)
        if result is None:
            continue
        for key, (header, decimals) in GEOMETRY_COLUMNS.items():
            interval = result["intervals"].get(key)
            shown = "n/a" if interval is None else f"[{interval[0]:.{decimals}f}, {interval[1]:.{decimals}f}]"
            sample = (
                f"{result['num_positive_pairs']} pairs"
                if key == "alignment"
                else f"{result['num_sentences']} sentences"
            )
            lines.append(f"| {label} | {header} | {_format(result[key], decimals)} | {shown} | {sample} |")
    return "\n".join(lines) + "\n"
