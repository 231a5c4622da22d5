"""End-to-end training of a tiny random BERT: loss falls, the run folder is complete, resume is exact."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from sentence_transformers import SentenceTransformer

from conftest import tiny_recipe
from isotune.cli import main
from isotune.encoder import build_encoder
from isotune.errors import ConfigError, TrainingError
from isotune.training.loop import make_accelerator, train
from isotune.training.run import load_training_pairs, run_training


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "model" / "model.safetensors"))


def test_training_lowers_loss_and_saves_run(tiny_bert, corpus, tmp_path):
    run_dir = tmp_path / "run"
    metrics = run_training(tiny_recipe(tiny_bert, corpus, run_dir, "training.keep_best=false"))
    losses = [entry["loss"] for entry in metrics["history"]]
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    for name in ("recipe.yaml", "metrics.json", "report.md", "run.json"):
        assert (run_dir / name).is_file()
    saved = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    assert set(saved["before"]) == {"stsb-dev", "geometry"}
    assert set(saved["after"]) == {"stsb-dev", "geometry"}
    assert saved["saved_step"] == 12
    info = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    assert info["precision"] == "no"
    report = (run_dir / "report.md").read_text(encoding="utf-8")
    assert "| before |" in report
    for plot in ("alignment-uniformity.png", "cosine-before.png", "cosine-after.png"):
        assert (run_dir / "plots" / plot).is_file(), plot
        assert f"plots/{plot}" in report


def test_saved_model_matches_trained_weights(tiny_bert, corpus, tmp_path):
    run_dir = tmp_path / "run"
    run_training(tiny_recipe(tiny_bert, corpus, run_dir, "training.keep_best=false", "training.max_steps=4"))
    model = SentenceTransformer(str(run_dir / "model"), device="cpu")
    embeddings = model.encode(["the dog runs", "a child reads a book"])
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    checkpoint = load_file(str(run_dir / "checkpoints" / "step-0000004" / "model.safetensors"))
    saved = _weights(run_dir)
    name = next(key for key in saved if key.endswith("word_embeddings.weight"))
    matching = next(key for key in checkpoint if key.endswith("word_embeddings.weight"))
    assert torch.equal(saved[name], checkpoint[matching])


def test_keep_best_saves_best_dev_step(tiny_bert, corpus, tmp_path):
    run_dir = tmp_path / "run"
    metrics = run_training(tiny_recipe(tiny_bert, corpus, run_dir))
    scored = [entry for entry in metrics["history"] if "stsb_dev" in entry]
    best = max(scored, key=lambda entry: entry["stsb_dev"])
    assert [entry["step"] for entry in scored] == [4, 8, 12]
    assert metrics["saved_step"] == best["step"]
    assert metrics["after"]["stsb-dev"]["spearman"]["all"] == pytest.approx(best["stsb_dev"], abs=1e-6)


def test_dev_evaluations_measure_geometry(tiny_bert, corpus, tmp_path):
    metrics = run_training(tiny_recipe(tiny_bert, corpus, tmp_path / "run"))
    scored = [entry for entry in metrics["history"] if "stsb_dev" in entry]
    # The same sentences and measures as the after results: the saved step's numbers match them.
    saved = next(entry for entry in scored if entry["step"] == metrics["saved_step"])
    assert metrics["after"]["geometry"]["average_cosine"] == pytest.approx(saved["average_cosine"], abs=1e-5)
    assert metrics["after"]["geometry"]["uniformity"] == pytest.approx(saved["uniformity"], abs=1e-5)


def test_keep_best_prefers_cosine_bound(tiny_bert, corpus, tmp_path):
    from isotune.training.checkpoint import TrainerState
    from isotune.training.loop import _evaluate_and_keep

    recipe = tiny_recipe(tiny_bert, corpus, tmp_path / "run", "training.keep_best_max_average_cosine=0.1")
    model = build_encoder(recipe.model)
    # (STS-B dev, average cosine) at steps 1-5, and whether each step becomes the saved one.
    script = [(50.0, 0.3, True), (60.0, 0.2, True), (40.0, 0.05, True), (45.0, 0.2, False), (42.0, 0.08, True)]
    state = TrainerState()
    for step, (score, cosine, saved) in enumerate(script, start=1):
        state.step = step
        state.history.append({"step": step})
        scorer = lambda _model, score=score, cosine=cosine: {  # noqa: E731
            "stsb_dev": score,
            "average_cosine": cosine,
            "uniformity": -3.0,
        }
        _evaluate_and_keep(recipe, model, tmp_path / "run", state, scorer, last=step == len(script))
        assert (state.best_step == step) == saved, step
    assert (state.best_step, state.best_score, state.best_qualified) == (5, 42.0, True)


def test_resume_continues_exactly(tiny_bert, corpus, tmp_path):
    straight = tmp_path / "straight"
    run_training(tiny_recipe(tiny_bert, corpus, straight, "training.keep_best=false"))

    resumed = tmp_path / "resumed"
    recipe = tiny_recipe(tiny_bert, corpus, resumed, "training.keep_best=false", "training.keep_checkpoints=5")
    run_training(recipe)
    # Roll the run back to its step-4 checkpoint, as if it had died at step 5.
    for later in ("step-0000008", "step-0000012"):
        shutil.rmtree(resumed / "checkpoints" / later)
    shutil.rmtree(resumed / "model")
    (resumed / "checkpoints" / "step-0000004" / "notes-by-user.txt").write_text("ignored", encoding="utf-8")
    run_training(recipe, resume=True)

    assert (resumed / "plots" / "cosine-before.png").is_file()
    expected, actual = _weights(straight), _weights(resumed)
    assert expected.keys() == actual.keys()
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key


def test_resume_with_other_recipe_is_rejected(tiny_bert, corpus, tmp_path):
    run_dir = tmp_path / "run"
    run_training(tiny_recipe(tiny_bert, corpus, run_dir, "training.max_steps=4", "training.eval_every=0"))
    other = tiny_recipe(tiny_bert, corpus, run_dir, "training.max_steps=4", "objective.lambda=2")
    with pytest.raises(ConfigError, match="different recipe"):
        run_training(other, resume=True)


def test_output_dir_with_another_run_is_rejected(tiny_bert, corpus, tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "model").mkdir(parents=True)
    (run_dir / "metrics.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ConfigError, match="not empty"):
        run_training(tiny_recipe(tiny_bert, corpus, run_dir))


@pytest.fixture()
def nan_bert(tiny_bert, tmp_path) -> Path:
    """A copy of the tiny BERT whose word embeddings are all NaN, so every loss is NaN."""
    broken = tmp_path / "broken-bert"
    shutil.copytree(tiny_bert, broken)
    weights = load_file(str(broken / "model.safetensors"))
    key = next(name for name in weights if name.endswith("word_embeddings.weight"))
    weights[key] = torch.full_like(weights[key], float("nan"))
    save_file(weights, str(broken / "model.safetensors"))
    return broken


def test_nan_loss_stops_run_without_saving(nan_bert, corpus, tmp_path):
    run_dir = tmp_path / "run"
    recipe = tiny_recipe(nan_bert, corpus, run_dir)
    pairs = load_training_pairs(recipe.data).pairs
    with pytest.raises(TrainingError, match="step 1, micro batch 0, pair rows"):
        train(recipe, make_accelerator(recipe), build_encoder(recipe.model), pairs, run_dir, fingerprint="test")
    assert not (run_dir / "model").exists()
    assert not (run_dir / "checkpoints").exists()


def test_nan_loss_skipped_when_configured(nan_bert, corpus, tmp_path):
    recipe = tiny_recipe(nan_bert, corpus, tmp_path / "run", "training.on_nonfinite=skip", "training.max_steps=3")
    pairs = load_training_pairs(recipe.data).pairs
    state = train(
        recipe,
        make_accelerator(recipe),
        build_encoder(recipe.model),
        pairs,
        tmp_path / "run",
        fingerprint="t",
    )
    assert state.skipped_batches == 3
    assert len(state.history) == 3
    assert all(math.isnan(entry["loss"]) for entry in state.history)


def test_cli_reports_invalid_value(tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("objective:\n  t: -1\n", encoding="utf-8")
    assert main(["train", str(recipe), "--output-dir", str(tmp_path / "run")]) == 2
    assert "objective.t must be > 0" in capsys.readouterr().err


def test_cli_trains_and_evaluates(tiny_bert, corpus, tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(tiny_recipe(tiny_bert, corpus, tmp_path / "run", "training.max_steps=2").to_yaml(), "utf-8")
    assert main(["train", str(recipe)]) == 0
    assert "| after |" in capsys.readouterr().out
    output = tmp_path / "eval.json"
    code = main(
        [
            "eval",
            str(tmp_path / "run"),
            "--tasks",
            "stsb-dev",
            "--data-root",
            str(corpus),
            "--output",
            str(output),
        ]
    )
    assert code == 0
    assert "stsb-dev" in json.loads(output.read_text(encoding="utf-8"))["tasks"]


def test_fewer_pairs_than_batch_fails_before_evaluation(tiny_bert, corpus, tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(ConfigError, match="fewer than one batch of 4096"):
        run_training(tiny_recipe(tiny_bert, corpus, run_dir, "training.batch_size=4096"))
    assert not (run_dir / "metrics.json").exists()


def test_unknown_evaluation_task_fails_before_work(tiny_bert, corpus, tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(ConfigError, match="stsb-dve"):
        run_training(tiny_recipe(tiny_bert, corpus, run_dir, "evaluation.tasks=[stsb-dve]"))
    assert not run_dir.exists()


def test_output_dir_that_is_a_file_is_rejected(tiny_bert, corpus, tmp_path):
    blocker = tmp_path / "run"
    blocker.write_text("a file", encoding="utf-8")
    with pytest.raises(ConfigError, match="is a file"):
        run_training(tiny_recipe(tiny_bert, corpus, blocker))


def test_folder_of_run_that_never_trained_is_reused(tiny_bert, corpus, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "recipe.yaml").write_text("training:\n  batch_size: 4096\n", encoding="utf-8")
    (run_dir / "metrics.json").write_text("{}", encoding="utf-8")
    metrics = run_training(tiny_recipe(tiny_bert, corpus, run_dir, "training.max_steps=2"))
    assert len(metrics["history"]) == 2


def test_resume_past_max_steps_is_rejected(tiny_bert, corpus, tmp_path):
    run_dir = tmp_path / "run"
    run_training(tiny_recipe(tiny_bert, corpus, run_dir, "training.max_steps=4", "training.eval_every=0"))
    shorter = tiny_recipe(tiny_bert, corpus, run_dir, "training.max_steps=2", "training.eval_every=0")
    with pytest.raises(ConfigError, match="past training.max_steps=2"):
        run_training(shorter, resume=True, allow_other_recipe=True)
