"""The files a publish uploads, and the staging folder that contains exactly those files.

The repository gets the sentence-transformers model folder at its root (so `SentenceTransformer("owner/name")`
loads it), the model card as README.md, every PNG under `plots/`, and the run's recipe, metrics and run
information under `isotune/`. Checkpoints and the report are never uploaded.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from isotune.errors import PublishError

logger = logging.getLogger(__name__)

CARD_NAME = "README.md"
# Run files uploaded next to the model, as provenance; `isotune publish` also uses `isotune/run.json` to
# recognise a repository that it published before.
PROVENANCE_FILES = {
    "recipe.yaml": "isotune/recipe.yaml",
    "metrics.json": "isotune/metrics.json",
    "run.json": "isotune/run.json",
}
MARKER_PATH = "isotune/run.json"


@dataclass(frozen=True)
class UploadFile:
    """A regular file inside the run folder and the path it gets in the Hub repository."""

    source: Path
    path_in_repo: str


def list_upload_files(run_dir: Path) -> list[UploadFile]:
    """List the files of the resolved run folder `run_dir` to upload, sorted by repository path.

    The model's own README.md is left out because the generated card replaces it, and so are hidden files
    (names starting with a dot, such as partial writes).

    Raises:
        PublishError: for a symbolic link that leaves the run folder, a linked folder, or a file that is
            not a regular file.
    """
    files = [
        UploadFile(source, relative)
        for source, relative in _regular_files(run_dir / "model", run_dir)
        if relative != CARD_NAME
    ]
    plots = run_dir / "plots"
    if plots.exists() or plots.is_symlink():
        files += [
            UploadFile(source, f"plots/{relative}")
            for source, relative in _regular_files(plots, run_dir)
            if relative.lower().endswith(".png")
        ]
    for name, path_in_repo in PROVENANCE_FILES.items():
        files.append(UploadFile(_checked_source(run_dir / name, run_dir), path_in_repo))
    return sorted(files, key=lambda file: file.path_in_repo)


def _regular_files(folder: Path, run_dir: Path) -> list[tuple[Path, str]]:
    """Return (resolved source, POSIX path relative to `folder`) for each regular file under `folder`."""
    _reject_linked_folder(folder, run_dir)
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        directory = Path(dirpath)
        for name in dirnames:
            _reject_linked_folder(directory / name, run_dir)
        for name in sorted(filenames):
            path = directory / name
            relative = path.relative_to(folder).as_posix()
            if name.startswith("."):
                logger.info("Not uploading hidden file %s.", path)
                continue
            found.append((_checked_source(path, run_dir), relative))
    return found


def _reject_linked_folder(folder: Path, run_dir: Path) -> None:
    if folder.is_symlink():
        raise PublishError(
            f"{folder} is a symbolic link to a folder ({folder.resolve()}); publishing does not follow linked "
            f"folders, so that only files inside the run folder {run_dir} are uploaded. Replace the link with a "
            "copy of the folder."
        )


def _checked_source(path: Path, run_dir: Path) -> Path:
    """Return the resolved `path` after checking that it is a regular file inside `run_dir`."""
    target = path.resolve()
    if not target.is_relative_to(run_dir):
        raise PublishError(
            f"{path} is a symbolic link to {target}, outside the run folder {run_dir}. Publishing uploads only "
            "files inside the run folder; replace the link with a copy of the file."
        )
    try:
        mode = target.stat().st_mode
    except FileNotFoundError as error:
        raise PublishError(f"{path} is missing or a broken symbolic link; restore it or rerun training.") from error
    if not stat.S_ISREG(mode):
        raise PublishError(f"{path} is not a regular file; remove it from the run folder or replace it with a file.")
    return target


def stage_files(files: list[UploadFile], card_text: str, staging: Path) -> list[str]:
    """Copy `files` into the empty folder `staging` at their repository paths and write the card as README.md.

    Returns the repository paths written, sorted. The run folder is only read.
    """
    for file in files:
        destination = staging / file.path_in_repo
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file.source, destination)
    (staging / CARD_NAME).write_text(card_text, encoding="utf-8")
    return sorted([file.path_in_repo for file in files] + [CARD_NAME])
