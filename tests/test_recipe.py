"""Recipe loading, overrides and validation errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from isotune.errors import ConfigError
from isotune.recipe import Recipe, load_recipe

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_quickstart_recipe_loads():
    recipe = load_recipe(RECIPES / "quickstart.yaml")
    assert recipe.objective.name == "info_nce_uniform"
    assert recipe.training.precision == "no"


def _chosen_settings(page: Path) -> dict:
    """Return the YAML block under the "The chosen default" heading of the experiments page."""
    text = page.read_text(encoding="utf-8")
    section = text.split("## The chosen default", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    return yaml.safe_load(block)


def test_quickstart_holds_the_settings_the_experiments_page_describes():
    page = Path(__file__).resolve().parents[1] / "docs" / "experiments.md"
    chosen = _chosen_settings(page)
    recipe = load_recipe(RECIPES / "quickstart.yaml").to_dict()
    assert chosen, "the page lists no settings"
    for section, settings in chosen.items():
        for key, value in settings.items():
            assert recipe[section][key] == value, f"{section}.{key}"


def test_defaults_without_file():
    assert load_recipe(None) == Recipe()


def test_lambda_key_sets_lam(tmp_path):
    recipe = load_recipe(_write(tmp_path, "objective:\n  lambda: 0.25\n"))
    assert recipe.objective.lam == 0.25


def test_unquoted_no_precision_is_accepted(tmp_path):
    recipe = load_recipe(_write(tmp_path, "training:\n  precision: no\n"))
    assert recipe.training.precision == "no"


def test_scientific_learning_rate_is_a_float(tmp_path):
    recipe = load_recipe(_write(tmp_path, "training:\n  learning_rate: 3e-5\n"))
    assert recipe.training.learning_rate == 3e-5


def test_set_overrides_file(tmp_path):
    recipe = load_recipe(_write(tmp_path, "training:\n  batch_size: 16\n"), ["training.batch_size=8"])
    assert recipe.training.batch_size == 8


def test_set_parses_lists():
    recipe = load_recipe(None, ["evaluation.tasks=[stsb-dev, sts12]"])
    assert recipe.evaluation.tasks == ["stsb-dev", "sts12"]


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("training:\n  batchsize: 8\n", ["training.batchsize", "training.batch_size"]),
        ("trainer:\n  max_steps: 8\n", ["trainer"]),
        ("objective:\n  lam: 1\n", ["objective.lam", "objective.lambda"]),
    ],
)
def test_unknown_key_names_key_and_suggestion(tmp_path, text, names):
    with pytest.raises(ConfigError) as error:
        load_recipe(_write(tmp_path, text))
    for name in names:
        assert name in str(error.value)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("objective.t=-1", "objective.t"),
        ("objective.t=0", "objective.t"),
        ("objective.temperature=0", "objective.temperature"),
        ("objective.alpha=0", "objective.alpha"),
        ("training.batch_size=1", "training.batch_size"),
        ("training.max_steps=0", "training.max_steps"),
        ("training.warmup_ratio=1.5", "training.warmup_ratio"),
        ("training.precision=fp8", "training.precision"),
        ("model.pooling=avg", "model.pooling"),
        ("model.max_seq_length=1", "model.max_seq_length"),
        ("data.max_words=1", "data.max_words"),
        ("training.batch_size=eight", "training.batch_size"),
        ("training.keep_best=maybe", "training.keep_best"),
    ],
)
def test_invalid_value_names_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_recipe(None, [override])


def test_set_without_equals_is_rejected():
    with pytest.raises(ConfigError, match="key=value"):
        load_recipe(None, ["training.batch_size"])


def test_missing_recipe_file_is_reported(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_recipe(tmp_path / "missing.yaml")


def test_malformed_yaml_is_reported(tmp_path):
    with pytest.raises(ConfigError, match="not valid"):
        load_recipe(_write(tmp_path, "training: [unclosed\n"))


def test_yaml_tags_are_not_executed(tmp_path):
    text = "output_dir: !!python/object/apply:os.system ['echo unsafe']\n"
    with pytest.raises(ConfigError, match="not valid"):
        load_recipe(_write(tmp_path, text))


def test_recipe_round_trips_through_yaml(tmp_path):
    recipe = load_recipe(None, ["objective.lambda=0.5", "training.max_steps=7"])
    assert load_recipe(_write(tmp_path, recipe.to_yaml())) == recipe
