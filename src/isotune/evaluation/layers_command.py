"""`isotune eval --layers`: layer-wise geometry of a model and of its base model, as a table, JSON and plot.

The base model of a run folder or checkpoint is the `model` section of the run's recipe.yaml, built as
training built it, so the two columns show each layer before and after fine-tuning. `--layers-base`
names another model to compare with instead.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path

from sentence_transformers import SentenceTransformer

from isotune.errors import ConfigError, DataError, ModelNotFoundError
from isotune.evaluation.geometry import sample_sentences
from isotune.evaluation.layers import LAYER_MEASURES, evaluate_layers
from isotune.evaluation.suite import GEOMETRY_NUM_SENTENCES
from isotune.evaluation.tasks import STS_TASKS, corpus_texts
from isotune.recipe import ModelConfig

logger = logging.getLogger(__name__)

UNIFORMITY_T = 2.0
RECIPE_FILE = "recipe.yaml"
BASE_NOT_FOUND = (
    f"The run's base model (model.name in {RECIPE_FILE}) failed to load; pass --layers-base MODEL to compare with "
    "another copy of it."
)

# Table columns: measure key -> (header, decimals).
LAYER_COLUMNS = {"average_cosine": ("avg cos", 3), "uniformity": ("uniform", 3), "effective_rank": ("eff. rank", 1)}


@dataclass(frozen=True)
class BaseModel:
    """The model to compare with: its name (Hub id or folder) and, for a run's base, the recipe settings."""

    name: str
    config: ModelConfig | None = None


def check_layer_options(args: argparse.Namespace) -> None:
    """Reject invalid `--layers` options, before any data or model is loaded.

    Raises ConfigError for `--layers-base` or `--layers-sentences` without `--layers`, a sample of fewer than
    2 sentences, and a `--geometry-pairs` that is not an STS task.
    """
    if not args.layers:
        options = {"--layers-base": args.layers_base, "--layers-sentences": args.layers_sentences}
        given_options = [flag for flag, value in options.items() if value is not None]
        if len(given_options) == 1:
            raise ConfigError(f"{given_options[0]} only applies to --layers; add --layers or drop it.")
        if given_options:
            raise ConfigError(f"{' and '.join(given_options)} only apply to --layers; add --layers or drop them.")
        return
    if args.layers_sentences is not None and args.layers_sentences < 2:
        raise ConfigError(f"--layers-sentences must be >= 2, got {args.layers_sentences}.")
    if args.geometry_pairs not in STS_TASKS:
        raise ConfigError(
            f"--geometry-pairs {args.geometry_pairs!r} is not an STS task; --layers takes its sentences from one "
            f"of {', '.join(STS_TASKS)}."
        )


def layer_sentences(args: argparse.Namespace) -> list[str]:
    """Sample the sentences of `--geometry-pairs`, as the geometry task does: up to N distinct, drawn with `--seed`.

    With the default of 2,000 sentences this is the geometry task's own sample, so the last layer of a
    mean-pooling model reproduces its uniformity, average cosine and effective rank.
    """
    num_sentences = args.layers_sentences or GEOMETRY_NUM_SENTENCES
    texts = corpus_texts(args.geometry_pairs, args.data_root, args.sts_source)
    sentences = sample_sentences(texts, num_sentences, args.seed)
    if len(sentences) < 2:
        raise DataError(
            f"Task {args.geometry_pairs!r} gives {len(sentences)} distinct sentence(s); --layers needs at least 2. "
            "Choose another task with --geometry-pairs."
        )
    return sentences


def base_model(args: argparse.Namespace) -> BaseModel | None:
    """Return the model that `--layers` compares MODEL with, or None when there is none.

    `--layers-base` wins. Otherwise a run folder or checkpoint compares with the `model` section of its
    run's recipe.yaml. A run folder without recipe.yaml has no base, and neither has a plain model. The base
    model is located here but not loaded, so a bad recipe or a missing base model stops the command before
    any task runs.
    """
    from isotune.encoder import resolve_model_path
    from isotune.evaluation.model_source import resolve_model_source
    from isotune.recipe import load_recipe

    if args.layers_base is not None:
        resolve_model_path(resolve_model_source(args.layers_base).model)
        return BaseModel(args.layers_base)
    source = resolve_model_source(args.model)
    if source.kind == "model":
        return None
    recipe_path = Path(source.model).parent / RECIPE_FILE
    if not recipe_path.is_file():
        logger.warning(
            "No %s next to %s, so --layers has no base model to compare with; pass --layers-base MODEL.",
            RECIPE_FILE,
            source.model,
        )
        return None
    try:
        recipe = load_recipe(recipe_path)
    except ConfigError as error:
        raise DataError(f"{recipe_path} is not a valid recipe ({error}); pass --layers-base MODEL instead.") from error
    try:
        resolve_model_path(recipe.model.name, recipe.model.revision)
    except ModelNotFoundError as error:
        raise ModelNotFoundError(f"{BASE_NOT_FOUND}\n{error}") from error
    return BaseModel(recipe.model.name, recipe.model)


def _load_base(base: BaseModel, device: str) -> SentenceTransformer:
    from isotune.encoder import build_encoder
    from isotune.evaluation.model_source import load_model

    if base.config is not None:
        try:
            return build_encoder(base.config, device=device)
        except ModelNotFoundError as error:
            raise ModelNotFoundError(f"{BASE_NOT_FOUND}\n{error}") from error
    model, _ = load_model(base.name, device=device)
    return model


def _measure(args: argparse.Namespace, model: SentenceTransformer, name: str, sentences: list[str]) -> dict:
    logger.info("Measuring the hidden states of every layer of %s on %d sentences", name, len(sentences))
    return evaluate_layers(model, sentences, batch_size=args.batch_size, t=UNIFORMITY_T, show_progress=not args.quiet)


def evaluate_layer_models(
    args: argparse.Namespace, model: SentenceTransformer, base: BaseModel | None, sentences: list[str]
) -> dict:
    """Measure every layer of MODEL and of its base model on `sentences`; return the `layers` JSON section.

    The section lists the base model first. Its labels are `before` and `after` when the base comes from
    the run's recipe, `base` and `model` for `--layers-base`, and `model` alone when there is no base.
    """
    names: dict[str, str] = {}
    results: dict[str, dict] = {}
    if base is not None:
        base_label = "before" if base.config is not None else "base"
        names[base_label] = base.name
        # The base model is loaded only for this call, so its memory is freed before MODEL is measured.
        results[base_label] = _measure(args, _load_base(base, args.device), base.name, sentences)
    model_label = "model" if base is None or base.config is None else "after"
    names[model_label] = args.model
    results[model_label] = _measure(args, model, args.model, sentences)
    return {
        "sentences": {"task": args.geometry_pairs, "num_sentences": len(sentences), "seed": args.seed},
        "pooling": "mean",
        "uniformity_t": UNIFORMITY_T,
        "models": [{"label": label, "model": names[label], **result} for label, result in results.items()],
    }


def _cell(layers: list[dict], index: int, key: str, decimals: int) -> str:
    return f"{layers[index][key]:.{decimals}f}" if index < len(layers) else "n/a"


def layers_table(section: dict) -> str:
    """Format the `layers` section as a Markdown table: one row per layer, one column per measure and model."""
    models = section["models"]
    sentences = section["sentences"]
    legend = "; ".join(f"{model['label']} = {model['model']}" for model in models)
    lines = [
        f"Mean-pooled hidden states per layer, {sentences['num_sentences']} sentences of {sentences['task']} "
        f"({legend}):",
        "",
        "| layer | "
        + " | ".join(f"{LAYER_COLUMNS[key][0]} {model['label']}" for key in LAYER_MEASURES for model in models)
        + " |",
        "|---:|" + "---:|" * (len(LAYER_MEASURES) * len(models)),
    ]
    for index in range(max(len(model["layers"]) for model in models)):
        cells = [
            _cell(model["layers"], index, key, LAYER_COLUMNS[key][1]) for key in LAYER_MEASURES for model in models
        ]
        lines.append(f"| {index} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_layers_plot(section: dict, folder: Path) -> Path:
    """Write `layers.png` (three panels, one line per model) into `folder` and return its path."""
    from isotune.evaluation.plots import plot_layers

    lines = {f"{model['label']}: {model['model']}": model["layers"] for model in section["models"]}
    return plot_layers(lines, folder / "layers.png")
