"""The speed benchmarks run end to end in their --quick mode on the real books (minutes each)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _run(script: str, *arguments: str) -> str:
    completed = subprocess.run(
        [sys.executable, str(BENCH / script), *arguments], capture_output=True, text=True, timeout=1800
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout


def _import_run_child():
    sys.path.insert(0, str(BENCH))
    try:
        from benchlib import run_child
    finally:
        sys.path.remove(str(BENCH))
    return run_child


@pytest.mark.timeout(120)
def test_run_child_survives_long_output():
    # 1 MiB on each stream, far above a pipe's 64 KiB buffer, as a long run's progress bars write.
    run_child = _import_run_child()
    script = "import sys; sys.stderr.write('x' * 2**20); sys.stdout.write('y' * 2**20 + '\\n'); print('{\"ok\": 1}')"
    assert run_child([sys.executable, "-c", script], memory_limit_gb=4) == {"ok": 1}


def test_run_child_reports_failure():
    run_child = _import_run_child()
    result = run_child([sys.executable, "-c", "raise SystemExit('no data')"], memory_limit_gb=4)
    assert result == "failed (exit 1): no data"


@pytest.mark.slow
def test_bench_encode_quick(shared_data, tmp_path):
    output = tmp_path / "encode.json"
    stdout = _run("bench_encode.py", "--quick", "--levers", "--data-root", str(shared_data), "--output", str(output))
    assert "| isotune.encode |" in stdout
    results = next(iter(json.loads(output.read_text()).values()))
    assert set(results) == {
        "SentenceTransformer.encode",
        "isotune.encode",
        "isotune.encode, batching=same_length",
        "isotune.encode, batching=fixed",
    }
    for result in results.values():
        assert result["max_abs_difference"] < 1e-5
        assert len(result["wall_seconds"]) == 2


@pytest.mark.slow
def test_bench_train_speed_quick(shared_data, tmp_path):
    output = tmp_path / "train.json"
    stdout = _run("bench_train_speed.py", "--quick", "--data-root", str(shared_data), "--output", str(output))
    assert "| sentence-transformers | 64 |" in stdout
    results = json.loads(output.read_text())["results"]
    assert [result["trainer"] for result in results] == [
        "sentence-transformers",
        "isotune info_nce",
        "isotune align_uniform",
    ]
    for result in results:
        assert result["pairs_per_second"] > 0
        assert result["stsb_dev"] is not None
        assert result["peak_rss"] > 0


@pytest.mark.slow
def test_bench_train_levers_quick(shared_data):
    stdout = _run("bench_train_speed.py", "--levers", "--quick", "--data-root", str(shared_data))
    assert "| all levers (isotune now) |" in stdout
    assert "| fused |" in stdout


@pytest.mark.slow
def test_bench_scaling_quick(shared_data, tmp_path):
    output = tmp_path / "scaling.json"
    stdout = _run("bench_scaling.py", "--quick", "--data-root", str(shared_data), "--output", str(output))
    assert "Peak memory by batch size" in stdout
    rows = json.loads(output.read_text())
    assert {row["section"] for row in rows} == {"pairs", "memory"}
    assert any(row["cached"] for row in rows)


@pytest.mark.slow
def test_bench_batch_scaling_small_batches(shared_data):
    arguments = ("--batch-sizes", "8", "16", "--chunk-size", "4", "--data", str(shared_data / "books"))
    stdout = _run("bench_batch_scaling.py", *arguments)
    for mode in ("uncached", "cached"):
        for batch_size in (8, 16):
            assert re.search(rf"^{mode} +{batch_size} +[\d.]+ +[\d.]+ +[\d.]+ +-?[\d.]+$", stdout, re.MULTILINE)
    assert "objective alone" in stdout
    assert "largest batch within 24 GiB, cached: at least 256 (step peak at 16" in stdout
    assert "largest batch within 24 GiB, uncached: about" in stdout
