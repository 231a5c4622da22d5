"""The error for evaluation data that is absent, which `isotune eval` reports and skips."""

from __future__ import annotations

from pathlib import Path

from isotune.errors import DataError


class MissingDataError(DataError):
    """The files of a task (or of one of its splits) are not under the data root, or its Hub copy is absent."""


def require_file(path: Path, what: str) -> Path:
    """Return `path` if it is a file; raise MissingDataError naming `what` and the path otherwise."""
    if not path.is_file():
        raise MissingDataError(f"{what} not found at {path}.")
    return path
