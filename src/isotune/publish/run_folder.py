"""Read a finished run folder (written by `isotune train`) without changing it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from isotune.errors import ConfigError, DataError
from isotune.recipe import Recipe, load_recipe

RUN_FILES = ("recipe.yaml", "metrics.json", "run.json")


@dataclass(frozen=True)
class RunFolder:
    """A finished run: its resolved path, recipe (parsed and verbatim), metrics and run information."""

    path: Path
    recipe: Recipe
    recipe_text: str
    metrics: dict[str, Any]
    run_info: dict[str, Any]

    @property
    def model_dir(self) -> Path:
        return self.path / "model"


def read_run_folder(path: str | Path) -> RunFolder:
    """Read the run folder at `path`.

    Raises:
        DataError: when the folder, its model or one of `RUN_FILES` is missing or unreadable, or when
            metrics.json has no "before" and "after" evaluation (an unfinished run).
    """
    given = Path(path).expanduser()
    if not given.is_dir():
        raise DataError(f"Run folder {given} not found; pass the folder that `isotune train` wrote (its output_dir).")
    root = given.resolve()
    if not (root / "model" / "modules.json").is_file():
        raise DataError(
            f"{root} has no model/modules.json, so it contains no finished run. Pass the folder that `isotune train` "
            "wrote, or finish the run with `isotune train RECIPE --output-dir RUN_DIR --resume`."
        )
    missing = [name for name in RUN_FILES if not (root / name).is_file()]
    if missing:
        raise DataError(
            f"Run folder {root} lacks {', '.join(missing)}; the run did not finish. Finish it with "
            "`isotune train RECIPE --output-dir RUN_DIR --resume`."
        )
    recipe_text = (root / "recipe.yaml").read_text(encoding="utf-8")
    try:
        recipe = load_recipe(root / "recipe.yaml")
    except ConfigError as error:
        raise DataError(f"Run folder {root}: recipe.yaml is not a valid recipe: {error}") from error
    metrics = _read_json(root / "metrics.json")
    for stage in ("before", "after"):
        if not isinstance(metrics.get(stage), dict):
            raise DataError(
                f"{root / 'metrics.json'} has no {stage!r} evaluation; the run did not finish. Finish it with "
                "`isotune train RECIPE --output-dir RUN_DIR --resume`."
            )
    return RunFolder(
        path=root,
        recipe=recipe,
        recipe_text=recipe_text,
        metrics=metrics,
        run_info=_read_json(root / "run.json"),
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"{path} is not valid JSON ({error}); it may have been edited or cut short.") from error
    if not isinstance(data, dict):
        raise DataError(f"{path} must hold a JSON object, got {type(data).__name__}.")
    return data
