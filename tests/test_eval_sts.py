"""Tests of the STS loaders and of evaluate_sts on small fixtures and crafted embeddings."""

import logging
import math
from pathlib import Path

import numpy as np
import pytest

from isotune.errors import DataError
from isotune.evaluation.sts import (
    StsSubset,
    StsTask,
    evaluate_sts,
    load_senteval_sts,
    load_sick,
    load_stsb,
)

FIXTURE_STS = Path(__file__).resolve().parents[1] / "data" / "fixtures" / "eval" / "root" / "sts"
SHARED_STS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sts"


class AngleEmbed:
    """Embed each text as the 2-d unit vector at the angle (in radians) stored for it."""

    def __init__(self) -> None:
        self.angles: dict[str, float] = {}

    def pair(self, cosine: float) -> tuple[str, str]:
        """Register a new pair of texts whose embeddings have cosine similarity `cosine`."""
        index = len(self.angles)
        first, second = f"text {index}", f"text {index + 1}"
        self.angles[first] = 0.0
        self.angles[second] = math.acos(cosine)
        return first, second

    def __call__(self, texts: list[str]) -> np.ndarray:
        angles = np.array([self.angles[text] for text in texts])
        return np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)


def _subset(embed: AngleEmbed, name: str, cosines: list[float], scores: list[float]) -> StsSubset:
    pairs = [embed.pair(cosine) for cosine in cosines]
    return StsSubset(name, [a for a, _ in pairs], [b for _, b in pairs], np.array(scores), 0)


def test_load_stsb_fixture():
    task = load_stsb(FIXTURE_STS / "stsbenchmark" / "sts-dev.csv")
    (subset,) = task.subsets
    assert task.name == "sts-dev"
    assert len(subset) == 5
    assert subset.skipped == 0
    # The third row has a quote in a sentence and two extra trailing columns.
    assert subset.sentences1[2] == 'He said "we will win" on Monday.'
    assert subset.sentences2[2] == "The team lost on Monday."
    np.testing.assert_allclose(subset.scores, [5.0, 4.25, 2.4, 0.0, 3.8])


def test_load_stsb_short_row_raises(tmp_path):
    path = tmp_path / "sts-dev.csv"
    path.write_text("g\tf\t2012\t1\t4.0\tOne.\tTwo.\ng\tf\t2012\t2\t3.0\tOnly one sentence.\n")
    with pytest.raises(DataError, match=r"sts-dev.csv, line 2: expected at least 7 .* got 6"):
        load_stsb(path)


def test_load_stsb_invalid_score_raises(tmp_path):
    path = tmp_path / "sts-dev.csv"
    path.write_text("g\tf\t2012\t1\tfive\tOne.\tTwo.\n")
    with pytest.raises(DataError, match="line 1: invalid gold score 'five'"):
        load_stsb(path)


def test_senteval_blank_gold_skipped_both_sides():
    task = load_senteval_sts(FIXTURE_STS / "STS12-en-test", "sts12")
    names = [subset.name for subset in task.subsets]
    assert names == ["alpha", "beta"]
    alpha = task.subsets[0]
    assert alpha.skipped == 1
    assert len(alpha) == 3
    assert "This pair has no gold score." not in alpha.sentences1
    assert "It is skipped on both sides." not in alpha.sentences2
    # The pair after the blank gold line keeps its own score.
    assert alpha.sentences1[2] == "The sun is hot."
    assert alpha.scores[2] == pytest.approx(0.6)


def test_senteval_count_mismatch_raises(tmp_path):
    (tmp_path / "STS.input.news.txt").write_text("a\tb\nc\td\ne\tf\n")
    (tmp_path / "STS.gs.news.txt").write_text("1.0\n2.0\n")
    with pytest.raises(DataError, match=r"STS.input.news.txt has 3 lines but .*STS.gs.news.txt has 2"):
        load_senteval_sts(tmp_path, "sts-mini")


def test_senteval_missing_gold_raises(tmp_path):
    (tmp_path / "STS.input.news.txt").write_text("a\tb\n")
    with pytest.raises(DataError, match=r"STS.gs.news.txt not found"):
        load_senteval_sts(tmp_path, "sts-mini")


def test_senteval_row_without_tab_raises(tmp_path):
    (tmp_path / "STS.input.news.txt").write_text("a\tb\nno tab here\n")
    (tmp_path / "STS.gs.news.txt").write_text("1.0\n2.0\n")
    with pytest.raises(DataError, match=r"STS.input.news.txt, line 2: expected at least 2"):
        load_senteval_sts(tmp_path, "sts-mini")


def test_senteval_non_utf8_line_decoded(tmp_path, caplog):
    (tmp_path / "STS.input.news.txt").write_bytes("Caf\xe9 open.\tA caf\xe9.\nx\ty\n".encode("latin-1"))
    (tmp_path / "STS.gs.news.txt").write_text("4.0\n1.0\n")
    with caplog.at_level(logging.WARNING, logger="isotune.evaluation.textfile"):
        task = load_senteval_sts(tmp_path, "sts-mini")
    assert task.subsets[0].sentences1[0] == "Café open."
    assert "1 of 2 lines are not valid UTF-8" in caplog.text


def test_senteval_unicode_line_separator_kept(tmp_path):
    (tmp_path / "STS.input.news.txt").write_text("one\u2028line\tsecond\nx\ty\n", encoding="utf-8")
    (tmp_path / "STS.gs.news.txt").write_text("4.0\n1.0\n")
    subset = load_senteval_sts(tmp_path, "sts-mini").subsets[0]
    assert subset.sentences1 == ["one\u2028line", "x"]


def test_load_sick_fixture():
    (subset,) = load_sick(FIXTURE_STS / "SICK" / "SICK_trial.txt").subsets
    assert subset.sentences1 == ["A boy is jumping.", "A man is cooking.", "A dog barks."]
    assert subset.sentences2[1] == "A man is not cooking."
    np.testing.assert_allclose(subset.scores, [4.7, 3.1, 1.1])


def test_load_sick_bad_header_raises(tmp_path):
    path = tmp_path / "SICK_trial.txt"
    path.write_text("id\tA\tB\tscore\n1\ta\tb\t3.0\n")
    with pytest.raises(DataError, match="line 1: header .* is missing the SICK columns"):
        load_sick(path)


def test_perfect_subsets_pool_below_mean():
    embed = AngleEmbed()
    # Each subset ranks its pairs perfectly, but the high-cosine subset has the lower gold scores.
    high = _subset(embed, "high", [0.9, 0.8, 0.7], [3.0, 2.0, 1.0])
    low = _subset(embed, "low", [0.3, 0.2, 0.1], [5.0, 4.0, 3.5])
    result = evaluate_sts(embed, StsTask("crafted", [high, low]))
    assert result["spearman"]["high"] == pytest.approx(100.0)
    assert result["spearman"]["low"] == pytest.approx(100.0)
    assert result["spearman"]["wmean"] == pytest.approx(100.0)
    assert result["spearman"]["all"] < 0
    assert result["pairs"] == {"high": 3, "low": 3}


def test_all_matches_single_subset():
    embed = AngleEmbed()
    subset = _subset(embed, "only", [0.1, 0.5, 0.4, 0.9], [1.0, 2.0, 3.0, 4.0])
    result = evaluate_sts(embed, StsTask("single", [subset]))
    assert result["spearman"]["only"] == pytest.approx(80.0)
    assert result["spearman"]["all"] == pytest.approx(80.0)
    assert result["pearson"]["all"] == result["pearson"]["only"]


def test_constant_predictions_excluded_from_wmean(caplog):
    embed = AngleEmbed()
    good = _subset(embed, "good", [0.2, 0.4, 0.6, 0.8], [1.0, 2.0, 3.0, 4.0])
    flat = _subset(embed, "flat", [0.5, 0.5], [1.0, 4.0])
    with caplog.at_level(logging.WARNING, logger="isotune.evaluation.sts"):
        result = evaluate_sts(embed, StsTask("crafted", [good, flat]))
    assert result["spearman"]["flat"] is None
    assert result["pearson"]["flat"] is None
    assert result["spearman"]["wmean"] == pytest.approx(result["spearman"]["good"])
    assert result["pearson"]["wmean"] == pytest.approx(result["pearson"]["good"])
    assert "crafted/flat: correlation undefined" in caplog.text


def test_constant_gold_is_none():
    embed = AngleEmbed()
    subset = _subset(embed, "same-gold", [0.1, 0.5, 0.9], [2.0, 2.0, 2.0])
    result = evaluate_sts(embed, StsTask("crafted", [subset]))
    assert result["spearman"]["same-gold"] is None
    assert result["spearman"]["all"] is None
    assert result["spearman"]["wmean"] is None


def test_wmean_weights_by_pairs():
    embed = AngleEmbed()
    large = _subset(embed, "large", [0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [1, 2, 3, 4, 5, 6])
    small = _subset(embed, "small", [0.3, 0.2, 0.1], [1, 2, 3])
    result = evaluate_sts(embed, StsTask("crafted", [large, small]))
    assert result["spearman"]["large"] == pytest.approx(100.0)
    assert result["spearman"]["small"] == pytest.approx(-100.0)
    assert result["spearman"]["wmean"] == pytest.approx((6 * 100.0 - 3 * 100.0) / 9)


def test_reserved_subset_name_raises():
    embed = AngleEmbed()
    subset = _subset(embed, "all", [0.1, 0.9], [1.0, 2.0])
    with pytest.raises(ValueError, match="other than 'all' and 'wmean'"):
        evaluate_sts(embed, StsTask("crafted", [subset]))


def test_wrong_embedding_count_raises():
    subset = StsSubset("s", ["a", "b"], ["c", "d"], np.array([1.0, 2.0]), 0)
    with pytest.raises(ValueError, match=r"returned shape \(3, 2\) for 4 texts"):
        evaluate_sts(lambda texts: np.ones((3, 2), dtype=np.float32), StsTask("t", [subset]))


@pytest.mark.skipif(not SHARED_STS.is_dir(), reason="shared STS data not found")
def test_real_files_load_with_expected_sizes():
    stsb_dev = load_stsb(SHARED_STS / "stsbenchmark" / "sts-dev.csv").subsets[0]
    assert len(stsb_dev) == 1500
    sts12 = load_senteval_sts(SHARED_STS / "STS12-en-test", "sts12")
    sizes = {subset.name: len(subset) for subset in sts12.subsets}
    assert sizes == {
        "MSRpar": 750,
        "MSRvid": 750,
        "SMTeuroparl": 459,
        "surprise.OnWN": 750,
        "surprise.SMTnews": 399,
    }
    assert len(load_sick(SHARED_STS / "SICK" / "SICK_trial.txt").subsets[0]) == 500


def test_sts13_fixture_in_senteval_layout():
    task = load_senteval_sts(FIXTURE_STS / "STS13-en-test", "sts13")
    sizes = {subset.name: len(subset) for subset in task.subsets}
    assert sizes == {"FNWN": 3, "headlines": 3}
    headlines = task.subsets[1]
    assert headlines.skipped == 1
    # A third input column (the source of the pair) is ignored.
    assert headlines.sentences2[0] == "A man is playing guitar."


def test_zero_norm_embedding_gives_cosine_zero(caplog):
    embed = AngleEmbed()
    subset = _subset(embed, "s", [0.9, 0.5, 0.1], [3.0, 2.0, 1.0])

    def embed_with_empty(texts: list[str]) -> np.ndarray:
        vectors = embed(texts)
        vectors[[index for index, text in enumerate(texts) if text == subset.sentences2[0]]] = 0.0
        return vectors

    with caplog.at_level(logging.WARNING, logger="isotune.evaluation.sts"):
        result = evaluate_sts(embed_with_empty, StsTask("crafted", [subset]))
    assert "1 sentences have an embedding of norm 0" in caplog.text
    # The first pair's cosine falls from 0.9 to 0, below the others, so its rank flips.
    assert result["spearman"]["s"] == pytest.approx(-50.0)


def test_undefined_subsets_listed():
    embed = AngleEmbed()
    good = _subset(embed, "good", [0.2, 0.4, 0.6], [1.0, 2.0, 3.0])
    flat = _subset(embed, "flat", [0.3, 0.7], [2.0, 2.0])
    result = evaluate_sts(embed, StsTask("crafted", [good, flat]))
    assert result["undefined"] == ["flat"]


@pytest.mark.skipif(not SHARED_STS.is_dir(), reason="shared STS data not found")
def test_sick_train_trial_pools_both_files():
    from isotune.evaluation.tasks import load_sts_task

    task = load_sts_task("sick-train-trial", SHARED_STS.parent)
    assert [len(subset) for subset in task.subsets] == [4500, 500]


def test_sick_train_trial_missing_train_file(tmp_path):
    from isotune.evaluation.missing import MissingDataError
    from isotune.evaluation.tasks import load_sts_task

    (tmp_path / "sts" / "SICK").mkdir(parents=True)
    trial = FIXTURE_STS / "SICK" / "SICK_trial.txt"
    (tmp_path / "sts" / "SICK" / "SICK_trial.txt").write_bytes(trial.read_bytes())
    with pytest.raises(MissingDataError, match="SICK_train.txt; pass --data-root with the folder that contains"):
        load_sts_task("sick-train-trial", tmp_path)
