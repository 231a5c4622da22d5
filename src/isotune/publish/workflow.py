"""Publish a run folder: read it, write and check the card, stage the files, then commit them or keep them."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import metadata_load
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from isotune.errors import ConfigError, PublishError
from isotune.fileio import atomic_directory
from isotune.publish.card import CardInputs, render_card
from isotune.publish.files import CARD_NAME, MARKER_PATH, list_upload_files, stage_files
from isotune.publish.metadata import build_metadata, resolve_license, validate_metadata
from isotune.publish.run_folder import RunFolder, read_run_folder
from isotune.publish.sources import describe_training_data, find_base_model
from isotune.publish.upload import HubTarget, check_reachable, commit_folder, require_token, resolve_endpoint

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PublishOptions:
    """The options of one `isotune publish`; `command` is the publish command shown in the card."""

    repo_id: str
    private: bool = False
    revision: str | None = None
    dry_run: Path | None = None
    license: str | None = None
    license_name: str | None = None
    license_link: str | None = None
    force: bool = False
    command: str = ""


@dataclass(frozen=True)
class PublishResult:
    """The repository paths published and where they went: the dry-run folder or the commit URL."""

    paths: list[str]
    location: str


def publish_run(run_dir: str | Path, options: PublishOptions) -> PublishResult:
    """Publish the run folder `run_dir` as `options` describe; the run folder is only read.

    Raises:
        ConfigError: for an invalid option (repository id, license, dry-run folder).
        DataError: for a run folder that is missing, unfinished or unreadable.
        PublishError: for an invalid card field, a file that may not be uploaded, a missing token, an
            unreachable Hub, a repository with other content, or a failed upload.
    """
    _check_repo_id(options.repo_id)
    if options.revision is not None and not options.revision.strip():
        raise ConfigError("--revision must name a branch, got an empty string.")
    run = read_run_folder(run_dir)
    files = list_upload_files(run.path)
    plots = [file.path_in_repo for file in files if file.path_in_repo.startswith("plots/")]
    metadata, card_text = build_card(run, options, plots)

    if options.dry_run is not None:
        out_dir = _check_dry_run_folder(options.dry_run, run)
        with atomic_directory(out_dir) as staging:
            paths = stage_files(files, card_text, staging)
            check_staged_card(staging, metadata)
        logger.info("Dry run: wrote the %d files that would be uploaded to %s.", len(paths), out_dir)
        return PublishResult(paths, str(out_dir))

    token = require_token()
    endpoint = resolve_endpoint()
    check_reachable(endpoint)
    target = HubTarget(options.repo_id, options.revision, options.private, options.force)
    with tempfile.TemporaryDirectory(prefix="isotune-publish-") as temporary:
        staging = Path(temporary)
        paths = stage_files(files, card_text, staging)
        check_staged_card(staging, metadata)
        url = commit_folder(
            staging,
            paths,
            target,
            token=token,
            endpoint=endpoint,
            commit_message=f"Publish isotune run {run.path.name}",
            commit_description=_commit_description(run),
        )
    logger.info("Published %d files to %s: %s", len(paths), options.repo_id, url)
    return PublishResult(paths, url)


def build_card(run: RunFolder, options: PublishOptions, plots: list[str]) -> tuple[dict, str]:
    """Return the validated card metadata and the README.md text for `run`."""
    base_model = find_base_model(run.recipe.model)
    data = describe_training_data(run.recipe.data, run.run_info)
    license_fields = resolve_license(options.license, options.license_name, options.license_link, base_model)
    metadata = build_metadata(base_model, data, license_fields)
    validate_metadata(metadata)
    inputs = CardInputs(
        repo_id=options.repo_id,
        revision=options.revision,
        metadata=metadata,
        base_model=base_model,
        data=data,
        plots=plots,
        publish_command=options.command or f"isotune publish RUN_DIR --repo-id {options.repo_id}",
    )
    return metadata, render_card(run, inputs)


def check_staged_card(staging: Path, metadata: dict) -> None:
    """Parse the staged README.md back and check that its metadata is exactly the validated `metadata`."""
    parsed = metadata_load(staging / CARD_NAME)
    if parsed != metadata:
        raise PublishError(
            f"The model card's metadata did not read back as written (wrote {metadata!r}, read {parsed!r}); "
            "nothing was uploaded. Please report this as an isotune bug."
        )


def _check_repo_id(repo_id: str) -> None:
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ConfigError(f"Invalid --repo-id {repo_id!r}: {error}") from None
    if repo_id.count("/") != 1:
        raise ConfigError(f"Invalid --repo-id {repo_id!r}: use OWNER/NAME, for example my-user/minilm-align-uniform.")


def _check_dry_run_folder(path: Path, run: RunFolder) -> Path:
    """Return the resolved dry-run folder after checking that writing it cannot touch the run or other files."""
    out_dir = Path(path).expanduser().resolve()
    if out_dir.is_relative_to(run.path) or run.path.is_relative_to(out_dir):
        raise ConfigError(
            f"--dry-run folder {out_dir} overlaps the run folder {run.path}; publishing never writes into the "
            "run folder. Choose a folder outside it."
        )
    if out_dir.exists():
        if not out_dir.is_dir():
            raise ConfigError(f"--dry-run {out_dir} is a file; pass a folder path.")
        if any(out_dir.iterdir()) and not (out_dir / MARKER_PATH).is_file():
            raise ConfigError(
                f"--dry-run folder {out_dir} is not empty and contains no earlier dry run, so it is not replaced. "
                "Choose a new or empty folder."
            )
    return out_dir


def _commit_description(run: RunFolder) -> str:
    saved_step = run.metrics.get("saved_step", "n/a")
    version = run.run_info.get("isotune_version", "n/a")
    return (
        f"Sentence-transformers model, model card and plots of an isotune run (saved step {saved_step}, "
        f"trained with isotune {version})."
    )
