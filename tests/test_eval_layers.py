"""Tests of layer-wise geometry (`isotune eval --layers`) with the tiny random BERT and, when slow, MiniLM."""

import json
import logging
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import WORDS, tiny_recipe
from isotune.cli import main
from isotune.encoder import build_encoder, load_encoder, make_embedder, save_encoder
from isotune.errors import ConfigError, DataError
from isotune.evaluation.geometry import evaluate_geometry, sample_sentences
from isotune.evaluation.layers import evaluate_layers, mean_pooled_hidden_states
from isotune.recipe import ModelConfig


def _texts(count: int, seed: int = 1) -> list[str]:
    """Distinct sentences of 1 to 20 words, so that batches sorted by length pad differently."""
    rng = random.Random(seed)
    texts = {" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 20))) for _ in range(count)}
    return sorted(texts)


def _reference_states(folder: Path, texts: list[str]) -> list[np.ndarray]:
    """Mean-pooled hidden states per layer from transformers alone, one unpadded sentence at a time."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    per_text = []
    with torch.no_grad():
        for text in texts:
            inputs = tokenizer(text, return_tensors="pt", truncation=True, max_length=32)
            hidden_states = model(**inputs, output_hidden_states=True).hidden_states
            per_text.append([state[0].mean(dim=0).numpy().astype(np.float64) for state in hidden_states])
    return [np.stack([states[layer] for states in per_text]) for layer in range(len(per_text[0]))]


def _reference_measures(states: np.ndarray) -> dict[str, float]:
    """Average cosine, uniformity (t = 2) and effective rank by their definitions, in float64."""
    unit = states / np.linalg.norm(states, axis=1, keepdims=True)
    cosines = unit @ unit.T
    upper = np.triu_indices(len(unit), k=1)
    singular = np.linalg.svd(unit, compute_uv=False)
    shares = singular / singular.sum()
    shares = shares[shares > 0]
    return {
        "average_cosine": float(cosines[upper].mean()),
        "uniformity": float(np.log(np.exp(-2.0 * (2.0 - 2.0 * cosines[upper])).mean())),
        "effective_rank": float(np.exp(-(shares * np.log(shares)).sum())),
    }


@pytest.fixture(scope="module")
def tiny_encoder(tiny_bert: Path):
    return build_encoder(ModelConfig(name=str(tiny_bert), max_seq_length=32))


@pytest.fixture(scope="module")
def reference(tiny_bert: Path) -> tuple[list[str], list[np.ndarray]]:
    """Texts and their reference states per layer, computed once because the loop runs one text at a time."""
    texts = _texts(30)
    return texts, _reference_states(tiny_bert, texts)


def test_pooled_states_match_transformers(tiny_encoder, reference):
    texts, expected_states = reference
    states = mean_pooled_hidden_states(tiny_encoder, texts, batch_size=4)
    assert states.shape == (3, len(texts), 32)
    for layer, expected in enumerate(expected_states):
        np.testing.assert_allclose(states[layer], expected, atol=1e-5, err_msg=f"layer {layer}")


def test_layer_measures_match_definitions(tiny_encoder, reference):
    texts, expected_states = reference
    result = evaluate_layers(tiny_encoder, texts, batch_size=8)
    assert result["num_layers"] == 2
    assert result["num_sentences"] == len(texts)
    assert [layer["layer"] for layer in result["layers"]] == [0, 1, 2]
    for layer, states in zip(result["layers"], expected_states, strict=True):
        for key, expected in _reference_measures(states).items():
            assert layer[key] == pytest.approx(expected, abs=1e-4), f"layer {layer['layer']} {key}"


def test_last_layer_matches_encoder_geometry(tiny_encoder):
    texts = _texts(60)
    layers = evaluate_layers(tiny_encoder, texts)["layers"]
    geometry = evaluate_geometry(
        make_embedder(tiny_encoder), positive_pairs=[(texts[0], texts[1])], sentences=texts, num_resamples=0
    )
    assert geometry["num_sentences"] == len(texts)
    for key in ("average_cosine", "uniformity", "effective_rank"):
        assert layers[-1][key] == pytest.approx(geometry[key], abs=1e-4), key


def test_duplicates_are_dropped(tiny_encoder):
    texts = _texts(10)
    assert evaluate_layers(tiny_encoder, texts + texts[:4]) == evaluate_layers(tiny_encoder, texts)


def test_too_few_sentences_raise(tiny_encoder):
    with pytest.raises(DataError, match="at least 2 distinct sentences, got 1"):
        evaluate_layers(tiny_encoder, ["the dog runs", "the dog runs"])


def test_non_transformer_model_raises():
    from sentence_transformers import SentenceTransformer

    from isotune.encoder import Pooling

    model = SentenceTransformer(modules=[Pooling(8)], device="cpu")
    with pytest.raises(ConfigError, match="starts with Pooling"):
        evaluate_layers(model, ["the dog runs", "a cat sings"])


@pytest.fixture(scope="module")
def layer_run(tiny_bert: Path, corpus: Path, tmp_path_factory) -> Path:
    """A run folder: recipe.yaml naming the tiny BERT, model/ with shifted weights, and a checkpoint."""
    from accelerate import Accelerator

    run_dir = tmp_path_factory.mktemp("layer-run")
    recipe = tiny_recipe(tiny_bert, corpus, run_dir)
    (run_dir / "recipe.yaml").write_text(recipe.to_yaml(), encoding="utf-8")
    model = build_encoder(recipe.model)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.02 * torch.randn_like(parameter))
    save_encoder(model, run_dir / "model")
    accelerator = Accelerator(cpu=True)
    accelerator.prepare(model)
    accelerator.save_state(str(run_dir / "checkpoints" / "step-0000004"))
    return run_dir


def _eval(arguments: list[str], corpus: Path, capsys) -> tuple[int, str, str]:
    status = main(["eval", *arguments, "--data-root", str(corpus), "--quiet", "--bootstrap", "0"])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _stsb_dev_sample(corpus: Path) -> list[str]:
    from isotune.evaluation.tasks import corpus_texts

    return sample_sentences(corpus_texts("stsb-dev", corpus), 2000, 0)


def test_run_folder_writes_table_json_plot(layer_run, tiny_bert, corpus, tmp_path, capsys):
    output, markdown, plots = tmp_path / "eval.json", tmp_path / "eval.md", tmp_path / "plots"
    arguments = [str(layer_run), "--layers", "--output", str(output), "--markdown", str(markdown)]
    status, out, err = _eval([*arguments, "--plots", str(plots)], corpus, capsys)
    assert status == 0, err

    document = json.loads(output.read_text())
    assert document["tasks"] == []
    assert document["variants"] == []
    section = document["layers"]
    assert section["sentences"] == {"task": "stsb-dev", "num_sentences": 80, "seed": 0}
    assert [model["label"] for model in section["models"]] == ["before", "after"]
    assert [model["model"] for model in section["models"]] == [str(tiny_bert), str(layer_run)]
    before, after = section["models"]
    sentences = _stsb_dev_sample(corpus)
    base = build_encoder(ModelConfig(str(tiny_bert), max_seq_length=32))
    assert before["layers"] == evaluate_layers(base, sentences)["layers"]
    assert after["layers"] == evaluate_layers(load_encoder(str(layer_run / "model")), sentences)["layers"]
    assert after["layers"][-1]["average_cosine"] != pytest.approx(before["layers"][-1]["average_cosine"], abs=1e-4)

    table = markdown.read_text()
    assert table in out
    assert "80 sentences of stsb-dev (before = " in table
    lines = table.splitlines()
    header = lines.index(next(line for line in lines if line.startswith("| layer |")))
    assert lines[header] == (
        "| layer | avg cos before | avg cos after | uniform before | uniform after "
        "| eff. rank before | eff. rank after |"
    )
    assert [line.split(" | ")[0] for line in lines[header + 2 :]] == ["| 0", "| 1", "| 2"]
    assert (plots / "layers.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(path.name for path in plots.iterdir()) == ["layers.png"]


def test_checkpoint_compares_with_recipe_model(layer_run, corpus, tmp_path, capsys):
    output = tmp_path / "eval.json"
    checkpoint = layer_run / "checkpoints" / "step-0000004"
    status, _, err = _eval(
        [str(checkpoint), "--layers", "--layers-sentences", "20", "--output", str(output)], corpus, capsys
    )
    assert status == 0, err
    section = json.loads(output.read_text())["layers"]
    assert [model["label"] for model in section["models"]] == ["before", "after"]
    assert section["sentences"]["num_sentences"] == 20


def test_layers_with_geometry_task_agree(layer_run, corpus, tmp_path, capsys):
    output = tmp_path / "eval.json"
    model_folder = layer_run / "model"
    status, _, err = _eval(
        [str(model_folder), "--tasks", "geometry", "--layers", "--output", str(output)], corpus, capsys
    )
    assert status == 0, err
    document = json.loads(output.read_text())
    assert document["tasks"] == ["geometry"]
    assert [model["label"] for model in document["layers"]["models"]] == ["model"]
    geometry = document["variants"][0]["results"]["geometry"]
    last = document["layers"]["models"][0]["layers"][-1]
    for key in ("average_cosine", "uniformity", "effective_rank"):
        assert last[key] == pytest.approx(geometry[key], abs=1e-4), key


def test_layers_base_option(layer_run, tiny_bert, corpus, tmp_path, capsys):
    base = save_encoder(build_encoder(ModelConfig(str(tiny_bert), max_seq_length=32)), tmp_path / "base")
    output = tmp_path / "eval.json"
    arguments = [str(layer_run / "model"), "--layers", "--layers-base", str(base), "--output", str(output)]
    status, _, err = _eval(arguments, corpus, capsys)
    assert status == 0, err
    models = json.loads(output.read_text())["layers"]["models"]
    assert [model["label"] for model in models] == ["base", "model"]
    assert [model["model"] for model in models] == [str(base), str(layer_run / "model")]
    assert models[0]["layers"] == evaluate_layers(load_encoder(str(base)), _stsb_dev_sample(corpus))["layers"]


def test_layers_base_plain_transformers_folder(layer_run, tiny_bert, corpus, tmp_path, capsys):
    # The tiny BERT folder has no modules.json and only 64 positions, fewer than the usual limit of 512.
    output = tmp_path / "eval.json"
    arguments = [str(layer_run / "model"), "--layers", "--layers-base", str(tiny_bert), "--output", str(output)]
    status, _, err = _eval(arguments, corpus, capsys)
    assert status == 0, err
    models = json.loads(output.read_text())["layers"]["models"]
    assert [model["model"] for model in models] == [str(tiny_bert), str(layer_run / "model")]
    base = build_encoder(ModelConfig(str(tiny_bert), max_seq_length=64))
    assert models[0]["layers"] == evaluate_layers(base, _stsb_dev_sample(corpus))["layers"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--layers", "--layers-base", "/no/such/model"], "Model '/no/such/model' not found"),
        (["--layers-base", "all-MiniLM-L6-v2"], "--layers-base only applies to --layers; add --layers or drop it."),
        (["--layers", "--layers-sentences", "1"], "--layers-sentences must be >= 2, got 1"),
        (["--layers", "--postprocess", "abtt:1"], "--postprocess applies to tasks"),
        (["--layers", "--geometry-pairs", "stsb-test"], "Data for evaluation task 'stsb-test' not found"),
        (["--layers", "--geometry-pairs", "mr"], "--geometry-pairs 'mr' is not an STS task"),
    ],
)
def test_bad_layer_input_fails(layer_run, corpus, capsys, arguments, message):
    status, _, err = _eval([str(layer_run), *arguments], corpus, capsys)
    assert status == 2
    assert message in err


def test_missing_base_model_fails_before_tasks(layer_run, tiny_bert, corpus, tmp_path, capsys, caplog):
    caplog.set_level(logging.INFO)
    run_dir = tmp_path / "run"
    shutil.copytree(layer_run, run_dir)
    recipe = (run_dir / "recipe.yaml").read_text(encoding="utf-8")
    assert f"name: {tiny_bert}\n" in recipe
    missing = tmp_path / "moved-model"
    (run_dir / "recipe.yaml").write_text(recipe.replace(f"name: {tiny_bert}\n", f"name: {missing}\n"), encoding="utf-8")
    status, _, err = _eval([str(run_dir), "--layers", "--tasks", "stsb-dev"], corpus, capsys)
    assert status == 2
    assert "The run's base model (model.name in recipe.yaml) failed to load" in err
    assert not [record for record in caplog.records if record.getMessage().startswith("Scoring")]


def test_task_without_two_sentences_fails(layer_run, tmp_path, capsys):
    row = "main-captions\tMSRvid\t2012test\t0001\t4.5\tThe dog runs.\tThe dog runs."
    (tmp_path / "sts" / "stsbenchmark").mkdir(parents=True)
    (tmp_path / "sts" / "stsbenchmark" / "sts-dev.csv").write_text(row + "\n", encoding="utf-8")
    status, _, err = _eval([str(layer_run), "--layers"], tmp_path, capsys)
    assert status == 2
    assert "gives 1 distinct sentence(s); --layers needs at least 2" in err


@pytest.mark.slow
def test_minilm_layers_on_books(shared_data):
    from isotune.data.books import pairs_from_books
    from isotune.encoder import load_encoder

    pairs = pairs_from_books(shared_data / "books" / "austen-emma.txt").pairs
    sentences = sample_sentences([first for first, _ in pairs], 200, 0)
    result = evaluate_layers(load_encoder("sentence-transformers/all-MiniLM-L6-v2"), sentences, batch_size=64)
    assert result["num_sentences"] == 200
    assert len(result["layers"]) == 7
    assert result["layers"][-1]["average_cosine"] > 0
