"""Sweep grids: parse `KEY=V1,V2` arguments, expand them into named runs, and validate every run's recipe.

A grid maps recipe keys to lists of values. Every combination becomes one run, except that keys an
objective does not read (`isotune.recipe.OBJECTIVE_KEYS`) are left at the base recipe's value for that
objective's runs, so combinations that differ only in those keys are trained once.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from isotune.errors import ConfigError
from isotune.recipe import OBJECTIVE_KEYS, Recipe, load_recipe

# Grid keys that may be written without their section.
SHORT_KEYS = {
    "alpha": "objective.alpha",
    "t": "objective.t",
    "lambda": "objective.lambda",
    "temperature": "objective.temperature",
}
OBJECTIVE_NAME_KEY = "objective.name"
MAX_NAME_LENGTH = 200


@dataclass(frozen=True)
class SweepRun:
    """One run of a sweep: its folder name, its grid values and the `--set` overrides that give them.

    `values` maps each grid key that the run's objective reads (dotted recipe keys, in recipe order) to
    its value as the recipe stores it. `objective.name` is always included.
    """

    name: str
    values: dict[str, Any]
    overrides: tuple[str, ...]


def flatten_recipe(recipe: Recipe) -> dict[str, Any]:
    """Return the recipe as `{dotted key: value}`, in recipe order, with recipe keys (`objective.lambda`)."""
    flat: dict[str, Any] = {}
    for section, content in recipe.to_dict().items():
        if isinstance(content, dict):
            flat.update({f"{section}.{key}": value for key, value in content.items()})
        else:
            flat[section] = content
    return flat


def changed_keys(old: Recipe, new: Recipe) -> list[str]:
    """Return the dotted keys, output_dir aside, whose values differ between two recipes."""
    before, after = flatten_recipe(old), flatten_recipe(new)
    return [key for key in after if key != "output_dir" and before.get(key) != after[key]]


def split_values(text: str) -> list[str]:
    """Split `text` at the commas outside brackets and quotes: `1,[a, b],"x,y"` gives 3 values.

    Raises:
        ValueError: naming the problem when a bracket or quote is not closed, or a bracket closes none.
    """
    values, current, depth, quote = [], [], 0, ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
            if depth < 0:
                raise ValueError(f"a closing {char!r} without an opening bracket")
        elif char == "," and depth == 0:
            values.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    if quote:
        raise ValueError(f"an unclosed {quote} quote")
    if depth:
        raise ValueError("an unclosed bracket")
    values.append("".join(current).strip())
    return values


def parse_grid(items: list[str], objectives: str | None = None) -> dict[str, list[str]]:
    """Parse `KEY=V1,V2` items (and `--objective A,B`) into `{dotted key: [value text, ...]}` in recipe order.

    Value texts are kept as typed, to be read as YAML by `load_recipe` like `--set` values.

    Raises:
        ConfigError: on an item without `=`, an unknown key, a key given twice, a key that a sweep may not
            vary (output_dir and evaluation.*), an unclosed bracket or quote, an empty value list or an empty
            value.
    """
    if objectives is not None:
        items = [*items, f"{OBJECTIVE_NAME_KEY}={objectives}"]
    grid: dict[str, list[str]] = {}
    for item in items:
        key, separator, text = item.partition("=")
        key = key.strip()
        if not separator or not key:
            raise ConfigError(f"--grid expects KEY=V1,V2,..., e.g. alpha=1,2, got {item!r}.")
        dotted = _canonical_key(key)
        if dotted in grid:
            raise ConfigError(f"Grid key {dotted} is given twice (as {key!r} and before); list its values once.")
        try:
            values = split_values(text)
        except ValueError as error:
            raise ConfigError(
                f"Grid key {key} has {error} in {item!r}; close every bracket and quote, e.g. "
                "data.columns=[a, b],[c, d]."
            ) from error
        if not text.strip() or any(not value for value in values):
            raise ConfigError(f"Grid key {key} has an empty value in {item!r}; list values as {key}=V1,V2.")
        if len(set(values)) < len(values):
            raise ConfigError(f"Grid key {key} lists a value twice in {item!r}; list each value once.")
        grid[dotted] = values
    if not grid:
        raise ConfigError("The sweep has no grid; pass --grid KEY=V1,V2 (e.g. --grid alpha=1,2) or --objective.")
    order = list(flatten_recipe(Recipe()))
    return dict(sorted(grid.items(), key=lambda item: order.index(item[0])))


def _canonical_key(key: str) -> str:
    dotted = SHORT_KEYS.get(key, key)
    known = list(flatten_recipe(Recipe()))
    if dotted not in known:
        close = difflib.get_close_matches(key, [*SHORT_KEYS, *known], n=1)
        suggestion = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"Unknown grid key {key!r}.{suggestion} Use {', '.join(SHORT_KEYS)} or a dotted recipe key such as "
            "training.learning_rate (isotune train --help lists them)."
        )
    if dotted == "output_dir":
        raise ConfigError("output_dir cannot be a grid key: the sweep names each run's folder; use --output-dir.")
    if dotted.startswith("evaluation."):
        raise ConfigError(
            f"{dotted} cannot be a grid key, because every run of a sweep is evaluated the same way so that "
            f"their results compare; set it for all runs with --set {dotted}=VALUE."
        )
    return dotted


def expand_grid(grid: dict[str, list[str]], recipe_path: Path | None, base_overrides: list[str]) -> list[SweepRun]:
    """Expand `grid` over the recipe at `recipe_path` with `base_overrides`, and validate every run.

    Runs come in objective order, then in the order of the grid's values. A key that the run's objective
    does not read keeps its base value and is left out of the run's name and values.

    Raises:
        ConfigError: when a grid key is also in `base_overrides` or an objective is unknown. Also when a
            key has no effect on any objective of the sweep, or when a run's recipe is invalid (the message
            names the run's values and the key). Also when two value texts give the same run or the same run
            name.
    """
    base = load_recipe(recipe_path, base_overrides)
    overridden = {override.partition("=")[0].strip() for override in base_overrides}
    for key in grid:
        short = next((name for name, dotted in SHORT_KEYS.items() if dotted == key), None)
        if key in overridden or short in overridden:
            raise ConfigError(f"{key} is both in --set and in the grid; give it in one place.")
    objectives = _objectives(grid, base)
    _check_keys_have_effect(grid, objectives)
    labels = _labels(grid)
    runs: dict[str, SweepRun] = {}
    for objective_text, objective in objectives:
        keys = [key for key in grid if key != OBJECTIVE_NAME_KEY and _reads(objective, key)]
        for texts in itertools.product(*(grid[key] for key in keys)):
            overrides = [f"{key}={text}" for key, text in zip(keys, texts, strict=True)]
            if objective_text is not None:
                overrides.insert(0, f"{OBJECTIVE_NAME_KEY}={objective_text}")
            run = _make_run(recipe_path, base_overrides, overrides, [OBJECTIVE_NAME_KEY, *keys], labels)
            if run.name in runs and runs[run.name].values == run.values:
                raise ConfigError(
                    f"Grid values {', '.join(runs[run.name].overrides)} and {', '.join(overrides)} give the same "
                    f"run {run.name}; list each value once."
                )
            if run.name in runs:
                raise ConfigError(
                    f"Grid values {', '.join(runs[run.name].overrides)} and {', '.join(overrides)} give different "
                    f"runs with the same folder name {run.name}, because run names replace characters other than "
                    "letters, digits and ._+- by _. Use values that differ in other characters, or two sweeps."
                )
            runs[run.name] = run
    return list(runs.values())


def load_run_recipe(
    recipe_path: Path | None, base_overrides: list[str], run: SweepRun, output_dir: Path | None = None
) -> Recipe:
    """Load the recipe of one sweep run, with its folder as output_dir when `output_dir` is given."""
    overrides = [*base_overrides, *run.overrides]
    if output_dir is not None:
        overrides.append(f"output_dir={output_dir}")
    return load_recipe(recipe_path, overrides)


def _objectives(grid: dict[str, list[str]], base: Recipe) -> list[tuple[str | None, str]]:
    """Return (value text, objective name) for each objective of the sweep; the text is None for the base one."""
    if OBJECTIVE_NAME_KEY not in grid:
        return [(None, base.objective.name)]
    found = []
    for text in grid[OBJECTIVE_NAME_KEY]:
        try:
            name = yaml.safe_load(text)
        except yaml.YAMLError:
            name = None
        if not isinstance(name, str) or name not in OBJECTIVE_KEYS:
            raise ConfigError(f"Unknown objective {text!r} in the sweep; use one of {', '.join(OBJECTIVE_KEYS)}.")
        found.append((text, name))
    return found


def _reads(objective: str, key: str) -> bool:
    """Return True unless `key` is an objective key that `objective` does not read."""
    section, _, name = key.partition(".")
    return section != "objective" or name in OBJECTIVE_KEYS[objective]


def _check_keys_have_effect(grid: dict[str, list[str]], objectives: list[tuple[str | None, str]]) -> None:
    names = [name for _, name in objectives]
    for key in grid:
        if key != OBJECTIVE_NAME_KEY and not any(_reads(name, key) for name in names):
            readers = [name for name in OBJECTIVE_KEYS if _reads(name, key)]
            raise ConfigError(
                f"Grid key {key} has no effect on the objective(s) of this sweep ({', '.join(names)}), so its "
                f"runs would all be the same. Drop it, or add an objective that reads it "
                f"({', '.join(readers) or 'none'}) with --objective."
            )


def _labels(grid: dict[str, list[str]]) -> dict[str, str]:
    """Return the short label of each grid key in run names: alpha, t, lambda, temperature or the last part."""
    short_names = {dotted: short for short, dotted in SHORT_KEYS.items()}
    labels = {key: short_names.get(key, key.rpartition(".")[2]) for key in grid}
    all_labels = list(labels.values())
    return {key: label if all_labels.count(label) == 1 else key.replace(".", "_") for key, label in labels.items()}


def _make_run(
    recipe_path: Path | None,
    base_overrides: list[str],
    overrides: list[str],
    keys: list[str],
    labels: dict[str, str],
) -> SweepRun:
    """Validate one combination's recipe and name its run after the values that the recipe stores."""
    try:
        recipe = load_recipe(recipe_path, [*base_overrides, *overrides])
    except ConfigError as error:
        raise ConfigError(f"Sweep run with {', '.join(overrides) or 'the base recipe'} is invalid: {error}") from error
    flat = flatten_recipe(recipe)
    values = {key: flat[key] for key in keys}
    parts = [_name_part(values[OBJECTIVE_NAME_KEY])]
    parts += [labels[key] + _value_text(values[key]) for key in keys if key != OBJECTIVE_NAME_KEY]
    name = "-".join(parts)
    if len(name) > MAX_NAME_LENGTH:
        raise ConfigError(
            f"Sweep run name {name[:60]}... is longer than {MAX_NAME_LENGTH} characters; vary fewer keys or "
            "shorter values."
        )
    return SweepRun(name, values, tuple(overrides))


def _value_text(value: Any) -> str:
    """Format a value for a run name: numbers follow their label directly, other values after an underscore."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:g}"
    if isinstance(value, bool):
        return "_" + str(value).lower()
    if value is None:
        return "_null"
    if isinstance(value, list):
        value = "+".join(str(item) for item in value)
    return "_" + _name_part(str(value))


def _name_part(text: str) -> str:
    """Replace the characters that are unsafe in a folder name or a shell word by underscores."""
    return re.sub(r"[^A-Za-z0-9._+-]", "_", text)


def grid_values(runs: list[SweepRun]) -> dict[str, list[Any]]:
    """Return each grid key's distinct values over `runs`, in order of first appearance."""
    values: dict[str, list[Any]] = {}
    for run in runs:
        for key, value in run.values.items():
            seen = values.setdefault(key, [])
            if value not in seen:
                seen.append(value)
    return values


def run_to_dict(run: SweepRun) -> dict[str, Any]:
    """Return the run as JSON-ready data for sweep.json."""
    return dataclasses.asdict(run) | {"overrides": list(run.overrides)}
