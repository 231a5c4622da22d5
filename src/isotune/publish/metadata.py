"""The model card's YAML metadata: built from the run, checked offline before anything is uploaded."""

from __future__ import annotations

from typing import Any

from huggingface_hub import ModelCardData
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from isotune.errors import ConfigError, PublishError
from isotune.publish.sources import BaseModel, TrainingData

# License identifiers that the Hub accepts in a card, from the table in huggingface/hub-docs
# docs/hub/repositories-licenses.md (commit 008d54d). NOTE: the Hub adds identifiers over time; a newer one
# is rejected here, and `--license other --license-name NAME` publishes under it.
HUB_LICENSES = frozenset(
    """apache-2.0 mit openrail bigscience-openrail-m creativeml-openrail-m bigscience-bloom-rail-1.0
    bigcode-openrail-m afl-3.0 artistic-2.0 bsl-1.0 bsd bsd-2-clause bsd-3-clause bsd-3-clause-clear c-uda cc
    cc0-1.0 cc-by-2.0 cc-by-2.5 cc-by-3.0 cc-by-4.0 cc-by-sa-3.0 cc-by-sa-4.0 cc-by-nc-2.0 cc-by-nc-3.0
    cc-by-nc-4.0 cc-by-nd-4.0 cc-by-nc-nd-3.0 cc-by-nc-nd-4.0 cc-by-nc-sa-2.0 cc-by-nc-sa-3.0 cc-by-nc-sa-4.0
    cdla-sharing-1.0 cdla-permissive-1.0 cdla-permissive-2.0 wtfpl ecl-2.0 epl-1.0 epl-2.0 etalab-2.0 eupl-1.1
    agpl-3.0 gfdl gpl gpl-2.0 gpl-3.0 lgpl lgpl-2.1 lgpl-3.0 isc lppl-1.3c ms-pl mpl-2.0 odc-by odbl openrail++
    osl-3.0 postgresql ofl-1.1 ncsa unlicense zlib pddl lgpl-lr deepfloyd-if-license llama2 gemma unknown
    other""".split()
)
LIBRARY_NAME = "sentence-transformers"
PIPELINE_TAG = "sentence-similarity"
# Pipeline tags under which the Hub serves a sentence-embedding model.
EMBEDDING_PIPELINE_TAGS = frozenset({"sentence-similarity", "feature-extraction"})
TAGS = ["sentence-transformers", "feature-extraction", "sentence-similarity", "alignment-uniformity", "isotune"]


def resolve_license(
    license_id: str | None, license_name: str | None, license_link: str | None, base_model: BaseModel
) -> dict[str, str]:
    """Return the license fields of the card: from the options, else from the base model's own card.

    A fine-tuned model usually inherits the terms of its base model, so its license is the default. No
    license is guessed beyond that.

    Raises:
        ConfigError: when no license is given and the base model's card (read offline) names none.
    """
    if license_id is None:
        inherited = base_model.card_metadata.get("license")
        if not isinstance(inherited, str) or not inherited.strip():
            where = (
                "no card in its folder, the bundled copy or the Hugging Face cache"
                if base_model.card_text is None
                else "its card names no license"
            )
            raise ConfigError(
                f"No license for the model card: the base model {base_model.name} sets none ({where}). Pass "
                "--license with a Hub license id, for example --license apache-2.0, choosing one that the base "
                "model's and the training data's terms allow."
            )
        license_id = inherited.strip()
        license_name = license_name or base_model.card_metadata.get("license_name")
        license_link = license_link or base_model.card_metadata.get("license_link")
    fields = {"license": license_id}
    if license_name:
        fields["license_name"] = license_name
    if license_link:
        fields["license_link"] = license_link
    return fields


def build_metadata(base_model: BaseModel, data: TrainingData, license_fields: dict[str, str]) -> dict[str, Any]:
    """Return the card metadata as a plain dict; fields without a value are left out, never set to null."""
    card_data = ModelCardData(
        base_model=base_model.hub_id,
        datasets=list(data.hub_ids) or None,
        library_name=LIBRARY_NAME,
        pipeline_tag=PIPELINE_TAG,
        tags=list(TAGS),
        **license_fields,
    )
    return card_data.to_dict()


def validate_metadata(metadata: dict[str, Any]) -> None:
    """Check the card metadata offline, the way the Hub would reject it.

    Raises:
        PublishError: naming the first invalid field, its value and the fix.
    """
    _reject_nulls(metadata, "metadata")
    _require_string(metadata, "library_name")
    if metadata["library_name"] != LIBRARY_NAME:
        _invalid("library_name", metadata["library_name"], f"must be {LIBRARY_NAME!r} so the Hub loads it correctly")
    _require_string(metadata, "pipeline_tag")
    if metadata["pipeline_tag"] not in EMBEDDING_PIPELINE_TAGS:
        _invalid("pipeline_tag", metadata["pipeline_tag"], f"must be one of {sorted(EMBEDDING_PIPELINE_TAGS)}")
    _require_string(metadata, "license")
    if metadata["license"] not in HUB_LICENSES:
        _invalid(
            "license",
            metadata["license"],
            "is not a Hub license id (see https://huggingface.co/docs/hub/repositories-licenses); pass --license "
            "with one, or --license other --license-name NAME",
        )
    if metadata["license"] == "other" and not metadata.get("license_name"):
        _invalid("license_name", None, "is required with license 'other'; pass --license-name NAME")
    for key in ("license_name", "license_link"):
        if key in metadata:
            _require_string(metadata, key)
    if "license_link" in metadata and not metadata["license_link"].startswith(("https://", "http://", "LICENSE")):
        _invalid("license_link", metadata["license_link"], "must be a URL or the path of a LICENSE file in the repo")
    if "base_model" in metadata:
        _require_string(metadata, "base_model")
        _require_repo_id("base_model", metadata["base_model"])
    if "datasets" in metadata:
        _require_string_list(metadata, "datasets")
        for dataset in metadata["datasets"]:
            _require_repo_id("datasets", dataset)
    _require_string_list(metadata, "tags")
    for tag in metadata["tags"]:
        if not tag.strip() or tag != tag.strip():
            _invalid("tags", tag, "contains an empty tag or one with surrounding spaces")


def _reject_nulls(value: Any, where: str) -> None:
    if value is None:
        raise PublishError(
            f"Invalid model card metadata: {where} is null; every field needs a value or must be left out."
        )
    if isinstance(value, dict):
        for key, item in value.items():
            _reject_nulls(item, key if where == "metadata" else f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _reject_nulls(item, f"{where}[{index}]")


def _invalid(field_name: str, value: Any, problem: str) -> None:
    raise PublishError(f"Invalid model card metadata: field {field_name!r} = {value!r} {problem}.")


def _require_string(metadata: dict[str, Any], key: str) -> None:
    value = metadata.get(key)
    if not isinstance(value, str) or not value.strip():
        _invalid(key, value, "must be a non-empty string")


def _require_string_list(metadata: dict[str, Any], key: str) -> None:
    value = metadata.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(item, str) for item in value):
        _invalid(key, value, "must be a non-empty list of strings")
    if len(set(value)) != len(value):
        _invalid(key, value, "lists a value twice")


def _require_repo_id(key: str, value: str) -> None:
    try:
        validate_repo_id(value)
    except HFValidationError as error:
        _invalid(key, value, f"is not a Hub repository id ({error})")
