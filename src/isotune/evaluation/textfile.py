"""Line reading for evaluation data files whose encoding is UTF-8 on most lines but not guaranteed."""

from __future__ import annotations

import codecs
import logging
from pathlib import Path

from isotune.errors import DataError

logger = logging.getLogger(__name__)


def read_lines(path: Path) -> list[str]:
    """Read `path` as a list of lines without their line endings (`\\n` or `\\r\\n`).

    Each line is decoded as UTF-8, and a line that is not valid UTF-8 is decoded as Latin-1 instead, which
    maps every byte to one character, so no text is lost. The number of such lines is logged as a warning.
    Lines are split on `\\n` only: `str.splitlines` would also split inside sentences that contain
    characters such as U+2028 or U+0085 and shift every later line against its gold score.
    A final line ending does not add an empty line, and a UTF-8 byte-order mark at the start is dropped.
    """
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError(f"Failed to read {path}: {error}.") from error
    raw_lines = data.split(b"\n")
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()
    if raw_lines:
        raw_lines[0] = raw_lines[0].removeprefix(codecs.BOM_UTF8)

    lines = []
    latin1_lines = []
    for number, raw in enumerate(raw_lines, start=1):
        raw = raw.removesuffix(b"\r")
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            lines.append(raw.decode("latin-1"))
            latin1_lines.append(number)
    if latin1_lines:
        logger.warning(
            "%s: %d of %d lines are not valid UTF-8 and were decoded as Latin-1 (first at line %d).",
            path,
            len(latin1_lines),
            len(lines),
            latin1_lines[0],
        )
    return lines
