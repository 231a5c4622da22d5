"""`isotune sweep`: grid parsing and expansion, the sweep folder rules, and real tiny sweeps that resume."""

from __future__ import annotations

import csv
import json
import logging
import shutil
import typing
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from conftest import tiny_recipe
from isotune.cli import main
from isotune.errors import ConfigError
from isotune.recipe import OBJECTIVE_KEYS, ObjectiveConfig, Recipe
from isotune.sweep.grid import expand_grid, flatten_recipe, parse_grid, split_values
from isotune.sweep.record import build_record, check_folder, write_record

SWEEP_RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "sweep_small.yaml"


def _expand(*items: str, objective: str | None = None, overrides: list[str] | None = None):
    return expand_grid(parse_grid(list(items), objective), SWEEP_RECIPE, overrides or [])


def test_short_keys_map_to_objective_keys():
    grid = parse_grid(["lambda=0.5,1", "t=1,2,3", "alpha=2"])
    assert list(grid) == ["objective.alpha", "objective.t", "objective.lambda"]  # recipe order
    assert grid["objective.t"] == ["1", "2", "3"]


def test_dotted_key_and_bracketed_values():
    grid = parse_grid(["training.learning_rate=5e-6,2e-5", "data.columns=[a, b],[c, d]"])
    assert grid["training.learning_rate"] == ["5e-6", "2e-5"]
    assert grid["data.columns"] == ["[a, b]", "[c, d]"]
    assert split_values('"x,y",z') == ['"x,y"', "z"]


def test_expansion_names_runs_after_values():
    runs = _expand("alpha=1,2", "training.learning_rate=5e-6,2e-5")
    assert [run.name for run in runs] == [
        "align_uniform-alpha1-learning_rate5e-06",
        "align_uniform-alpha1-learning_rate2e-05",
        "align_uniform-alpha2-learning_rate5e-06",
        "align_uniform-alpha2-learning_rate2e-05",
    ]
    assert runs[1].values == {
        "objective.name": "align_uniform",
        "objective.alpha": 1.0,
        "training.learning_rate": 2e-5,
    }
    assert runs[1].overrides == ("objective.alpha=1", "training.learning_rate=2e-5")


def test_objectives_ignore_keys_they_do_not_read():
    runs = _expand("alpha=1,2", "temperature=0.05,0.1", objective="align_uniform,info_nce")
    assert [run.name for run in runs] == [
        "align_uniform-alpha1",
        "align_uniform-alpha2",
        "info_nce-temperature0.05",
        "info_nce-temperature0.1",
    ]
    assert "objective.alpha" not in runs[2].values
    assert runs[2].overrides == ("objective.name=info_nce", "objective.temperature=0.05")


def test_every_objective_lists_its_keys():
    names = typing.get_args(typing.get_type_hints(ObjectiveConfig)["name"])
    assert set(OBJECTIVE_KEYS) == set(names)
    objective_keys = {key.partition(".")[2] for key in flatten_recipe(Recipe()) if key.startswith("objective.")}
    for name, keys in OBJECTIVE_KEYS.items():
        assert set(keys) <= objective_keys, name


@pytest.mark.parametrize(
    ("items", "objective", "message"),
    [
        (["alpah=1,2"], None, "Unknown grid key 'alpah'. Did you mean 'alpha'?"),
        (["alpha=1,abc"], None, "objective.alpha=abc is invalid: Invalid value 'abc' for objective.alpha"),
        (["t=1,0"], None, "objective.t=0 is invalid: Invalid recipe: objective.t must be > 0, got 0.0"),
        (["alpha="], None, "Grid key alpha has an empty value in 'alpha='"),
        (["alpha=1,,2"], None, "Grid key alpha has an empty value in 'alpha=1,,2'"),
        (["alpha=1,1"], None, "Grid key alpha lists a value twice"),
        (["alpha=1,1.0"], None, "Grid values objective.alpha=1 and objective.alpha=1.0 give the same run"),
        (["data.path=a/b,a_b"], None, "data.path=a/b and data.path=a_b give different runs with the same folder"),
        (["alpha=1", "objective.alpha=2"], None, "Grid key objective.alpha is given twice"),
        (["alpha=1,2"], "info_nce", "Grid key objective.alpha has no effect on the objective(s) of this sweep"),
        (["alpha=1"], "align_uniform,simclr", "Unknown objective 'simclr'"),
        (["output_dir=a,b"], None, "output_dir cannot be a grid key"),
        (["evaluation.tasks=[sts12],[sts13]"], None, "evaluation.tasks cannot be a grid key"),
        (["alpha"], None, "--grid expects KEY=V1,V2"),
        (["alpha=[1,2"], None, "Grid key alpha has an unclosed bracket in 'alpha=[1,2'"),
        (["alpha=1],2"], None, "Grid key alpha has a closing ']' without an opening bracket"),
        (['data.columns="a,b'], None, 'Grid key data.columns has an unclosed " quote'),
        ([], None, "The sweep has no grid"),
    ],
)
def test_bad_grid_is_rejected(items, objective, message):
    with pytest.raises(ConfigError) as error:
        _expand(*items, objective=objective)
    assert message in str(error.value)


def test_grid_key_also_in_set_is_rejected():
    with pytest.raises(ConfigError, match="objective.alpha is both in --set and in the grid"):
        _expand("alpha=1,2", overrides=["objective.alpha=3"])


def _record(*items: str, overrides: list[str] | None = None) -> dict:
    from isotune.recipe import load_recipe

    runs = _expand(*items, overrides=overrides)
    return build_record(SWEEP_RECIPE, overrides or [], load_recipe(SWEEP_RECIPE, overrides or []), runs)


def test_sweep_folder_accepts_added_values(tmp_path):
    write_record(tmp_path, _record("alpha=1,2"))
    check_folder(tmp_path, _record("alpha=1,2,3"))


def test_sweep_folder_rejects_dropped_runs(tmp_path):
    write_record(tmp_path, _record("alpha=1,2"))
    with pytest.raises(ConfigError, match="contains runs that this grid does not produce: align_uniform-alpha2"):
        check_folder(tmp_path, _record("alpha=1"))
    with pytest.raises(ConfigError, match="the recorded grid is objective.name=align_uniform objective.alpha=1.0,2.0"):
        check_folder(tmp_path, _record("alpha=1,2", "t=1,2"))


def test_sweep_folder_rejects_changed_base_recipe(tmp_path):
    write_record(tmp_path, _record("alpha=1,2"))
    with pytest.raises(ConfigError, match=r"different base recipe \(changed: training.max_steps\)"):
        check_folder(tmp_path, _record("alpha=1,2", overrides=["training.max_steps=10"]))


def test_sweep_folder_rejects_other_files(tmp_path):
    (tmp_path / "metrics.json").write_text("{}")
    with pytest.raises(ConfigError, match="is not empty and has no sweep.json"):
        check_folder(tmp_path, _record("alpha=1,2"))


def test_dry_run_lists_runs_and_writes_nothing(tmp_path, capsys):
    folder = tmp_path / "sweep"
    status = main(["sweep", str(SWEEP_RECIPE), "--grid", "alpha=1,2", "--output-dir", str(folder), "--dry-run"])
    out = capsys.readouterr().out
    assert status == 0
    assert f"new       {folder / 'align_uniform-alpha2'}" in out
    assert "2 runs: 0 finished, 2 to train or resume." in out
    assert not folder.exists()


def test_print_commands_records_sweep(tmp_path, capsys):
    folder = tmp_path / "sweep"
    arguments = ["sweep", str(SWEEP_RECIPE), "--grid", "lambda=0.5,1", "--set", "training.max_steps=20"]
    status = main([*arguments, "--output-dir", str(folder), "--print-commands", "accelerate"])
    lines = capsys.readouterr().out.splitlines()
    assert status == 0
    assert lines == [
        f"accelerate launch -m isotune.cli train {SWEEP_RECIPE} --set training.max_steps=20 "
        f"--set objective.lambda={value} --output-dir {folder / f'align_uniform-lambda{value}'}"
        for value in ("0.5", "1")
    ]
    record = json.loads((folder / "sweep.json").read_text(encoding="utf-8"))
    assert record["grid"]["objective.lambda"] == [0.5, 1.0]
    assert record["overrides"] == ["training.max_steps=20"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--grid", "alpha=1,2", str(SWEEP_RECIPE)], f"--grid took '{SWEEP_RECIPE}' as a grid item."),
        (["--grid", "alpha=1,2"], "isotune sweep needs a base recipe. Put the recipe before the options"),
    ],
)
def test_recipe_after_grid_is_explained(tmp_path, capsys, arguments, message):
    status = main(["sweep", *arguments, "--output-dir", str(tmp_path / "sweep"), "--dry-run"])
    assert status == 2
    assert message in capsys.readouterr().err


def test_varying_precision_in_one_process_is_rejected(tmp_path, capsys):
    arguments = ["sweep", str(SWEEP_RECIPE), "--grid", "training.precision=no,bf16", "--output-dir", str(tmp_path)]
    status = main(arguments)
    assert status == 2
    assert "training.precision varies over the sweep" in capsys.readouterr().err
    assert not (tmp_path / "sweep.json").exists()


def test_run_folder_of_other_recipe_is_rejected(tmp_path, capsys):
    write_record(tmp_path, _record("alpha=1,2"))
    run_dir = tmp_path / "align_uniform-alpha1"
    run_dir.mkdir()
    (run_dir / "recipe.yaml").write_text(SWEEP_RECIPE.read_text(encoding="utf-8"), encoding="utf-8")
    status = main(["sweep", str(SWEEP_RECIPE), "--grid", "alpha=1,2", "--output-dir", str(tmp_path), "--dry-run"])
    err = capsys.readouterr().err
    assert status == 2
    assert f"Sweep run folder {run_dir} contains a run of another recipe (changed: objective.alpha)" in err


def _run_result(name: str, model: str, sts: float, base_sts: float):
    from isotune.sweep.grid import SweepRun
    from isotune.sweep.report import RunResult

    def results(score: float) -> dict:
        return {"stsb-dev": {"spearman": {"all": score}}, "geometry": {"alignment": 0.3, "uniformity": -2.0}}

    run = SweepRun(name, {"objective.name": "align_uniform", "model.name": model}, (f"model.name={model}",))
    return RunResult(run, results(base_sts), results(sts), 4, 1.0, base_key=model)


def test_sweep_table_base_row_per_model(tmp_path):
    from isotune.sweep.report import write_sweep_outputs

    results = [_run_result("run-a", "a", 60.0, 50.0), _run_result("run-b", "b", 70.0, 40.0)]
    record = {"recipe": "recipe.yaml", "overrides": [], "grid": {"model.name": ["a", "b"]}, "runs": []}
    report = write_sweep_outputs(tmp_path, record, results, {}).read_text(encoding="utf-8")
    assert "| - | base model of run-a | - | 50.00 |" in report
    assert "| - | base model of run-b | - | 40.00 |" in report
    assert "base model (before training)" not in report

    shared = [_run_result("run-a", "a", 60.0, 50.0), _run_result("run-a2", "a", 65.0, 50.0)]
    report = write_sweep_outputs(tmp_path, record, shared, {}).read_text(encoding="utf-8")
    assert "| - | base model (before training) | - | 50.00 |" in report
    assert "base model of" not in report


# --- Real tiny sweeps -------------------------------------------------------------------------------------


def _tiny_recipe_file(tiny_bert: Path, corpus: Path, folder: Path, *extra: str) -> Path:
    """Write a recipe for 4-step runs of the tiny BERT, evaluated and checkpointed every 2 steps."""
    recipe = tiny_recipe(
        tiny_bert,
        corpus,
        folder / "unused",
        "training.max_steps=4",
        "training.eval_every=2",
        "training.checkpoint_every=2",
        *extra,
    )
    path = folder / "recipe.yaml"
    path.write_text(recipe.to_yaml(), encoding="utf-8")
    return path


def _mtimes(folder: Path) -> dict[str, int]:
    return {path.parents[1].name: path.stat().st_mtime_ns for path in folder.glob("*/model/model.safetensors")}


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        ("training.freeze_layers=0,2", "Sweep run align_uniform-freeze_layers2 is invalid: Invalid training.freeze"),
        ("model.max_seq_length=32,100", "model.max_seq_length=100 exceeds the 64 positions"),
        ("model.name={tiny_bert},{missing}", "Model '{missing}' not found"),
    ],
)
def test_model_errors_stop_sweep_before_training(tiny_bert, corpus, tmp_path, capsys, grid, message):
    missing = tmp_path / "no-such-model"
    recipe = _tiny_recipe_file(tiny_bert, corpus, tmp_path)
    folder = tmp_path / "sweep"
    grid = grid.format(tiny_bert=tiny_bert, missing=missing)
    status = main(["sweep", str(recipe), "--grid", grid, "--output-dir", str(folder)])
    assert status == 2
    assert message.format(missing=missing) in capsys.readouterr().err
    assert not folder.exists()


@pytest.mark.slow
def test_tiny_sweep_writes_outputs_then_skips_and_resumes(tiny_bert, corpus, tmp_path, capsys, caplog):
    caplog.set_level(logging.INFO)
    recipe = _tiny_recipe_file(tiny_bert, corpus, tmp_path)
    folder = tmp_path / "sweep"
    arguments = ["sweep", str(recipe), "--grid", "lambda=0.5,1", "--output-dir", str(folder)]
    assert main(arguments) == 0
    names = ["align_uniform-lambda0.5", "align_uniform-lambda1"]
    for name in names:
        metrics = json.loads((folder / name / "metrics.json").read_text(encoding="utf-8"))
        assert "after" in metrics
    # The base model is evaluated once; the second run takes the first run's "before" results.
    messages = [record.getMessage() for record in caplog.records]
    assert sum(message.startswith("Evaluating the base model") for message in messages) == 1
    assert sum(message.startswith("Base model results taken from an earlier run") for message in messages) == 1
    befores = [json.loads((folder / name / "metrics.json").read_text(encoding="utf-8"))["before"] for name in names]
    assert befores[0] == befores[1]
    report = (folder / "sweep.md").read_text(encoding="utf-8")
    assert "| # | run | objective.lambda | stsb-dev | STS avg | alignment | uniformity | avg cos |" in report
    assert "| 1 | align_uniform-lambda0.5 | 0.5 |" in report
    assert "| - | base model (before training) | - |" in report
    assert "only 2 rows have both alignment and STS avg" in report
    with open(folder / "sweep.csv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["run"] for row in rows] == names
    assert [row["objective.lambda"] for row in rows] == ["0.5", "1.0"]
    assert all(float(row["minutes"]) > 0 for row in rows)
    for plot in ("plane-sts-avg.png", "accuracy-vs-objective.lambda.png"):
        assert (folder / "plots" / plot).is_file(), plot
        assert f"plots/{plot}" in report

    # A second invocation trains nothing: both runs are finished.
    before = _mtimes(folder)
    caplog.clear()
    assert main(arguments) == 0
    assert _mtimes(folder) == before
    skipped = [record.getMessage() for record in caplog.records if "skipped, finished before" in record.message]
    assert len(skipped) == 2
    assert not [record for record in caplog.records if record.getMessage().startswith("Evaluating the base model")]

    # Roll the second run back to its step-2 checkpoint, as if it had died at step 3: it resumes. Its model/
    # stays, because it contains the best model so far (step 2), as it would after such a crash.
    assert len(before) == 2
    run_dir = folder / names[1]
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    del metrics["after"]
    (run_dir / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    shutil.rmtree(run_dir / "checkpoints" / "step-0000004")
    caplog.clear()
    assert main(arguments) == 0
    messages = [record.getMessage() for record in caplog.records]
    assert any("Sweep run 1 of 2, align_uniform-lambda0.5: skipped" in message for message in messages)
    assert any("Sweep run 2 of 2, align_uniform-lambda1: resuming" in message for message in messages)
    assert any(message.startswith("Resumed from") and "step-0000002 at step 2" in message for message in messages)
    resumed = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    assert "after" in resumed
    assert [entry["step"] for entry in resumed["history"]] == [1, 2, 3, 4]
    assert _mtimes(folder)[names[0]] == before[names[0]]

    # A grid that drops a recorded run is rejected before any work.
    status = main(["sweep", str(recipe), "--grid", "lambda=1", "--output-dir", str(folder)])
    assert status == 2
    assert "contains runs that this grid does not produce: align_uniform-lambda0.5" in capsys.readouterr().err


@pytest.fixture
def long_input_nan_bert(tiny_bert, tmp_path) -> Path:
    """A copy of the tiny BERT whose position embeddings from position 16 on are NaN.

    Its embeddings are finite for texts of at most 16 tokens (every STS sentence of the `corpus` fixture)
    and NaN for longer ones.
    """
    broken = tmp_path / "long-input-nan-bert"
    shutil.copytree(tiny_bert, broken)
    weights = load_file(str(broken / "model.safetensors"))
    key = next(name for name in weights if name.endswith("position_embeddings.weight"))
    weights[key][16:] = float("nan")
    save_file(weights, str(broken / "model.safetensors"))
    return broken


@pytest.mark.slow
def test_stopped_run_does_not_end_sweep(tiny_bert, long_input_nan_bert, corpus, tmp_path, capsys):
    # Every book sentence is over 20 tokens long, so the broken model's training loss is NaN at step 1,
    # while its evaluation on STS-B dev (sentences of at most 12 tokens) before training is finite.
    books = tmp_path / "books"
    books.mkdir()
    words = "the dog runs in the park with a small red ball and a big blue book today at night and morning"
    sentences = [f"{word.capitalize()} {words}." for word in ("dog", "cat", "man", "child") * 20]
    (books / "one.txt").write_text(" ".join(sentences), encoding="utf-8")
    recipe = _tiny_recipe_file(tiny_bert, corpus, tmp_path, f"data.path={books}", "evaluation.tasks=[stsb-dev]")
    folder = tmp_path / "sweep"
    grid = f"model.name={long_input_nan_bert},{tiny_bert}"
    status = main(["sweep", str(recipe), "--grid", grid, "--output-dir", str(folder)])
    assert status == 1
    report = (folder / "sweep.md").read_text(encoding="utf-8")
    broken_run = next(path.name for path in folder.iterdir() if "long-input-nan-bert" in path.name)
    assert f"- {broken_run}: Non-finite loss" in report
    finished = [path.parent.name for path in folder.glob("*/metrics.json") if "after" in json.loads(path.read_text())]
    assert len(finished) == 1
    assert "long-input-nan-bert" not in finished[0]
