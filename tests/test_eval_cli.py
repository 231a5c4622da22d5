"""Tests of `isotune eval` and `isotune compare` with the tiny random BERT on the fixture data root."""

import json
from pathlib import Path

import numpy as np
import pytest

from isotune.cli import main
from isotune.evaluation.results import SCHEMA

FIXTURE_ROOT = Path(__file__).resolve().parents[1] / "data" / "fixtures" / "eval" / "root"


@pytest.fixture(scope="module")
def tiny_run(tiny_bert: Path, tmp_path_factory) -> Path:
    """A run folder with model/ (the tiny BERT, mean pooling) and a checkpoint whose weights differ."""
    import torch
    from accelerate import Accelerator

    from isotune.encoder import build_encoder, save_encoder
    from isotune.recipe import ModelConfig

    run_dir = tmp_path_factory.mktemp("run")
    model = build_encoder(ModelConfig(name=str(tiny_bert), max_seq_length=32))
    save_encoder(model, run_dir / "model")
    accelerator = Accelerator(cpu=True)
    prepared = accelerator.prepare(model)
    with torch.no_grad():
        for parameter in prepared.parameters():
            parameter.add_(0.05)
    accelerator.save_state(str(run_dir / "checkpoints" / "step-0000002"))
    return run_dir


def _eval(arguments: list[str], capsys) -> tuple[int, str, str]:
    status = main(["eval", *arguments, "--data-root", str(FIXTURE_ROOT), "--quiet", "--bootstrap", "20"])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_eval_writes_json_tables_and_plots(tiny_run, tmp_path, capsys):
    output = tmp_path / "eval.json"
    status, out, err = _eval(
        [
            str(tiny_run),
            "--tasks", "sts12", "sts14", "trec", "geometry",
            "--postprocess", "abtt:1", "whiten:2",
            "--fit-corpus", "stsb-dev",
            "--output", str(output),
            "--markdown", str(tmp_path / "eval.md"),
            "--plots", str(tmp_path / "plots"),
        ],
        capsys,
    )  # fmt: skip
    assert status == 0, err
    assert "Skipped sts14: Data for evaluation task 'sts14' not found" in out
    document = json.loads(output.read_text())
    assert document["schema"] == SCHEMA
    assert document["tasks"] == ["sts12", "trec", "geometry"]
    assert list(document["skipped"]) == ["sts14"]
    assert document["model_source"]["kind"] == "run"
    assert document["settings"]["transfer_classifier"]["seed"] == 0
    labels = [variant["label"] for variant in document["variants"]]
    assert labels == [str(tiny_run), f"{tiny_run} + abtt:1", f"{tiny_run} + whiten:2"]
    whiten = document["variants"][2]
    assert whiten["postprocess"] == {"method": "whiten", "dims": 2, "fit_corpus": "stsb-dev", "num_fit_sentences": 9}
    assert len(whiten["results"]["geometry"]["singular_values"]) == 2
    assert set(document["variants"][0]["results"]) == {"sts12", "trec", "geometry"}
    table = (tmp_path / "eval.md").read_text()
    assert table.splitlines()[0].startswith("| model | sts12 | trec | align | uniform |")
    assert "| sts12 | alpha |" in table
    plots = sorted(path.name for path in (tmp_path / "plots").iterdir())
    assert plots == [
        "alignment-uniformity.png",
        "cosine-histogram-0.png",
        "cosine-histogram-1.png",
        "cosine-histogram-2.png",
        "spectrum.png",
    ]


def test_eval_is_reproducible(tiny_run, tmp_path, capsys):
    paths = [tmp_path / "first.json", tmp_path / "second.json"]
    for path in paths:
        status, _, _ = _eval([str(tiny_run), "--tasks", "mr", "geometry", "--output", str(path)], capsys)
        assert status == 0
    first, second = (json.loads(path.read_text())["variants"] for path in paths)
    assert first == second


def test_checkpoint_loads_its_own_weights(tiny_run):
    from isotune.encoder import load_encoder, make_embedder
    from isotune.evaluation.model_source import load_model

    checkpoint, source = load_model(str(tiny_run / "checkpoints" / "step-0000002"))
    assert source.kind == "checkpoint"
    assert source.model == str(tiny_run / "model")
    base = load_encoder(str(tiny_run / "model"))
    for name, parameter in checkpoint.named_parameters():
        np.testing.assert_allclose(parameter.detach().numpy(), base.state_dict()[name].numpy() + 0.05, atol=1e-6)
    texts = ["the dog runs", "a cat sings"]
    assert not np.allclose(make_embedder(checkpoint)(texts), make_embedder(base)(texts))


def test_checkpoint_without_run_model_raises(tiny_run, tmp_path, capsys):
    import shutil

    checkpoint = tmp_path / "orphan" / "checkpoints" / "step-0000002"
    shutil.copytree(tiny_run / "checkpoints" / "step-0000002", checkpoint)
    status, _, err = _eval([str(checkpoint), "--tasks", "sts12"], capsys)
    assert status == 2
    assert "needs the run's model folder" in err


def test_eval_without_any_data_fails(tiny_run, tmp_path, capsys):
    status = main(["eval", str(tiny_run), "--tasks", "sts15", "--data-root", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err
    assert status == 2
    assert "None of the requested tasks (sts15) has data" in err


def test_eval_rejects_bad_postprocess(tiny_run, capsys):
    status, _, err = _eval([str(tiny_run), "--tasks", "sts12", "--postprocess", "pca:3"], capsys)
    assert status == 2
    assert "Unknown post-processing 'pca:3'" in err


def test_compare_eval_json_and_run_folder(tiny_run, tmp_path, capsys):
    output = tmp_path / "eval.json"
    status, _, _ = _eval([str(tiny_run), "--tasks", "sts12", "geometry", "--output", str(output)], capsys)
    assert status == 0
    run_dir = tmp_path / "my-run"
    run_dir.mkdir()
    results = json.loads(output.read_text())["variants"][0]["results"]
    (run_dir / "metrics.json").write_text(json.dumps({"before": results, "after": {"sts12": results["sts12"]}}))

    status = main(["compare", str(output), str(run_dir), "--plots", str(tmp_path / "plots")])
    out = capsys.readouterr().out
    assert status == 0
    lines = out.splitlines()
    assert lines[0].startswith("| model | sts12 | align |")
    assert lines[2].startswith(f"| {tiny_run} | ")
    assert lines[3].startswith("| my-run before | ")
    assert lines[4].startswith("| my-run after | ")
    assert lines[4].endswith("| n/a | n/a | n/a | n/a | n/a | n/a |")
    assert (tmp_path / "plots" / "alignment-uniformity.png").is_file()
    assert (tmp_path / "plots" / "sts-vs-average-cosine.png").is_file()


def test_sts_against_average_cosine_needs_geometry_and_sts(tmp_path):
    from isotune.evaluation.plots import plot_sts_against_average_cosine

    geometry = {"geometry": {"average_cosine": 0.1}}
    sts = {"sts12": {"spearman": {"all": 70.0}}}
    assert plot_sts_against_average_cosine({"a": geometry, "b": sts}, ["sts12"], tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()
    rows = {"base": {**geometry, **sts}, "tuned": {"geometry": {"average_cosine": 0.0}, **sts}}
    assert plot_sts_against_average_cosine(rows, ["sts12", "sts13"], tmp_path / "plot.png") == tmp_path / "plot.png"
    assert (tmp_path / "plot.png").stat().st_size > 0


def test_compare_rejects_other_json(tmp_path, capsys):
    path = tmp_path / "other.json"
    path.write_text('{"hello": 1}')
    status = main(["compare", str(path)])
    assert status == 2
    assert "is neither an isotune eval result" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["eval", "compare"])
@pytest.mark.parametrize(
    ("option", "kind", "message"),
    [
        ("--markdown", "folder", "is a folder; pass a file path."),
        ("--plots", "file", "is a file; pass a folder path."),
        ("--markdown", "under a file", "cannot be created because"),
    ],
)
def test_bad_output_path_fails_before_work(tiny_run, tmp_path, capsys, command, option, kind, message):
    existing_file = tmp_path / "notes.txt"
    existing_file.write_text("keep", encoding="utf-8")
    path = {"folder": tmp_path, "file": existing_file, "under a file": existing_file / "out.md"}[kind]
    if command == "eval":
        status, out, err = _eval([str(tiny_run), "--tasks", "sts12", option, str(path)], capsys)
    else:
        status = main(["compare", str(tmp_path / "missing.json"), option, str(path)])
        out, err = capsys.readouterr()
    assert status == 2
    assert f"{option} {path} {message}" in err
    assert "Scoring" not in out + err
    assert existing_file.read_text(encoding="utf-8") == "keep"
