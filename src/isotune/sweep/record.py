"""sweep.json: what a sweep folder contains, and the rule for running another grid into the same folder.

A sweep folder accepts a new invocation only when its base recipe (every key but output_dir, after the
`--set` overrides) is unchanged and its grid produces every run recorded before, with the same values.
A grid may therefore add values, and with them runs, but not drop or rename runs: adding a new key would
rename every run, and is an error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from isotune.errors import ConfigError
from isotune.fileio import write_json_atomic
from isotune.recipe import Recipe
from isotune.sweep.grid import SweepRun, flatten_recipe, grid_values, run_to_dict

SWEEP_FILE = "sweep.json"
SCHEMA = "isotune-sweep/1"


def build_record(
    recipe_path: Path | None, base_overrides: list[str], base_recipe: Recipe, runs: list[SweepRun]
) -> dict[str, Any]:
    """Return the content of sweep.json for a sweep of `runs` over `base_recipe`."""
    base = flatten_recipe(base_recipe)
    base.pop("output_dir")
    return {
        "schema": SCHEMA,
        "recipe": None if recipe_path is None else str(recipe_path),
        "overrides": list(base_overrides),
        "base_recipe": base,
        "grid": grid_values(runs),
        "runs": [run_to_dict(run) for run in runs],
    }


def read_record(folder: Path, fix: str = "choose another --output-dir") -> dict[str, Any] | None:
    """Return the sweep.json of `folder`, or None when it has none.

    Raises:
        ConfigError: when sweep.json cannot be read as a sweep record; the message ends with `fix`.
    """
    path = folder / SWEEP_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"Failed to read {path}: {error}. Restore it, or {fix}.") from error
    required = {"schema", "recipe", "overrides", "base_recipe", "grid", "runs"}
    if not isinstance(record, dict) or record.get("schema") != SCHEMA or not required <= set(record):
        raise ConfigError(
            f"{path} is not an isotune sweep record (schema {SCHEMA} with keys {', '.join(sorted(required))}); {fix}."
        )
    return record


def check_folder(folder: Path, record: dict[str, Any]) -> None:
    """Check that the sweep folder `folder` can take the sweep that `record` describes.

    Raises:
        ConfigError: when `folder` is a file, contains files but no sweep.json, or contains a sweep whose
            base recipe differs or whose runs the new grid does not all produce.
    """
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"Sweep folder {folder} is a file; choose another --output-dir.")
    stored = read_record(folder)
    if stored is None:
        if folder.is_dir() and any(folder.iterdir()):
            raise ConfigError(
                f"Sweep folder {folder} is not empty and has no {SWEEP_FILE}, so it may contain a run or other files. "
                "Choose a new --output-dir for the sweep."
            )
        return
    changed = [
        key
        for key in {**stored["base_recipe"], **record["base_recipe"]}
        if stored["base_recipe"].get(key) != record["base_recipe"].get(key)
    ]
    if changed:
        raise ConfigError(
            f"Sweep folder {folder} contains a sweep of a different base recipe (changed: {', '.join(changed)}). "
            f"Use the recorded recipe {stored['recipe']} with --set {' '.join(stored['overrides']) or '(none)'}, "
            "or choose a new --output-dir."
        )
    new_runs = {run["name"]: run["values"] for run in record["runs"]}
    dropped = [run["name"] for run in stored["runs"] if new_runs.get(run["name"]) != run["values"]]
    if dropped:
        listed = ", ".join(dropped[:5]) + (f" and {len(dropped) - 5} more" if len(dropped) > 5 else "")
        recorded = " ".join(f"{key}={','.join(map(str, values))}" for key, values in stored["grid"].items())
        raise ConfigError(
            f"Sweep folder {folder} contains runs that this grid does not produce: {listed}. A sweep folder only "
            f"accepts a grid that keeps every recorded run and adds values; the recorded grid is {recorded}. "
            "Extend that grid, or choose a new --output-dir."
        )


def write_record(folder: Path, record: dict[str, Any]) -> Path:
    """Write `record` to `folder/sweep.json` atomically."""
    return write_json_atomic(folder / SWEEP_FILE, record)


def sweep_run_folders(folder: Path) -> list[Path] | None:
    """Return the run folders that the sweep in `folder` records, or None when `folder` is not a sweep folder."""
    if not folder.is_dir():
        return None
    record = read_record(folder, fix="pass its run folders to isotune compare instead")
    if record is None:
        return None
    return [folder / run["name"] for run in record["runs"]]
