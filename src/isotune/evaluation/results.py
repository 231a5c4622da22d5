"""The JSON results of `isotune eval`, and reading them back (with run folders) for `isotune compare`.

See docs/evaluation.md for the schema. `SCHEMA` names its version.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from isotune.errors import DataError

SCHEMA = "isotune-eval/1"


def variant_label(model: str, postprocess: str | None) -> str:
    """Return the row label of a model with an optional post-processing, e.g. `all-MiniLM-L6-v2 + whiten:128`."""
    return model if postprocess is None else f"{model} + {postprocess}"


def load_labelled_results(
    argument: str | Path, stages: tuple[str, ...] = ("before", "after")
) -> dict[str, dict[str, dict]]:
    """Return `{label: {task: result}}` from an eval JSON file, a run folder or a run's metrics.json.

    An eval JSON file gives one entry per variant (the model, then each post-processing). A run folder
    (or its metrics.json, `{"before": {...}, "after": {...}}`) gives `RUN before` and `RUN after`, or only
    the stages named in `stages`. Raises DataError naming the path when it is none of these.
    """
    path = Path(argument)
    if path.is_dir():
        metrics = path / "metrics.json"
        if not metrics.is_file():
            raise DataError(f"{path} is a folder without metrics.json; pass a run folder or an eval JSON file.")
        return _run_results(_read(metrics), path.name, stages)
    content = _read(path)
    if isinstance(content, dict) and content.get("schema") == SCHEMA:
        return {variant["label"]: variant["results"] for variant in content["variants"]}
    if isinstance(content, dict) and "before" in content:
        return _run_results(content, path.parent.name or path.stem, stages)
    raise DataError(
        f"{path} is neither an isotune eval result (schema {SCHEMA}) nor a run's metrics.json "
        "with before/after results."
    )


def _run_results(metrics: dict[str, Any], name: str, stages: tuple[str, ...]) -> dict[str, dict[str, dict]]:
    return {f"{name} {stage}": metrics[stage] for stage in stages if stage in metrics}


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise DataError(f"Result file {path} not found.") from error
    except (OSError, json.JSONDecodeError) as error:
        raise DataError(f"Failed to read {path} as JSON: {error}") from error
