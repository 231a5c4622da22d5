"""Helpers shared by the speed benchmarks: book sentences, child processes with a memory watch, matmul FLOP/s."""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

GIB = 2**30
DEFAULT_DATA = "../shared/data"


def book_pairs(data_root: str | Path) -> list[tuple[str, str]]:
    """Return the consecutive-sentence pairs of the books, as `isotune train` builds them with default filters."""
    from isotune.recipe import DataConfig
    from isotune.training.run import load_training_pairs

    return load_training_pairs(DataConfig(path=str(Path(data_root) / "books"), encoding="latin-1")).pairs


def pair_subset(pairs: list[tuple[str, str]], count: int, seed: int = 0) -> list[tuple[str, str]]:
    """Return `count` pairs in a seeded random order, cycling through all pairs again when `count` exceeds them."""
    rng = random.Random(seed)
    chosen: list[tuple[str, str]] = []
    while len(chosen) < count:
        order = list(pairs)
        rng.shuffle(order)
        chosen.extend(order[: count - len(chosen)])
    return chosen


def book_sentences(data_root: str | Path, count: int, seed: int = 0) -> list[str]:
    """Return `count` distinct sentences of the book pairs, drawn with a seeded generator."""
    unique = sorted({text for pair in book_pairs(data_root) for text in pair})
    if count > len(unique):
        raise SystemExit(f"--texts {count} exceeds the {len(unique)} distinct book sentences; lower it.")
    return random.Random(seed).sample(unique, count)


def matmul_flops(size: int = 2048, repeats: int = 5) -> float:
    """Measure fp32 `torch.matmul` throughput of square `size` matrices (FLOP/s, median of `repeats` runs)."""
    import torch

    left, right = torch.randn(size, size), torch.randn(size, size)
    torch.matmul(left, right)  # warm-up: threads and allocator
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(left, right)
        seconds.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(seconds)


def run_child(command: list[str], memory_limit_gb: float) -> dict | str:
    """Run a benchmark child that prints one JSON line last; return it, or why the child failed.

    The child is killed when its resident memory passes `memory_limit_gb`. Its output goes to temporary
    files, not pipes, because this loop does not read while it watches memory and a long run's progress
    output would fill a pipe's buffer and block the child.
    """
    with (
        tempfile.TemporaryFile("w+", encoding="utf-8") as stdout,
        tempfile.TemporaryFile("w+", encoding="utf-8") as stderr,
    ):
        child = subprocess.Popen(command, stdout=stdout, stderr=stderr)
        watched = psutil.Process(child.pid)
        while child.poll() is None:
            try:
                if watched.memory_info().rss > memory_limit_gb * GIB:
                    child.kill()
                    child.wait()
                    return f"killed above {memory_limit_gb:g} GiB RSS"
            except psutil.NoSuchProcess:
                break
            time.sleep(0.1)
        child.wait()
        stdout.seek(0)
        stderr.seek(0)
        output, errors = stdout.read(), stderr.read()
    if child.returncode != 0:
        last = errors.strip().splitlines()[-1] if errors.strip() else ""
        return f"failed (exit {child.returncode}): {last}"
    return json.loads(output.strip().splitlines()[-1])


def python_command(script: str | Path, *arguments: str) -> list[str]:
    return [sys.executable, str(script), *arguments]
