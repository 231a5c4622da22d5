"""Atomic writes: content, permissions, and what a failure leaves behind."""

from __future__ import annotations

import os
import stat

import pytest

from isotune.fileio import atomic_directory, write_json_atomic, write_text_atomic


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture()
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_text_file_follows_umask(tmp_path, umask_022):
    path = write_text_atomic(tmp_path / "a.txt", "hello")
    assert path.read_text(encoding="utf-8") == "hello"
    assert _mode(path) == 0o644


def test_json_writes_nan_as_null(tmp_path):
    path = write_json_atomic(tmp_path / "a.json", {"x": float("nan"), "y": [1.5]})
    assert path.read_text(encoding="utf-8") == '{\n  "x": null,\n  "y": [\n    1.5\n  ]\n}\n'


def test_directory_and_files_follow_umask(tmp_path, umask_022):
    with atomic_directory(tmp_path / "out") as staging:
        (staging / "sub").mkdir(mode=0o700)
        (staging / "sub" / "weights").write_bytes(b"1")
        os.chmod(staging / "sub" / "weights", 0o600)
    assert _mode(tmp_path / "out") == 0o755
    assert _mode(tmp_path / "out" / "sub") == 0o755
    assert _mode(tmp_path / "out" / "sub" / "weights") == 0o644


def test_directory_replaces_old_content(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("old", encoding="utf-8")
    with atomic_directory(tmp_path / "out") as staging:
        (staging / "new.txt").write_text("new", encoding="utf-8")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_failed_directory_write_keeps_old_content(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("old", encoding="utf-8")
    with pytest.raises(RuntimeError), atomic_directory(tmp_path / "out") as staging:
        (staging / "partial.txt").write_text("half", encoding="utf-8")
        raise RuntimeError("writer crashed")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["old.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
