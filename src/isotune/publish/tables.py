"""Before/after tables of a run's metrics for the model card: STS, transfer and geometry.

Each function returns Markdown, or a sentence saying why its table is absent. Task results are those of
`isotune.evaluation.suite.run_evaluation`, read from metrics.json.
"""

from __future__ import annotations

from typing import Any

from isotune.evaluation.suite import GEOMETRY_TASK, STS_TASKS

GEOMETRY_METRICS = {
    "alignment": "alignment (lower: positive pairs closer)",
    "uniformity": "uniformity (lower: more spread out)",
    "average_cosine": "average cosine (nearer 0: less anisotropic)",
}


def _cell(value: float | None, decimals: int) -> str:
    return "n/a" if value is None else f"{value:.{decimals}f}"


def _change(before: float | None, after: float | None, decimals: int) -> str:
    return "n/a" if before is None or after is None else f"{after - before:+.{decimals}f}"


def _absent(kind: str, tasks: list[str], why: str) -> str:
    listed = ", ".join(tasks) if tasks else "none"
    return f"No {kind} results: {why} (tasks evaluated: {listed}).\n"


def sts_table(before: dict[str, Any], after: dict[str, Any]) -> str:
    """Return Spearman x 100 (all pairs pooled) before and after training for each STS task."""
    tasks = [name for name in STS_TASKS if name in before or name in after]
    if not tasks:
        return _absent("STS", sorted(set(before) | set(after)), "the run evaluated no STS task")
    lines = ["| task | pairs | before | after | change |", "|---|---:|---:|---:|---:|"]
    for name in tasks:
        first, second = _sts_score(before.get(name)), _sts_score(after.get(name))
        result = after.get(name) or before.get(name)
        pairs = sum(result.get("pairs", {}).values())
        lines.append(f"| {name} | {pairs:,} | {_cell(first, 2)} | {_cell(second, 2)} | {_change(first, second, 2)} |")
    return "\n".join(lines) + "\n"


def _sts_score(result: dict[str, Any] | None) -> float | None:
    return None if result is None else result["spearman"]["all"]


def geometry_table(before: dict[str, Any], after: dict[str, Any]) -> str:
    """Return alignment, uniformity and average cosine before and after training."""
    if GEOMETRY_TASK not in before and GEOMETRY_TASK not in after:
        return _absent("geometry", sorted(set(before) | set(after)), "the run did not evaluate the geometry task")
    first, second = before.get(GEOMETRY_TASK, {}), after.get(GEOMETRY_TASK, {})
    lines = ["| metric | before | after | change |", "|---|---:|---:|---:|"]
    for key, label in GEOMETRY_METRICS.items():
        old, new = first.get(key), second.get(key)
        lines.append(f"| {label} | {_cell(old, 3)} | {_cell(new, 3)} | {_change(old, new, 3)} |")
    return "\n".join(lines) + "\n"


def transfer_tasks(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Return the tasks that are neither STS nor geometry, in order of first appearance."""
    names = dict.fromkeys([*before, *after])
    return [name for name in names if name not in STS_TASKS and name != GEOMETRY_TASK]


def transfer_table(before: dict[str, Any], after: dict[str, Any]) -> str:
    """Return each transfer task's headline numbers before and after training.

    The headline numbers are `accuracy` and `f1` where a result has them (SentEval-style classification,
    in percent). NOTE: for a result without either, every other number at its top level is shown, and
    the `all` or `mean` entry of a nested mapping, under the key's name.
    """
    tasks = transfer_tasks(before, after)
    if not tasks:
        return _absent(
            "transfer (classification)",
            sorted(set(before) | set(after)),
            "training evaluates only the tasks in its recipe's evaluation.tasks, and they include no transfer task",
        )
    lines = ["| task | metric | before | after | change |", "|---|---|---:|---:|---:|"]
    for name in tasks:
        first, second = _headline_numbers(before.get(name)), _headline_numbers(after.get(name))
        for metric in dict.fromkeys([*first, *second]):
            old, new = first.get(metric), second.get(metric)
            lines.append(f"| {name} | {metric} | {_cell(old, 2)} | {_cell(new, 2)} | {_change(old, new, 2)} |")
    return "\n".join(lines) + "\n"


HEADLINE_KEYS = ("accuracy", "f1")


def _headline_numbers(result: Any) -> dict[str, float]:
    if not isinstance(result, dict):
        return {}
    numbers: dict[str, float] = {}
    for key, value in result.items():
        if isinstance(value, dict):
            value = value.get("all", value.get("mean"))
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            numbers[key] = float(value)
    headline = {key: numbers[key] for key in HEADLINE_KEYS if key in numbers}
    return headline or numbers
