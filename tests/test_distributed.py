"""Several processes on the CPU (gloo): gathered losses equal one process with the whole batch; launches work."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file

from conftest import tiny_recipe
from gloo import run_in_gloo_group
from isotune.distributed import gather_with_grad, release_process_group, world_size
from isotune.recipe import ObjectiveConfig
from isotune.training.objective import compute_global_objective, compute_objective

WORLD_SIZE = 2
LOCAL_BATCH = 4
# Global batch in rank order. Row 5 (rank 1) repeats the first text of row 0 (rank 0), so the same-text
# masks must reach across processes.
FIRST = ["a dog", "a cat", "red ball", "the man", "blue book", "a dog", "the park", "night"]
SECOND = ["a pup", "the cat", "a ball", "a man", "a book", "dogs", "parks", "a night"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _embed(model: torch.nn.Module, features: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(model(features), dim=1)


def compare_worker(rank: int, config: ObjectiveConfig, keys: tuple[str, ...]) -> None:
    """Check on rank `rank` that the gathered loss parts `keys` and the DDP-averaged gradients equal one
    process's on the whole batch of 2b pairs."""
    torch.manual_seed(0)
    features_x = torch.randn(WORLD_SIZE * LOCAL_BATCH, 16)
    features_y = features_x + 0.3 * torch.randn(WORLD_SIZE * LOCAL_BATCH, 16)
    reference_model = torch.nn.Linear(16, 8)
    single = torch.nn.Linear(16, 8)
    single.load_state_dict(reference_model.state_dict())
    expected = compute_objective(config, _embed(single, features_x), _embed(single, features_y), (FIRST, SECOND))
    expected["loss"].backward()

    replica = torch.nn.Linear(16, 8)
    replica.load_state_dict(reference_model.state_dict())
    ddp = torch.nn.parallel.DistributedDataParallel(replica)
    local = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
    x, y = _embed(ddp, features_x[local]), _embed(ddp, features_y[local])
    parts = compute_global_objective(config, x, y, (FIRST, SECOND), gather=True)
    (parts["loss"] * world_size()).backward()

    for key in keys:
        assert torch.allclose(parts[key], expected[key], rtol=1e-5, atol=1e-6), key
    for (name, actual), reference in zip(replica.named_parameters(), single.parameters(), strict=True):
        assert torch.allclose(actual.grad, reference.grad, rtol=1e-5, atol=1e-6), name


@pytest.mark.parametrize("objective", ["align_uniform", "info_nce"])
def test_gathered_loss_matches_single_process(objective, tmp_path):
    config = ObjectiveConfig(name=objective)
    run_in_gloo_group(compare_worker, tmp_path, config, ("loss", "alignment", "uniformity"), world_size=WORLD_SIZE)


def test_release_process_group_destroys_group(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        assert dist.is_initialized()
        release_process_group()
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_user_error_releases_group(tmp_path, capsys):
    from isotune.cli import main

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        assert main(["train", str(tmp_path / "missing.yaml")]) == 2
        assert "missing.yaml" in capsys.readouterr().err
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_release_without_process_group_does_nothing():
    release_process_group()
    assert not dist.is_initialized()


def test_gather_without_process_group_is_identity():
    local = torch.randn(3, 4, requires_grad=True)
    assert world_size() == 1
    assert gather_with_grad(local) is local


def _launch(recipe_file: Path, run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--num_processes",
        str(WORLD_SIZE),
        "--num_machines",
        "1",
        # --cpu alone starts a single process; --multi_gpu starts them through torchrun, and with
        # ACCELERATE_USE_CPU set (below) Accelerate joins them in a CPU process group with the gloo backend.
        "--multi_gpu",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_ip",
        "127.0.0.1",
        "--main_process_port",
        str(_free_port()),
        "-m",
        "isotune.cli",
        "train",
        str(recipe_file),
        "--output-dir",
        str(run_dir),
        *extra,
    ]
    env = {
        **os.environ,
        "ACCELERATE_USE_CPU": "true",
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_accelerate_launch_two_processes_resumes(tiny_bert, corpus, tmp_path):
    settings = (
        "training.max_steps=4",
        "training.checkpoint_every=2",
        "training.keep_checkpoints=5",
        "training.eval_every=0",
        "training.keep_best=false",
        "training.forward_chunk_size=5",
        "training.cached=true",
        "evaluation.tasks=[stsb-dev]",
    )
    run_dir = tmp_path / "run"
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(tiny_recipe(tiny_bert, corpus, run_dir, *settings).to_yaml(), encoding="utf-8")

    first = _launch(recipe_file, run_dir)
    output = first.stdout + first.stderr
    assert output.count("Evaluating the base model") == 1, "only the main process may evaluate and log"
    info = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    assert info["processes"] == WORLD_SIZE
    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert checkpoints == ["step-0000002", "step-0000004"], "no staging folder may be left behind"
    for index in range(WORLD_SIZE):
        assert (run_dir / "checkpoints" / "step-0000002" / f"random_states_{index}.pkl").is_file()
    state = json.loads((run_dir / "checkpoints" / "step-0000004" / "trainer_state.json").read_text("utf-8"))
    assert state["num_processes"] == WORLD_SIZE
    straight = load_file(str(run_dir / "model" / "model.safetensors"))

    # Roll back to the step-2 checkpoint, as if the launch had died at step 3, and resume it.
    shutil.rmtree(run_dir / "checkpoints" / "step-0000004")
    shutil.rmtree(run_dir / "model")
    second = _launch(recipe_file, run_dir, "--resume")
    assert "Resumed from" in second.stdout + second.stderr
    resumed = load_file(str(run_dir / "model" / "model.safetensors"))
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key


LAUNCH_CONFIGS = {
    "single_gpu": ("NO", 1),
    "multi_gpu": ("MULTI_GPU", 1),
    "multi_node": ("MULTI_GPU", 2),
    "fsdp": ("FSDP", 1),
    "deepspeed": ("DEEPSPEED", 1),
}


@pytest.mark.parametrize("name", sorted(LAUNCH_CONFIGS))
def test_launch_config_loads_in_accelerate(name):
    from accelerate.commands.config.config_args import ClusterConfig

    path = Path(__file__).resolve().parents[1] / "recipes" / "launch" / f"{name}.yaml"
    config = ClusterConfig.from_yaml_file(str(path))  # raises on keys this Accelerate version does not know
    distributed_type, machines = LAUNCH_CONFIGS[name]
    assert config.distributed_type.value == distributed_type
    assert config.num_machines == machines
    assert config.num_processes >= machines
    assert config.compute_environment.value == "LOCAL_MACHINE"
    if machines > 1:
        assert config.main_process_ip and config.main_process_port
    if name == "fsdp":
        assert config.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"
        assert config.fsdp_config["fsdp_transformer_layer_cls_to_wrap"] == "BertLayer"
    if name == "deepspeed":
        assert config.deepspeed_config["zero_stage"] in (1, 2)


def test_resume_with_other_process_count_is_rejected(tiny_bert, corpus, tmp_path):
    from isotune.errors import ConfigError
    from isotune.training.run import run_training

    run_dir = tmp_path / "run"
    settings = ("training.max_steps=2", "training.checkpoint_every=1", "training.eval_every=0")
    recipe = tiny_recipe(tiny_bert, corpus, run_dir, *settings, "evaluation.tasks=[stsb-dev]")
    run_training(recipe)
    state_file = run_dir / "checkpoints" / "step-0000002" / "trainer_state.json"
    state = json.loads(state_file.read_text(encoding="utf-8"))
    assert state["num_processes"] == 1
    state["num_processes"] = 2
    state_file.write_text(json.dumps(state), encoding="utf-8")
    with pytest.raises(ConfigError, match="written by 2 processes, but this launch has 1"):
        run_training(recipe, resume=True)


def _nan_word_setup(tiny_bert: Path, corpus: Path, root: Path, word: str) -> tuple[Path, Path]:
    """Copy the tiny BERT with the embedding row of `word` set to NaN, and books where `word` is rare.

    Only the pairs that contain `word` get a NaN loss, so some micro batches fail and others train: on
    which process a failing pair lands depends on the data order.
    """
    from safetensors.torch import save_file
    from transformers import AutoTokenizer

    model_dir = root / "nan-word-bert"
    shutil.copytree(tiny_bert, model_dir)
    weights = load_file(str(model_dir / "model.safetensors"))
    key = next(name for name in weights if name.endswith("word_embeddings.weight"))
    token_id = AutoTokenizer.from_pretrained(str(model_dir)).convert_tokens_to_ids(word)
    weights[key][token_id] = float("nan")
    save_file(weights, str(model_dir / "model.safetensors"))

    data = root / "data"
    (data / "books").mkdir(parents=True)
    for path in (corpus / "books").iterdir():
        # Drop the word from every sentence, then put it back into every 40th sentence.
        sentences = path.read_text(encoding="utf-8").replace(f" {word}", "").split(". ")
        sentences = [f"{text} {word}" if index % 40 == 7 else text for index, text in enumerate(sentences)]
        (data / "books" / path.name).write_text(". ".join(sentences), encoding="utf-8")
    dev_rows = (corpus / "sts" / "stsbenchmark" / "sts-dev.csv").read_text(encoding="utf-8").splitlines()
    (data / "sts" / "stsbenchmark").mkdir(parents=True)
    clean_rows = [row for row in dev_rows if word not in row.split("\t", 5)[-1].lower()]
    (data / "sts" / "stsbenchmark" / "sts-dev.csv").write_text("\n".join(clean_rows) + "\n", encoding="utf-8")
    return model_dir, data


@pytest.mark.slow
def test_accelerate_launch_skips_nonfinite_batches_on_every_process(tiny_bert, corpus, tmp_path):
    model_dir, data = _nan_word_setup(tiny_bert, corpus, tmp_path, "night")
    run_dir = tmp_path / "run"
    recipe = tiny_recipe(
        tiny_bert,
        corpus,
        run_dir,
        f"model.name={model_dir}",
        f"data.path={data / 'books'}",
        f"evaluation.data_root={data}",
        "evaluation.tasks=[stsb-dev]",
        "training.on_nonfinite=skip",
        "training.max_steps=8",
        "training.eval_every=0",
        "training.keep_best=false",
        "training.checkpoint_every=0",
    )
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(recipe.to_yaml(), encoding="utf-8")
    result = _launch(recipe_file, run_dir)

    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    # Some steps lost a micro batch on one process and the other process skipped along, without a hang or
    # a DDP error at the next step; the other steps trained.
    assert 0 < metrics["skipped_batches"] < 8, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Skipped this micro batch" in result.stdout + result.stderr
    base = load_file(str(model_dir / "model.safetensors"))
    trained = load_file(str(run_dir / "model" / "model.safetensors"))
    layer = next(name for name in trained if name.endswith("attention.self.query.weight"))
    assert torch.isfinite(trained[layer]).all()
    assert not torch.equal(trained[layer], base[layer])
