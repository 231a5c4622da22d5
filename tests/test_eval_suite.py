"""Tests of the embedding cache, the task registry and the evaluation runner on the fixture data root."""

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from isotune.errors import ConfigError, DataError
from isotune.evaluation.embedding import CachedEmbedder
from isotune.evaluation.suite import (
    DEFAULT_TASKS,
    KNOWN_TASKS,
    markdown_table,
    resolve_tasks,
    run_evaluation,
    summary_row,
)

FIXTURE_ROOT = Path(__file__).resolve().parents[1] / "data" / "fixtures" / "eval" / "root"
FIXTURE_TASKS = ["stsb-dev", "sts12", "sick-trial", "geometry"]


class HashEmbed:
    """Embed each text as a pseudo-random 8-d vector seeded by its SHA-256 digest; record every call."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")
            rows.append(np.random.default_rng(seed).normal(size=8))
        return np.array(rows, dtype=np.float32).reshape(len(texts), 8)


def test_cache_embeds_each_text_once():
    embed = HashEmbed()
    cached = CachedEmbedder(embed)
    first = cached(["a", "b", "a"])
    second = cached(["b", "c", "a"])
    assert embed.calls == [["a", "b"], ["c"]]
    assert cached.num_calls == 2
    assert len(cached) == 3
    np.testing.assert_array_equal(first[0], first[2])
    np.testing.assert_array_equal(second[2], first[0])
    np.testing.assert_allclose(np.linalg.norm(second, axis=1), 1.0, rtol=1e-6)


def test_cache_skips_call_when_all_cached():
    embed = HashEmbed()
    cached = CachedEmbedder(embed)
    cached.add(["a", "b"])
    cached(["b", "a"])
    assert len(embed.calls) == 1


def test_cache_matches_direct_embedding():
    embed = HashEmbed()
    texts = ["one", "two", "three"]
    direct = embed(texts)
    direct /= np.linalg.norm(direct, axis=1, keepdims=True)
    np.testing.assert_allclose(CachedEmbedder(HashEmbed())(texts), direct, rtol=1e-6)


def test_run_evaluation_embeds_unique_texts_once():
    embed = HashEmbed()
    results = run_evaluation(embed, FIXTURE_TASKS, FIXTURE_ROOT, show_progress=False)
    assert list(results) == FIXTURE_TASKS
    assert len(embed.calls) == 1
    (texts,) = embed.calls
    assert len(texts) == len(set(texts))
    # "A man is playing a guitar." occurs twice in STS-B dev and again in the geometry sample.
    assert "A man is playing a guitar." in texts


def test_run_evaluation_results_on_fixtures():
    results = run_evaluation(HashEmbed(), FIXTURE_TASKS, FIXTURE_ROOT, show_progress=False)
    assert results["sts12"]["pairs"] == {"alpha": 3, "beta": 3}
    assert results["sts12"]["skipped"] == {"alpha": 1, "beta": 0}
    assert set(results["sts12"]["spearman"]) == {"alpha", "beta", "all", "wmean"}
    assert results["stsb-dev"]["pairs"] == {"sts-dev": 5}
    geometry = results["geometry"]
    # Two STS-B dev fixture pairs have gold >= 4; the sample is the 9 distinct STS-B dev sentences.
    assert geometry["num_positive_pairs"] == 2
    assert geometry["num_sentences"] == 9
    assert -8.0 <= geometry["uniformity"] <= 0.0


def test_run_evaluation_geometry_uses_given_sentences():
    sentences = [f"book sentence {index}" for index in range(50)]
    embed = HashEmbed()
    results = run_evaluation(embed, ["geometry"], FIXTURE_ROOT, sentences=sentences, show_progress=False)
    assert results["geometry"]["num_sentences"] == 50
    assert set(sentences) <= set(embed.calls[0])


def test_run_evaluation_matches_uncached_scores():
    from isotune.evaluation.sts import evaluate_sts, load_senteval_sts

    task = load_senteval_sts(FIXTURE_ROOT / "sts" / "STS12-en-test", "sts12")
    direct = evaluate_sts(HashEmbed(), task)
    cached = run_evaluation(HashEmbed(), ["sts12"], FIXTURE_ROOT, show_progress=False)["sts12"]
    assert cached["spearman"] == pytest.approx(direct["spearman"])
    assert cached["pearson"] == pytest.approx(direct["pearson"])


def test_unknown_task_raises_config_error():
    with pytest.raises(ConfigError, match="Unknown evaluation task.*'sts99'.*known tasks: stsb-dev"):
        run_evaluation(HashEmbed(), ["sts12", "sts99"], FIXTURE_ROOT, show_progress=False)


def test_resolve_tasks_forms():
    assert resolve_tasks("sts12, geometry,sts12") == ["sts12", "geometry"]
    assert resolve_tasks(DEFAULT_TASKS) == DEFAULT_TASKS
    assert set(DEFAULT_TASKS) <= set(KNOWN_TASKS)
    with pytest.raises(ConfigError, match="No evaluation task given"):
        resolve_tasks([])


def test_missing_data_names_path_and_option(tmp_path):
    shutil.copytree(FIXTURE_ROOT / "sts" / "SICK", tmp_path / "sts" / "SICK")
    with pytest.raises(DataError, match=r"'sts12' not found at .*STS12-en-test; pass --data-root"):
        run_evaluation(HashEmbed(), ["sick-trial", "sts12"], tmp_path, show_progress=False)


def test_geometry_without_stsb_dev_raises(tmp_path):
    with pytest.raises(DataError, match=r"'stsb-dev' not found at .*sts-dev.csv"):
        run_evaluation(HashEmbed(), ["geometry"], tmp_path, show_progress=False)


def test_summary_row_and_markdown_table():
    results = run_evaluation(HashEmbed(), ["stsb-dev", "geometry"], FIXTURE_ROOT, show_progress=False)
    row = summary_row(results)
    assert list(row) == ["STS-B dev", "STS12 all", "SICK trial", "alignment", "uniformity", "avg cos"]
    assert row["STS-B dev"] == results["stsb-dev"]["spearman"]["all"]
    assert row["STS12 all"] is None
    assert row["avg cos"] == results["geometry"]["average_cosine"]

    before = {"STS-B dev": 81.234, "STS12 all": None, "alignment": 0.12345, "uniformity": -3.5}
    table = markdown_table({"before": before, "after": row})
    lines = table.splitlines()
    assert lines[0] == "| model | STS-B dev | STS12 all | SICK trial | alignment | uniformity | avg cos |"
    assert lines[1] == "|---|---:|---:|---:|---:|---:|---:|"
    assert lines[2] == "| before | 81.23 | n/a | n/a | 0.123 | -3.500 | n/a |"
    assert lines[3].startswith("| after | ")
    assert len(lines) == 4


def test_groups_expand_to_tasks():
    from isotune.evaluation.suite import STS_TASKS, TRANSFER_TASKS

    assert resolve_tasks(["transfer"]) == ["mr", "cr", "subj", "mpqa", "sst2", "trec", "mrpc"]
    assert resolve_tasks("sts,geometry") == [*STS_TASKS, "geometry"]
    assert resolve_tasks(["mr", "transfer"])[0] == "mr"
    assert len(resolve_tasks(["mr", "transfer"])) == len(TRANSFER_TASKS)


def test_missing_tasks_skipped_with_reason():
    from isotune.evaluation.suite import load_suite_data

    data = load_suite_data(["sts12", "sts14", "stsb-test", "geometry"], FIXTURE_ROOT, on_missing="skip")
    assert data.tasks == ["sts12", "geometry"]
    assert set(data.skipped) == {"sts14", "stsb-test"}
    assert "STS14-en-test" in data.skipped["sts14"]
    assert "--data-root" in data.skipped["stsb-test"]


def test_sts13_from_fixture_root():
    results = run_evaluation(HashEmbed(), ["sts13"], FIXTURE_ROOT, show_progress=False)
    assert results["sts13"]["pairs"] == {"FNWN": 3, "headlines": 3}
    assert results["sts13"]["skipped"] == {"FNWN": 0, "headlines": 1}


def test_transfer_and_geometry_share_one_embedding_pass():
    embed = HashEmbed()
    results = run_evaluation(embed, ["trec", "mrpc", "geometry"], FIXTURE_ROOT, show_progress=False)
    assert len(embed.calls) == 1
    assert len(embed.calls[0]) == len(set(embed.calls[0]))
    assert set(results) == {"trec", "mrpc", "geometry"}
    assert "f1" in results["mrpc"]
    assert "isotropy" in results["geometry"]


def test_geometry_pairs_from_another_task():
    from isotune.evaluation.suite import load_suite_data

    data = load_suite_data(["geometry"], FIXTURE_ROOT, geometry_pairs="sick-trial")
    assert data.geometry.pairs_task == "sick-trial"
    # One SICK fixture pair has relatedness >= 4.
    assert data.geometry.positive_pairs == [("A boy is jumping.", "A child is jumping.")]


def test_unknown_geometry_pairs_task_raises():
    from isotune.evaluation.suite import load_suite_data

    with pytest.raises(ConfigError, match="Unknown geometry pairs task 'books'"):
        load_suite_data(["geometry"], FIXTURE_ROOT, geometry_pairs="books")


def test_chunked_cache_matches_single_call():
    texts = [f"text number {index}" * (index % 3 + 1) for index in range(25)]
    single, chunked = CachedEmbedder(HashEmbed()), CachedEmbedder(HashEmbed())
    single.add(texts)
    chunked.add(texts, chunk_size=4)
    np.testing.assert_array_equal(single(texts), chunked(texts))
    assert chunked.num_calls == 7
