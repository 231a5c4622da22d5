"""Training levers against the narrow cone: InfoNCE + uniformity, lambda warmup, frozen layers, L2-SP,
SimCSE pair mixing and EMA weights."""

from __future__ import annotations

import hashlib
import json
import shutil
import types
import typing

import pytest
import torch
from accelerate.utils import DistributedType
from safetensors.torch import load_file, save_file

from conftest import tiny_recipe
from gloo import run_in_gloo_group
from isotune.data import PairSet, PairStats, mix_identical_pairs
from isotune.encoder import build_encoder
from isotune.errors import ConfigError
from isotune.losses import info_nce_loss, same_text_mask, uniformity_loss
from isotune.recipe import OBJECTIVE_KEYS, ObjectiveConfig, Recipe, TrainingConfig, load_recipe
from isotune.training.ema import EmaModel
from isotune.training.loop import make_accelerator, train
from isotune.training.objective import compute_objective, objective_at_step
from isotune.training.regularizers import L2SPPenalty, check_regularizers_supported
from isotune.training.run import load_training_pairs, run_training
from isotune.training.run_folder import recipe_fingerprint
from test_cached import _gradients
from test_distributed import WORLD_SIZE, compare_worker

# Row 3 repeats the first text of row 0, and row 4's positive is row 1's first text: both are duplicates
# that the masks must keep out of the negatives.
ANCHORS = ["a dog", "a cat", "red ball", "a dog", "the man"]
POSITIVES = ["a pup", "the cat", "a ball", "dogs", "a cat"]


def _embeddings(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.normalize(torch.randn(len(ANCHORS), 8, generator=generator), dim=1)
    y = torch.nn.functional.normalize(x + 0.5 * torch.randn(len(ANCHORS), 8, generator=generator), dim=1)
    return x.requires_grad_(True), y.requires_grad_(True)


# --- info_nce_uniform ---------------------------------------------------------------------------------


def test_info_nce_uniform_is_sum_of_parts():
    x, y = _embeddings()
    config = ObjectiveConfig(name="info_nce_uniform", temperature=0.1, t=3.0, lam=0.7)
    parts = compute_objective(config, x, y, texts=(ANCHORS, POSITIVES))

    not_self = ~torch.eye(len(ANCHORS), dtype=torch.bool)
    exclude_x = same_text_mask(ANCHORS) & not_self
    exclude_y = same_text_mask(POSITIVES) & not_self
    exclude_nce = same_text_mask(POSITIVES) | same_text_mask(ANCHORS, POSITIVES)
    contrastive = info_nce_loss(x, y, temperature=0.1, exclude=exclude_nce)
    uniformity = (uniformity_loss(x, t=3.0, exclude=exclude_x) + uniformity_loss(y, t=3.0, exclude=exclude_y)) / 2
    assert exclude_x.any(), "the batch must contain a duplicate anchor for this test to check the masks"
    assert torch.allclose(parts["info_nce"], contrastive)
    assert torch.allclose(parts["uniformity"], uniformity)
    assert torch.allclose(parts["loss"], contrastive + 0.7 * uniformity)
    # The masks matter: without them the contrastive term differs.
    assert not torch.allclose(contrastive, info_nce_loss(x, y, temperature=0.1))


def test_info_nce_uniform_gradient_includes_uniformity():
    x, y = _embeddings()
    gradients = {}
    for lam in (0.0, 1.0):
        x.grad = y.grad = None
        config = ObjectiveConfig(name="info_nce_uniform", lam=lam)
        compute_objective(config, x, y, texts=(ANCHORS, POSITIVES))["loss"].backward()
        gradients[lam] = (x.grad.clone(), y.grad.clone())
        assert torch.isfinite(x.grad).all()
        assert x.grad.abs().sum() > 0
    assert not torch.allclose(gradients[0.0][0], gradients[1.0][0])
    assert not torch.allclose(gradients[0.0][1], gradients[1.0][1])


def test_lambda_zero_gives_info_nce():
    x, y = _embeddings()
    combined = compute_objective(ObjectiveConfig(name="info_nce_uniform", lam=0.0), x, y, (ANCHORS, POSITIVES))
    plain = compute_objective(ObjectiveConfig(name="info_nce"), x, y, (ANCHORS, POSITIVES))
    assert torch.allclose(combined["loss"], plain["loss"])
    assert torch.allclose(combined["uniformity"], plain["uniformity"])


@pytest.mark.slow
@pytest.mark.parametrize(("precision", "rtol", "atol"), [("no", 1e-4, 1e-6), ("bf16", 5e-2, 1e-3)])
def test_info_nce_uniform_cached_matches_uncached(tiny_bert, corpus, tmp_path, precision, rtol, atol):
    settings = ("objective.name=info_nce_uniform", f"training.precision={precision}")
    plain, plain_loss, _ = _gradients(tiny_bert, corpus, tmp_path, *settings)
    cached, cached_loss, _ = _gradients(tiny_bert, corpus, tmp_path, *settings, "training.cached=true")
    assert torch.allclose(cached_loss, plain_loss, rtol=rtol, atol=atol)
    assert plain.keys() == cached.keys()
    for name in plain:
        assert torch.allclose(cached[name], plain[name], rtol=rtol, atol=atol), name


@pytest.mark.slow
def test_info_nce_uniform_gathered_matches_single_process(tmp_path):
    config = ObjectiveConfig(name="info_nce_uniform", lam=0.5)
    run_in_gloo_group(compare_worker, tmp_path, config, ("loss", "info_nce", "uniformity"), world_size=WORLD_SIZE)


def test_objective_keys_cover_every_objective():
    names = set(typing.get_args(typing.get_type_hints(ObjectiveConfig)["name"]))
    assert set(OBJECTIVE_KEYS) == names
    known = set(Recipe().to_dict()["objective"])
    for name, keys in OBJECTIVE_KEYS.items():
        assert set(keys) <= known, name


# --- lambda warmup ------------------------------------------------------------------------------------


def test_lambda_ramps_linearly_over_warmup():
    config = ObjectiveConfig(lam=2.0, lambda_warmup_steps=4)
    assert [objective_at_step(config, step).lam for step in range(6)] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.0]
    assert config.lam == 2.0, "the recipe's own config must stay unchanged"


def test_lambda_constant_without_warmup():
    config = ObjectiveConfig(lam=2.0)
    assert objective_at_step(config, 0) is config


def test_lambda_warmup_rejects_negative():
    with pytest.raises(ConfigError, match=r"objective.lambda_warmup_steps must be >= 0 .*got -1"):
        load_recipe(None, ["objective.lambda_warmup_steps=-1"])


@pytest.mark.parametrize("warmup", [50, 51])
def test_lambda_warmup_to_max_steps_rejected(warmup):
    settings = [f"objective.lambda_warmup_steps={warmup}", "training.max_steps=50"]
    with pytest.raises(ConfigError, match=rf"lambda_warmup_steps={warmup} with training.max_steps=50 .*at most 49"):
        load_recipe(None, settings)


def test_lambda_warmup_reaches_full_on_last_step():
    recipe = load_recipe(None, ["objective.lambda_warmup_steps=49", "training.max_steps=50", "objective.lambda=2"])
    last_step = recipe.training.max_steps - 1
    assert objective_at_step(recipe.objective, last_step).lam == 2


# --- frozen layers ------------------------------------------------------------------------------------


def _train_tiny(tiny_bert, corpus, tmp_path, *settings: str) -> tuple[dict[str, torch.Tensor], torch.nn.Module]:
    """Train the tiny BERT for a few steps with `train`; return its weights before training and the model."""
    recipe = tiny_recipe(
        tiny_bert,
        corpus,
        tmp_path / "run",
        "training.max_steps=3",
        "training.checkpoint_every=0",
        "training.eval_every=0",
        "training.keep_best=false",
        *settings,
    )
    model = build_encoder(recipe.model)
    before = {name: parameter.detach().clone() for name, parameter in model.named_parameters()}
    pairs = load_training_pairs(recipe.data).pairs
    train(recipe, make_accelerator(recipe), model, pairs, tmp_path / "run", fingerprint="test")
    return before, model


def test_frozen_layers_stay_unchanged(tiny_bert, corpus, tmp_path):
    before, model = _train_tiny(tiny_bert, corpus, tmp_path, "training.freeze_layers=1")
    after = dict(model.named_parameters())
    frozen = [name for name in before if ".embeddings." in name or ".layer.0." in name]
    trained = [name for name in before if ".layer.1." in name]
    assert len(frozen) > 5
    assert len(trained) > 5
    for name in frozen:
        assert torch.equal(after[name], before[name]), name
        assert not after[name].requires_grad, name
    for name in trained:
        assert not torch.equal(after[name], before[name]), name


def test_freeze_layers_zero_trains_embeddings(tiny_bert, corpus, tmp_path):
    before, model = _train_tiny(tiny_bert, corpus, tmp_path)
    name = next(name for name in before if name.endswith("word_embeddings.weight"))
    assert not torch.equal(dict(model.named_parameters())[name], before[name])


@pytest.mark.parametrize("count", [2, 5])
def test_freeze_layers_beyond_model_is_rejected(tiny_bert, corpus, tmp_path, count):
    recipe = tiny_recipe(tiny_bert, corpus, tmp_path / "run", f"training.freeze_layers={count}")
    with pytest.raises(ConfigError, match=rf"freeze_layers={count}: BertModel has 2 layers, so use 0 .* to 1"):
        run_training(recipe)
    assert not (tmp_path / "run").exists()


def test_freeze_layers_negative_is_rejected():
    with pytest.raises(ConfigError, match="training.freeze_layers must be >= 0 .*got -1"):
        load_recipe(None, ["training.freeze_layers=-1"])


# --- L2-SP --------------------------------------------------------------------------------------------


def test_l2sp_gradient_matches_autograd():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    penalty = L2SPPenalty(model, weight=0.3)
    base = {name: parameter.detach().clone() for name, parameter in model.named_parameters()}
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter))
    expected = 0.3 * sum((parameter - base[name]).pow(2).sum() for name, parameter in model.named_parameters())
    expected.backward()
    expected_grads = {name: parameter.grad.clone() for name, parameter in model.named_parameters()}

    model.zero_grad()
    for parameter in model.parameters():
        parameter.grad = torch.ones_like(parameter)
    value = penalty.add_gradient(model, grad_scale=4.0)
    assert value == pytest.approx(expected.item(), rel=1e-6)
    for name, parameter in model.named_parameters():
        assert torch.allclose(parameter.grad, 1 + 4.0 * expected_grads[name]), name


def test_l2sp_skips_frozen_and_gradless_parameters():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    model[0].requires_grad_(False)
    penalty = L2SPPenalty(model, weight=1.0)
    assert set(penalty.reference) == {"1.weight", "1.bias"}
    with torch.no_grad():
        model[1].weight.add_(1.0)
    assert penalty.add_gradient(model) == pytest.approx(4.0)
    assert model[1].weight.grad is None


def test_l2sp_logged_from_zero(tiny_bert, corpus, tmp_path):
    recipe = tiny_recipe(tiny_bert, corpus, tmp_path / "run", "training.l2sp=0.5", "training.max_steps=3")
    pairs = load_training_pairs(recipe.data).pairs
    state = train(
        recipe, make_accelerator(recipe), build_encoder(recipe.model), pairs, tmp_path / "run", fingerprint="t"
    )
    penalties = [entry["l2sp"] for entry in state.history]
    assert penalties[0] == 0.0
    assert penalties[1] > 0
    assert penalties[2] > 0


def _distance(before: dict[str, torch.Tensor], model: torch.nn.Module) -> float:
    return sum(float((parameter.detach() - before[name]).pow(2).sum()) for name, parameter in model.named_parameters())


def test_large_l2sp_keeps_weights_near_base(tiny_bert, corpus, tmp_path):
    before, free = _train_tiny(tiny_bert, corpus, tmp_path / "free", "training.max_steps=8")
    _, penalised = _train_tiny(tiny_bert, corpus, tmp_path / "held", "training.max_steps=8", "training.l2sp=1e4")
    assert _distance(before, penalised) < 0.01 * _distance(before, free)


def test_l2sp_negative_is_rejected():
    with pytest.raises(ConfigError, match=r"training.l2sp must be >= 0 \(0: off\), got -0.1"):
        load_recipe(None, ["training.l2sp=-0.1"])


# --- SimCSE pair mixing -------------------------------------------------------------------------------


def _consecutive_pairs(count: int) -> PairSet:
    sentences = [f"sentence number {index}" for index in range(count + 1)]
    pairs = list(zip(sentences[:-1], sentences[1:], strict=True))
    return PairSet(pairs=pairs, stats=PairStats(pairs=count), source="test sentences")


def test_simcse_mix_replaces_share_of_pairs():
    original = _consecutive_pairs(40)
    mixed = mix_identical_pairs(original, 0.25, seed=3)
    replaced = [row for row, pair in enumerate(mixed.pairs) if pair != original.pairs[row]]
    assert len(replaced) == 10
    assert mixed.stats.simcse_pairs == 10
    assert "pairs replaced by identical (SimCSE) pairs: 10" in mixed.stats.summary()
    for row in replaced:
        assert mixed.pairs[row] == (original.pairs[row][0], original.pairs[row][0])
    assert len(mixed.pairs) == len(original.pairs)
    assert original.stats.simcse_pairs == 0, "the input pair set must stay unchanged"


def test_simcse_mix_depends_only_on_seed():
    original = _consecutive_pairs(40)
    assert mix_identical_pairs(original, 0.5, seed=1).pairs == mix_identical_pairs(original, 0.5, seed=1).pairs
    assert mix_identical_pairs(original, 0.5, seed=1).pairs != mix_identical_pairs(original, 0.5, seed=2).pairs


@pytest.mark.parametrize(("ratio", "identical"), [(0.0, 0), (0.01, 0), (1.0, 40)])
def test_simcse_mix_bounds(ratio, identical):
    mixed = mix_identical_pairs(_consecutive_pairs(40), ratio, seed=0)
    assert sum(first == second for first, second in mixed.pairs) == identical
    assert mixed.stats.simcse_pairs == identical


@pytest.mark.parametrize("ratio", [-0.1, 1.5])
def test_simcse_ratio_outside_unit_interval_is_rejected(ratio):
    with pytest.raises(ConfigError, match=f"data.simcse_ratio must be between 0 and 1, got {ratio}"):
        load_recipe(None, [f"data.simcse_ratio={ratio}"])
    with pytest.raises(ConfigError, match="use a share between 0 and 1"):
        mix_identical_pairs(_consecutive_pairs(4), ratio, seed=0)


# --- EMA weights --------------------------------------------------------------------------------------


def test_ema_follows_weights_with_decay(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 2))
    model[0].requires_grad_(False)
    ema = EmaModel(model, decay=0.9)
    start = {name: parameter.detach().clone() for name, parameter in model.named_parameters()}
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    ema.update(model)
    averaged = dict(ema.model.named_parameters())
    assert torch.allclose(averaged["1.weight"], start["1.weight"] + 0.1)
    assert torch.allclose(averaged["1.bias"], start["1.bias"] + 0.1)
    assert torch.equal(averaged["0.weight"], start["0.weight"]), "frozen parameters are not averaged"


def test_ema_restore_is_exact(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 4)
    ema = EmaModel(model, decay=0.7)
    with torch.no_grad():
        model.weight.mul_(3.0)
    ema.update(model)
    ema.save(tmp_path)
    restored = EmaModel(torch.nn.Linear(4, 4), decay=0.7)
    restored.restore(tmp_path, model)
    for (name, expected), actual in zip(ema.model.named_parameters(), restored.model.parameters(), strict=True):
        assert torch.equal(expected, actual), name


def test_ema_restore_rejects_other_parameters(tmp_path):
    EmaModel(torch.nn.Linear(4, 4), decay=0.5).save(tmp_path)
    other = torch.nn.Sequential(torch.nn.Linear(4, 4))
    with pytest.raises(ConfigError, match="does not match the model's trainable parameters"):
        EmaModel(other, decay=0.5).restore(tmp_path, other)


@pytest.mark.parametrize("decay", [0, 1, 1.5, -0.5])
def test_ema_decay_outside_unit_interval_is_rejected(decay):
    with pytest.raises(ConfigError, match=f"training.ema_decay must be between 0 and 1 .*got {decay}"):
        load_recipe(None, [f"training.ema_decay={decay}"])


@pytest.mark.parametrize(("setting", "value"), [("l2sp", 0.1), ("ema_decay", 0.99)])
@pytest.mark.parametrize("launch", [DistributedType.FSDP, DistributedType.DEEPSPEED])
def test_sharded_launch_rejects_weight_copies(setting, value, launch):
    config = TrainingConfig(**{setting: value})
    # Only the launch type is read; FSDP and DeepSpeed themselves need GPUs.
    accelerator = types.SimpleNamespace(distributed_type=launch)
    with pytest.raises(ConfigError, match=f"training.{setting}={value} is not supported under {launch.value}"):
        check_regularizers_supported(config, accelerator)


LEVER_SETTINGS = (
    "objective.name=info_nce_uniform",
    "objective.lambda=0.5",
    "objective.lambda_warmup_steps=4",
    "training.freeze_layers=1",
    "training.l2sp=0.1",
    "training.ema_decay=0.8",
    "data.simcse_ratio=0.3",
    "training.keep_best=false",
    "training.keep_checkpoints=5",
    "evaluation.tasks=[stsb-dev]",
)


@pytest.mark.slow
def test_resume_with_every_lever_is_exact(tiny_bert, corpus, tmp_path):
    straight = tmp_path / "straight"
    metrics = run_training(tiny_recipe(tiny_bert, corpus, straight, *LEVER_SETTINGS))

    resumed = tmp_path / "resumed"
    recipe = tiny_recipe(tiny_bert, corpus, resumed, *LEVER_SETTINGS)
    run_training(recipe)
    # Roll the run back to its step-4 checkpoint, as if it had died at step 5.
    for later in ("step-0000008", "step-0000012"):
        shutil.rmtree(resumed / "checkpoints" / later)
    shutil.rmtree(resumed / "model")
    resumed_metrics = run_training(recipe, resume=True)

    expected = load_file(str(straight / "model" / "model.safetensors"))
    actual = load_file(str(resumed / "model" / "model.safetensors"))
    assert expected.keys() == actual.keys()
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key
    assert resumed_metrics["history"] == metrics["history"]

    # The saved model is the average, not the raw weights of the last step.
    raw = load_file(str(straight / "checkpoints" / "step-0000012" / "model.safetensors"))
    top_layer = next(key for key in expected if "layer.1.attention.self.query.weight" in key)
    raw_key = next(key for key in raw if key.endswith(top_layer.split("model.", 1)[-1]))
    assert not torch.equal(expected[top_layer], raw[raw_key])
    assert (straight / "checkpoints" / "step-0000012" / "ema.safetensors").is_file()

    history = metrics["history"]
    assert [entry["lambda"] for entry in history[:5]] == [0.0, 0.125, 0.25, 0.375, 0.5]
    assert all("info_nce" in entry and "l2sp" in entry for entry in history)
    run_info = json.loads((straight / "run.json").read_text(encoding="utf-8"))
    assert run_info["data"]["simcse_pairs"] == round(0.3 * run_info["data"]["pairs"])
    report = (straight / "report.md").read_text(encoding="utf-8")
    assert "InfoNCE + uniformity (temperature 0.05, t 2, lambda 0.5)" in report
    for setting in ("lambda_warmup_steps 4", "freeze_layers 1", "l2sp 0.1", "simcse_ratio 0.3", "ema_decay 0.8"):
        assert setting in report, setting


# --- recipe keys --------------------------------------------------------------------------------------


@pytest.mark.parametrize("override", ["training.l2sp=.inf", "objective.alpha=.inf", "training.learning_rate=.nan"])
def test_non_finite_value_is_rejected(override):
    key, _, value = override.partition("=")
    with pytest.raises(ConfigError, match=f"{key} must be a finite number, got {value.lstrip('.')}"):
        load_recipe(None, [override])


def test_average_cosine_bound_needs_keep_best():
    overrides = ["training.keep_best=false", "training.keep_best_max_average_cosine=0.3"]
    with pytest.raises(ConfigError, match="training.keep_best is false; set training.keep_best: true"):
        load_recipe(None, overrides)


@pytest.mark.slow
def test_unmet_average_cosine_bound_is_logged(tiny_bert, corpus, tmp_path, caplog):
    # The average cosine of n vectors is at least -1 / (n - 1), so no step meets a bound of -1.
    recipe = tiny_recipe(
        tiny_bert,
        corpus,
        tmp_path / "run",
        "training.max_steps=4",
        "training.eval_every=2",
        "training.checkpoint_every=0",
        "training.keep_best_max_average_cosine=-1",
        "evaluation.tasks=[stsb-dev]",
    )
    metrics = run_training(recipe)
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    expected = "No evaluated step had an average cosine of at most training.keep_best_max_average_cosine=-1"
    assert any(message.startswith(expected) for message in warnings), warnings
    assert any(f"(step {metrics['saved_step']})" in message for message in warnings), warnings


def test_non_finite_dev_geometry_is_skipped(tiny_bert, corpus, tmp_path, caplog):
    # Position embeddings from position 16 on are NaN, so the book sentences (over 20 tokens) embed to NaN
    # while the STS-B dev sentences of the corpus (at most 12 tokens) stay finite.
    broken = tmp_path / "nan-bert"
    shutil.copytree(tiny_bert, broken)
    weights = load_file(str(broken / "model.safetensors"))
    key = next(name for name in weights if name.endswith("position_embeddings.weight"))
    weights[key][16:] = float("nan")
    save_file(weights, str(broken / "model.safetensors"))

    books = tmp_path / "books"
    books.mkdir()
    words = "the dog runs in the park with a small red ball and a big blue book today at night and morning"
    sentences = [f"{word.capitalize()} {words}." for word in ("dog", "cat", "man", "child") * 5]
    (books / "one.txt").write_text(" ".join(sentences), encoding="utf-8")

    recipe = tiny_recipe(
        tiny_bert,
        corpus,
        tmp_path / "run",
        f"model.name={broken}",
        f"data.path={books}",
        "training.on_nonfinite=skip",
        "training.max_steps=2",
        "training.eval_every=1",
        "training.checkpoint_every=0",
        "training.keep_best_max_average_cosine=0.5",
        "evaluation.tasks=[stsb-dev]",
    )
    metrics = run_training(recipe)

    scored = [entry for entry in metrics["history"] if "stsb_dev" in entry]
    assert len(scored) == 2
    assert all("average_cosine" not in entry for entry in scored)
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert any("geometry sentences have non-finite embeddings" in message for message in warnings), warnings


LEVER_OVERRIDES = [
    "objective.lambda_warmup_steps=10",
    "training.freeze_layers=2",
    "training.l2sp=0.01",
    "data.simcse_ratio=0.2",
    "training.ema_decay=0.999",
]


def test_lever_defaults_keep_fingerprint():
    """Checkpoints written before the lever keys existed still resume: the defaults leave the hash as it was."""
    settings = Recipe().to_dict()
    for override in LEVER_OVERRIDES:
        section, key = override.split("=")[0].split(".")
        del settings[section][key]
    settings.pop("output_dir")
    settings.pop("evaluation")
    for section, key in (
        ("training", "cached"),
        ("training", "gather_across_processes"),
        ("training", "keep_best_max_average_cosine"),
    ):
        del settings[section][key]
    old_hash = hashlib.sha256(repr(sorted(settings.items())).encode()).hexdigest()[:16]
    assert recipe_fingerprint(Recipe()) == old_hash


@pytest.mark.parametrize("override", LEVER_OVERRIDES)
def test_lever_changes_fingerprint(override):
    assert recipe_fingerprint(load_recipe(None, [override])) != recipe_fingerprint(Recipe())
