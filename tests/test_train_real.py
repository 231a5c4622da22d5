"""A few real training steps of the bundled all-MiniLM-L6-v2 on the real books."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from sentence_transformers import SentenceTransformer

from isotune.recipe import load_recipe
from isotune.training.run import run_training

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "quickstart.yaml"


@pytest.mark.slow
def test_quickstart_recipe_runs_a_few_steps(shared_data, tmp_path):
    recipe = load_recipe(
        RECIPE,
        [
            f"data.path={shared_data / 'books'}",
            f"evaluation.data_root={shared_data}",
            "evaluation.tasks=[stsb-dev, geometry]",
            "evaluation.geometry_sentences=300",
            "training.max_steps=3",
            "training.batch_size=16",
            "training.eval_every=0",
            "training.checkpoint_every=3",
            f"output_dir={tmp_path / 'run'}",
        ],
    )
    metrics = run_training(recipe)

    assert len(metrics["history"]) == 3
    assert all(math.isfinite(entry["loss"]) for entry in metrics["history"])
    before = metrics["before"]["stsb-dev"]["spearman"]["all"]
    after = metrics["after"]["stsb-dev"]["spearman"]["all"]
    assert before == pytest.approx(86.72, abs=0.01)
    assert abs(after - before) < 2.0
    model = SentenceTransformer(str(tmp_path / "run" / "model"), device="cpu")
    assert model.encode(["It was a dark and stormy night."]).shape == (1, 384)
    assert (tmp_path / "run" / "checkpoints" / "step-0000003").is_dir()
