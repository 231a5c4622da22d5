"""`isotune publish`: the model card, its metadata and the dry-run folder, on real run folders of a tiny BERT."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from huggingface_hub import metadata_load
from sentence_transformers import SentenceTransformer

from conftest import WORDS
from isotune.cli import main
from isotune.errors import ConfigError, DataError, PublishError
from isotune.publish.metadata import validate_metadata
from isotune.publish.workflow import PublishOptions, publish_run
from isotune.recipe import load_recipe
from isotune.training.run import run_training

FAKE_TOKEN = "hf_FAKEtoken0123456789abcdefghijklmnop"
# A 1x1 PNG, standing in for an evaluation plot.
PNG_BYTES = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)


def build_run_folder(root: Path, tiny_bert: Path) -> Path:
    """Train the tiny BERT for 4 steps on a small books corpus and return the run folder."""
    rng = random.Random(0)

    def sentence() -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 9))).capitalize() + "."

    (root / "books").mkdir(parents=True)
    paragraphs = [" ".join(sentence() for _ in range(5)) for _ in range(30)]
    (root / "books" / "one.txt").write_text("\n\n".join(paragraphs), encoding="utf-8")
    rows = [
        f"main-captions\tMSRvid\t2012test\t{index:04d}\t{rng.uniform(0, 5) if index % 4 else 4.5:.3f}"
        f"\t{sentence()}\t{sentence()}"
        for index in range(40)
    ]
    (root / "sts" / "stsbenchmark").mkdir(parents=True)
    (root / "sts" / "stsbenchmark" / "sts-dev.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    run_dir = root / "run"
    recipe = load_recipe(
        None,
        [
            f"model.name={tiny_bert}",
            "model.max_seq_length=32",
            f"data.path={root / 'books'}",
            f"evaluation.data_root={root}",
            "evaluation.tasks=[stsb-dev, geometry]",
            "evaluation.geometry_sentences=100",
            "training.batch_size=8",
            "training.max_steps=4",
            "training.eval_every=2",
            "training.checkpoint_every=2",
            f"output_dir={run_dir}",
        ],
    )
    run_training(recipe, command=f"isotune train recipe.yaml --output-dir {run_dir}")
    (run_dir / "plots").mkdir(exist_ok=True)
    (run_dir / "plots" / "alignment_uniformity.png").write_bytes(PNG_BYTES)
    return run_dir


def copy_run(run_dir: Path, destination: Path, **recipe_changes: dict) -> Path:
    """Copy a run folder and change sections of its recipe.yaml, e.g. data={"source": "hf_dataset"}."""
    shutil.copytree(run_dir, destination, symlinks=True)
    recipe = yaml.safe_load((destination / "recipe.yaml").read_text(encoding="utf-8"))
    for section, changes in recipe_changes.items():
        recipe[section].update(changes)
    (destination / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return destination


def snapshot(folder: Path) -> dict[str, tuple[int, int, str]]:
    """Return path -> (size, mtime in ns, SHA-256) of every file and link under `folder`."""
    state = {}
    for path in sorted(folder.rglob("*")):
        info = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
        state[path.relative_to(folder).as_posix()] = (info.st_size, info.st_mtime_ns, digest)
    return state


@pytest.fixture(scope="module")
def run_dir(tiny_bert, tmp_path_factory) -> Path:
    return build_run_folder(tmp_path_factory.mktemp("publish-card"), tiny_bert)


def dry_run(run: Path, out_dir: Path, **options) -> tuple[dict, str]:
    publish_run(run, PublishOptions(repo_id="someone/tiny-align", dry_run=out_dir, **options))
    card = (out_dir / "README.md").read_text(encoding="utf-8")
    return metadata_load(out_dir / "README.md"), card


def test_card_for_local_model_and_files(run_dir, tmp_path):
    metadata, card = dry_run(run_dir, tmp_path / "out", license="mit")
    assert "base_model" not in metadata
    assert "datasets" not in metadata
    assert None not in metadata.values()
    assert metadata["license"] == "mit"
    assert metadata["library_name"] == "sentence-transformers"
    assert metadata["pipeline_tag"] == "sentence-similarity"
    assert {"sentence-transformers", "feature-extraction", "alignment-uniformity"} <= set(metadata["tags"])
    assert "a local model" in card
    assert "local files (books: 1 file under" in card
    assert "| stsb-dev | 40 |" in card
    assert "| alignment (lower: positive pairs closer) |" in card
    assert "No transfer (classification) results" in card
    assert "![plots/alignment_uniformity.png](plots/alignment_uniformity.png)" in card
    assert "Precision used: fp32" in card
    assert f"isotune train recipe.yaml --output-dir {run_dir}" in card
    assert "isotune publish" in card
    assert (run_dir / "recipe.yaml").read_text(encoding="utf-8").rstrip() in card
    assert "- Hardware: CPU" in card
    assert "- torch " in card
    assert "@inproceedings{wang2020understanding" in card
    assert "add its citation here" in card
    validate_metadata(metadata)


def test_card_for_hub_model_and_dataset(run_dir, tmp_path):
    hub_run = copy_run(
        run_dir,
        tmp_path / "run",
        model={"name": "sentence-transformers/all-MiniLM-L6-v2"},
        data={"source": "hf_dataset", "path": "bookcorpus/bookcorpus"},
    )
    metadata, card = dry_run(hub_run, tmp_path / "out")
    assert metadata["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert metadata["datasets"] == ["bookcorpus/bookcorpus"]
    # The license comes from the bundled copy's own card.
    assert metadata["license"] == "apache-2.0"
    assert "Hugging Face dataset bookcorpus/bookcorpus, split train" in card
    assert "https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2" in card
    assert "@inproceedings{reimers2019sentencebert" in card
    validate_metadata(metadata)


def test_saved_dataset_folder_counts_as_local(run_dir, tmp_path):
    saved = tmp_path / "saved-dataset"
    saved.mkdir()
    local_run = copy_run(run_dir, tmp_path / "run", data={"source": "hf_dataset", "path": str(saved)})
    metadata, card = dry_run(local_run, tmp_path / "out", license="mit")
    assert "datasets" not in metadata
    assert "local files" in card


def test_transfer_results_shown_when_present(run_dir, tmp_path):
    transfer_run = copy_run(run_dir, tmp_path / "run")
    metrics = json.loads((transfer_run / "metrics.json").read_text(encoding="utf-8"))
    metrics["before"]["mr"] = {"accuracy": 70.5, "accuracy_std": 1.0, "num_examples": 100, "fold_accuracies": [70.5]}
    metrics["after"]["mr"] = {"accuracy": 72.25, "accuracy_std": 1.0, "num_examples": 100, "fold_accuracies": [72.25]}
    (transfer_run / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    _, card = dry_run(transfer_run, tmp_path / "out", license="mit")
    assert "| mr | accuracy | 70.50 | 72.25 | +1.75 |" in card
    assert "num_examples" not in card


def test_missing_license_names_option(run_dir, tmp_path):
    with pytest.raises(ConfigError, match="--license"):
        dry_run(run_dir, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("license", "apache2", "'license' = 'apache2' is not a Hub license id"),
        ("datasets", None, "datasets is null"),
        ("datasets", ["not a valid id!"], "'datasets' = 'not a valid id!' is not a Hub repository id"),
        ("base_model", "/home/me/model", "'base_model' = '/home/me/model' is not a Hub repository id"),
        ("pipeline_tag", "text-generation", "'pipeline_tag' = 'text-generation'"),
        ("tags", [], "'tags' = [] must be a non-empty list"),
    ],
)
def test_invalid_metadata_names_field(field, value, message):
    metadata = {
        "library_name": "sentence-transformers",
        "license": "mit",
        "pipeline_tag": "sentence-similarity",
        "tags": ["sentence-transformers"],
        field: value,
    }
    with pytest.raises(PublishError, match=message.replace("[", r"\[").replace("]", r"\]")):
        validate_metadata(metadata)


def test_license_other_needs_name(run_dir, tmp_path):
    with pytest.raises(PublishError, match="license_name"):
        dry_run(run_dir, tmp_path / "out", license="other")
    metadata, _ = dry_run(run_dir, tmp_path / "out", license="other", license_name="my-terms")
    assert metadata["license_name"] == "my-terms"


def test_dry_run_loads_and_matches_model(run_dir, tmp_path):
    out_dir = tmp_path / "out"
    dry_run(run_dir, out_dir, license="mit")
    published = {path.relative_to(out_dir).as_posix() for path in out_dir.rglob("*") if path.is_file()}
    model_files = {path.relative_to(run_dir / "model").as_posix() for path in (run_dir / "model").rglob("*")}
    model_files = {name for name in model_files if (run_dir / "model" / name).is_file()}
    assert model_files <= published
    assert {"README.md", "plots/alignment_uniformity.png", "isotune/run.json", "isotune/recipe.yaml"} <= published
    assert not any(name.startswith(("checkpoints", "report")) for name in published)
    texts = ["the dog runs in the park", "a child reads a book"]
    expected = SentenceTransformer(str(run_dir / "model"), device="cpu").encode(texts)
    actual = SentenceTransformer(str(out_dir), device="cpu").encode(texts)
    assert np.allclose(expected, actual, atol=1e-6)


def test_dry_run_never_writes_token_or_changes_run(run_dir, tmp_path, monkeypatch, capsys, caplog):
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    before = snapshot(run_dir)
    out_dir = tmp_path / "out"
    args = ["publish", str(run_dir), "--repo-id", "someone/tiny-align", "--license", "mit", "--dry-run", str(out_dir)]
    assert main(args) == 0
    assert snapshot(run_dir) == before
    written = [path for path in out_dir.rglob("*") if path.is_file()]
    assert len(written) > 10
    for path in written:
        assert FAKE_TOKEN.encode() not in path.read_bytes(), path
    captured = capsys.readouterr()
    assert FAKE_TOKEN not in captured.out + captured.err + caplog.text


def test_dry_run_replaces_earlier_dry_run_only(run_dir, tmp_path):
    out_dir = tmp_path / "out"
    dry_run(run_dir, out_dir, license="mit")
    dry_run(run_dir, out_dir, license="apache-2.0")
    assert metadata_load(out_dir / "README.md")["license"] == "apache-2.0"
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep", encoding="utf-8")
    with pytest.raises(ConfigError, match="not empty"):
        dry_run(run_dir, other, license="mit")
    assert (other / "mine.txt").read_text(encoding="utf-8") == "keep"
    with pytest.raises(ConfigError, match="overlaps the run folder"):
        dry_run(run_dir, run_dir / "published", license="mit")


def test_link_outside_run_is_rejected(run_dir, tmp_path):
    linked = copy_run(run_dir, tmp_path / "run")
    secret = tmp_path / "secret.txt"
    secret.write_text("not for upload", encoding="utf-8")
    (linked / "model" / "extra.txt").symlink_to(secret)
    with pytest.raises(PublishError, match="outside the run folder"):
        dry_run(linked, tmp_path / "out", license="mit")
    assert not (tmp_path / "out").exists()


def test_linked_plot_folder_is_rejected(run_dir, tmp_path):
    linked = copy_run(run_dir, tmp_path / "run")
    shutil.rmtree(linked / "plots")
    (linked / "plots").symlink_to(run_dir / "plots")
    with pytest.raises(PublishError, match="does not follow linked folders"):
        dry_run(linked, tmp_path / "out", license="mit")


def test_link_inside_run_is_copied(run_dir, tmp_path):
    linked = copy_run(run_dir, tmp_path / "run")
    (linked / "plots" / "copy.png").symlink_to(linked / "plots" / "alignment_uniformity.png")
    dry_run(linked, tmp_path / "out", license="mit")
    copied = tmp_path / "out" / "plots" / "copy.png"
    assert not copied.is_symlink()
    assert copied.read_bytes() == PNG_BYTES


def test_unfinished_run_is_rejected(run_dir, tmp_path):
    unfinished = copy_run(run_dir, tmp_path / "run")
    (unfinished / "run.json").unlink()
    with pytest.raises(DataError, match="lacks run.json"):
        dry_run(unfinished, tmp_path / "out", license="mit")


def test_invalid_repo_id_is_rejected(run_dir, tmp_path):
    with pytest.raises(ConfigError, match="--repo-id"):
        publish_run(run_dir, PublishOptions(repo_id="no-owner", dry_run=tmp_path / "out", license="mit"))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("align_uniform", "`L_align + lambda * (L_uniform(x) + L_uniform(y)) / 2` with alpha 2, t 2 and lambda 0.5"),
        ("info_nce", "in-batch InfoNCE (temperature 0.05)"),
        ("info_nce_uniform", "InfoNCE (temperature 0.05) plus the uniformity loss of Wang and Isola (2020), "),
    ],
)
def test_card_names_each_objective(name, expected):
    from types import SimpleNamespace

    from isotune.publish.card import _objective_text

    recipe = load_recipe(None, [f"objective.name={name}", "objective.lambda=0.5"])
    text = _objective_text(SimpleNamespace(recipe=recipe))
    assert expected in text
    assert ("lambda 0.5" in text) == (name != "info_nce")
