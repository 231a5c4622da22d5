"""STS avg, ranking and Spearman correlations over runs, and their section in `isotune compare`."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from isotune.cli import main
from isotune.errors import ConfigError
from isotune.evaluation.correlation import correlate, correlation_section, spearman_with_permutation_p
from isotune.evaluation.scores import STS_AVG, TRANSFER_AVG, rank_labels, score_rows


def _results(sts: dict[str, float], alignment: float, uniformity: float, transfer: dict | None = None) -> dict:
    """Build `{task: result}` in the layout of `run_evaluation`, with only the fields the scores read."""
    results = {task: {"spearman": {"all": value}} for task, value in sts.items()}
    for task, accuracy in (transfer or {}).items():
        results[task] = {"accuracy": accuracy}
    results["geometry"] = {"alignment": alignment, "uniformity": uniformity, "average_cosine": 0.1}
    return results


def _write_run(folder: Path, after: dict) -> Path:
    folder.mkdir(parents=True)
    before = _results({"stsb-dev": 80.0, "sts12": 70.0}, 0.3, -3.0)
    (folder / "metrics.json").write_text(json.dumps({"before": before, "after": after}), encoding="utf-8")
    return folder


def _reference_permutation_p(x: list[float], y: list[float]) -> float:
    """Two-sided p-value by enumerating every pairing of x's ranks with y's ranks (Spearman without ties)."""
    n = len(x)
    rank_x = np.argsort(np.argsort(x)) + 1
    rank_y = np.argsort(np.argsort(y)) + 1

    def rho(ranks: np.ndarray) -> float:
        return 1 - 6 * float(((ranks - rank_y) ** 2).sum()) / (n * (n * n - 1))

    observed = rho(rank_x)
    extreme = sum(abs(rho(np.array(order))) >= abs(observed) - 1e-12 for order in itertools.permutations(rank_x))
    return extreme / len(list(itertools.permutations(rank_x)))


def test_spearman_matches_hand_computed_value():
    # Rank differences -1, 1, -1, 1, 0: rho = 1 - 6 * 4 / (5 * 24) = 0.8.
    x, y = [1.0, 2.0, 3.0, 4.0, 5.0], [2.0, 1.0, 4.0, 3.0, 5.0]
    rho, p_value = spearman_with_permutation_p(x, y)
    assert rho == pytest.approx(0.8)
    assert p_value == pytest.approx(_reference_permutation_p(x, y))


def test_spearman_p_value_for_seven_runs_is_exact():
    x = [0.31, 0.25, 0.28, 0.22, 0.35, 0.27, 0.24]
    y = [70.1, 72.5, 71.0, 73.2, 69.0, 71.9, 72.0]
    rho, p_value = spearman_with_permutation_p(x, y)
    assert rho < -0.9
    assert p_value == pytest.approx(_reference_permutation_p(x, y))


def test_sts_avg_uses_tasks_every_row_has():
    rows = {
        "a": _results({"stsb-dev": 80.0, "sts12": 60.0}, 0.2, -3.5),
        "b": _results({"stsb-dev": 84.0}, 0.3, -3.0),
    }
    scores = score_rows(rows)
    assert scores.sts_tasks == ["stsb-dev"]
    assert scores.values["a"][STS_AVG] == pytest.approx(80.0)
    assert scores.values["b"][STS_AVG] == pytest.approx(84.0)
    assert not scores.has(TRANSFER_AVG)


def test_transfer_avg_is_mean_accuracy():
    rows = {"a": _results({"stsb-dev": 80.0}, 0.2, -3.5, transfer={"mr": 70.0, "trec": 90.0})}
    scores = score_rows(rows)
    assert scores.transfer_tasks == ["mr", "trec"]
    assert scores.values["a"][TRANSFER_AVG] == pytest.approx(80.0)


def test_correlation_over_constructed_runs():
    alignment = [0.1, 0.2, 0.3, 0.4, 0.5]
    sts = [82.0, 81.0, 84.0, 83.0, 85.0]  # ranks 2 1 4 3 5 against alignment's 1 2 3 4 5: rho 0.8
    rows = {
        f"run{i}": _results({"stsb-dev": s}, a, -3.0 - i) for i, (a, s) in enumerate(zip(alignment, sts, strict=True))
    }
    result = correlate(score_rows(rows), "alignment", STS_AVG)
    assert result.n == 5
    assert result.rho == pytest.approx(0.8)
    assert result.undefined is None
    # Uniformity falls as i grows while STS rises in rank: -0.8.
    assert correlate(score_rows(rows), "uniformity", STS_AVG).rho == pytest.approx(-0.8)


def test_correlation_undefined_for_two_runs():
    rows = {"a": _results({"stsb-dev": 80.0}, 0.2, -3.5), "b": _results({"stsb-dev": 84.0}, 0.3, -3.0)}
    result = correlate(score_rows(rows), "alignment", STS_AVG)
    assert result.rho is None
    assert result.p_value is None
    assert "only 2 rows have both alignment and STS avg" in result.undefined


def test_correlation_undefined_for_constant_column():
    rows = {f"run{i}": _results({"stsb-dev": 80.0 + i}, 0.25, -3.0 - i) for i in range(4)}
    scores = score_rows(rows)
    result = correlate(scores, "alignment", STS_AVG)
    assert result.rho is None
    assert "alignment is the same (0.25) in all 4 rows" in result.undefined
    section = correlation_section(scores, "4 runs")
    assert "nan" not in section.lower()
    assert "| alignment | STS avg | 4 | undefined | n/a |" in section
    assert "| uniformity | STS avg | 4 | -1.000 |" in section


def test_rank_labels_orders_by_score():
    rows = {
        "low": _results({"stsb-dev": 70.0}, 0.1, -3.9),
        "high": _results({"stsb-dev": 90.0}, 0.4, -3.1),
        "mid": _results({"stsb-dev": 80.0}, 0.3, -3.5),
    }
    scores = score_rows(rows)
    assert rank_labels(scores, STS_AVG) == ["high", "mid", "low"]
    assert rank_labels(scores, "alignment") == ["low", "mid", "high"]


def test_rank_labels_rejects_unknown_and_absent_scores():
    scores = score_rows({"a": _results({"stsb-dev": 70.0}, 0.1, -3.9)})
    with pytest.raises(ConfigError, match="Unknown score 'accuracy'"):
        rank_labels(scores, "accuracy")
    with pytest.raises(ConfigError, match="No row has the score 'transfer_avg'.*sts_avg"):
        rank_labels(scores, TRANSFER_AVG)


def test_compare_ranks_and_correlates_runs(tmp_path, capsys):
    alignment = [0.1, 0.2, 0.3, 0.4, 0.5]
    sts = [82.0, 81.0, 84.0, 83.0, 85.0]
    folders = [
        _write_run(tmp_path / f"run{i}", _results({"stsb-dev": s, "sts12": s - 10}, a, -3.0 - i))
        for i, (a, s) in enumerate(zip(alignment, sts, strict=True))
    ]
    markdown = tmp_path / "compare.md"
    status = main(["compare", *map(str, folders), "--markdown", str(markdown)])
    out = capsys.readouterr().out
    assert status == 0
    assert "## Ranking by STS avg" in out
    ranking = [line for line in out.splitlines() if line.startswith("| 1 | ")]
    assert ranking[0].startswith("| 1 | run4 after | 80.00 |")  # STS avg of 85 and 75
    assert "Spearman's rho over the 5 compared models" in out
    assert "| alignment | STS avg | 5 | +0.800 |" in out
    assert "STS avg is the mean Spearman x 100 (all pairs) of the STS tasks that every row has: stsb-dev, sts12." in out
    assert markdown.read_text(encoding="utf-8").strip() == out.strip()


def test_compare_rank_by_alignment(tmp_path, capsys):
    folders = [
        _write_run(tmp_path / f"run{i}", _results({"stsb-dev": 80.0 + i}, 0.5 - 0.1 * i, -3.0)) for i in range(3)
    ]
    status = main(["compare", *map(str, folders), "--rank-by", "alignment"])
    out = capsys.readouterr().out
    assert status == 0
    assert "| 1 | run2 after |" in out


def test_compare_reports_undefined_correlation(tmp_path, capsys):
    folders = [_write_run(tmp_path / f"run{i}", _results({"stsb-dev": 80.0 + i}, 0.2 + i, -3.0)) for i in range(2)]
    status = main(["compare", *map(str, folders)])
    out = capsys.readouterr().out
    assert status == 0
    assert "alignment vs STS avg is undefined: only 2 rows have both alignment and STS avg" in out
    assert "nan" not in out.lower()


def test_compare_run_without_after_row(tmp_path, capsys):
    folder = tmp_path / "run"
    folder.mkdir()
    before = _results({"stsb-dev": 80.0}, 0.2, -3.0)
    (folder / "metrics.json").write_text(json.dumps({"before": before}), encoding="utf-8")
    status = main(["compare", str(folder)])
    out = capsys.readouterr().out
    assert status == 0
    assert "| run before | 80.00 |" in out
    assert "No ranking: no eval variant or run after row to rank (before rows are not ranked)." in out


def test_compare_without_task_results_fails(tmp_path, capsys):
    path = tmp_path / "layers.json"
    document = {"schema": "isotune-eval/1", "variants": [], "layers": {"models": []}}
    path.write_text(json.dumps(document), encoding="utf-8")
    status = main(["compare", str(path)])
    captured = capsys.readouterr()
    assert status == 2
    assert f"Nothing to compare: no task results in {path}" in captured.err
    assert captured.out == ""


def test_compare_rank_by_unknown_score_fails(tmp_path, capsys):
    folder = _write_run(tmp_path / "run", _results({"stsb-dev": 80.0}, 0.2, -3.0))
    status = main(["compare", str(folder), "--rank-by", "accuracy"])
    assert status == 2
    assert "Unknown score 'accuracy' to rank by" in capsys.readouterr().err


def test_compare_expands_sweep_folder(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    for i in range(3):
        _write_run(sweep / f"run{i}", _results({"stsb-dev": 80.0 + i}, 0.3 - 0.1 * i, -3.0 - i))
    # run3 stopped after its evaluation before training; run4 has not started.
    (sweep / "run3").mkdir()
    before = _results({"stsb-dev": 70.0}, 0.3, -3.0)
    (sweep / "run3" / "metrics.json").write_text(json.dumps({"before": before}), encoding="utf-8")
    names = ["run0", "run1", "run2", "run3", "run4"]
    record = {
        "schema": "isotune-sweep/1",
        "recipe": "recipe.yaml",
        "overrides": [],
        "base_recipe": {},
        "grid": {},
        "runs": [{"name": name, "values": {}, "overrides": []} for name in names],
    }
    (sweep / "sweep.json").write_text(json.dumps(record), encoding="utf-8")
    status = main(["compare", str(sweep)])
    captured = capsys.readouterr()
    assert status == 0
    assert f"{sweep}: 2 of 5 sweep runs are not finished (no after results) and are left out." in captured.err
    assert "| 1 | run2 after |" in captured.out
    assert "| alignment | STS avg | 3 | -1.000 |" in captured.out
    assert "run3" not in captured.out


def test_compare_unreadable_sweep_record_names_fix(tmp_path, capsys):
    (tmp_path / "sweep.json").write_text("[]", encoding="utf-8")
    status = main(["compare", str(tmp_path)])
    err = capsys.readouterr().err
    assert status == 2
    assert "is not an isotune sweep record" in err
    assert "pass its run folders to isotune compare instead." in err
    assert "--output-dir" not in err
