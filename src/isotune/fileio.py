"""Atomic file and folder writes: a reader sees the old content or the new one, never a mix."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from isotune.errors import ConfigError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _apply_umask(path: Path, mode: int) -> None:
    """Give `path` the permissions an ordinary create would: mkstemp and mkdtemp make them owner-only."""
    os.chmod(path, mode & ~_current_umask())


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to `path` through a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        _apply_umask(Path(tmp_name), 0o666)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    _fsync_dir(path.parent)
    return path


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    """Write `data` as indented JSON (NaN becomes null) with `write_text_atomic`."""
    return write_text_atomic(path, json.dumps(_nan_to_none(data), indent=2, sort_keys=False) + "\n")


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {key: _nan_to_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_to_none(item) for item in value]
    return value


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty staging folder that replaces `path` only when the block finishes without error.

    The staging folder is a sibling of `path` (same file system, so the final rename is atomic). An
    existing `path` is first renamed aside and removed after the swap, so a crash at any point leaves
    either the old folder or the new one under `path`, plus at most a leftover `.tmp` or `.old` sibling.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    _apply_umask(staging, 0o777)
    try:
        yield staging
        for item in staging.rglob("*"):
            if item.is_dir():
                _apply_umask(item, 0o777)
            elif item.is_file():
                # Some writers (safetensors among them) create owner-only files through temporary files.
                _apply_umask(item, 0o666)
                with open(item, "rb") as handle:
                    os.fsync(handle.fileno())
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(path, old)
        os.replace(staging, path)
        _fsync_dir(path.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def check_output_paths(files: dict[str, Path | None], folders: dict[str, Path | None]) -> None:
    """Check the output paths of command line options before any work, so a bad one fails in seconds.

    `files` and `folders` map an option name (`--markdown`) to its path, or None when the option is unset.
    A file path must not be a folder, a folder path must not be a file, and the nearest existing parent of
    either must be a folder.

    Raises:
        ConfigError: naming the option, the path and what to pass instead.
    """
    for option, path in files.items():
        if path is not None and path.is_dir():
            raise ConfigError(f"{option} {path} is a folder; pass a file path.")
    for option, path in folders.items():
        if path is not None and path.is_file():
            raise ConfigError(f"{option} {path} is a file; pass a folder path.")
    for option, path in {**files, **folders}.items():
        if path is None:
            continue
        parent = next((folder for folder in path.absolute().parents if folder.exists()), None)
        if parent is not None and not parent.is_dir():
            raise ConfigError(f"{option} {path} cannot be created because {parent} is a file; pass another path.")
