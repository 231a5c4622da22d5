"""Shared fixtures: a tiny random BERT built from a config once per session, and the shared data root."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

# No test may reach the Hugging Face Hub: the network is closed here and requests retry for about a minute.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

WORDS = (
    "the a man woman child dog cat plays runs eats reads sings walks guitar piano ball book food park "
    "street house red blue small big happy sad quickly slowly today night morning".split()
)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "books").is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Save a randomly initialised 2-layer BERT with a word-level vocabulary, and return its folder."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ","] + WORDS
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    # transformers 5 ignores `vocab_file` here and would map every word to [UNK]: pass the vocabulary itself.
    tokenizer = BertTokenizerFast(vocab={word: index for index, word in enumerate(vocab)}, do_lower_case=True)
    assert tokenizer.unk_token_id not in tokenizer("The man plays guitar.")["input_ids"]
    tokenizer.save_pretrained(folder)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    return folder


def _sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 9))).capitalize() + "."


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    """A books folder and an STS-B-layout data root made of the tiny vocabulary."""
    root = tmp_path_factory.mktemp("corpus")
    rng = random.Random(0)
    (root / "books").mkdir()
    for name in ("one", "two"):
        paragraphs = [" ".join(_sentence(rng) for _ in range(5)) for _ in range(30)]
        (root / "books" / f"{name}.txt").write_text("\n\n".join(paragraphs), encoding="utf-8")
    rows = []
    for index in range(40):
        first, second = _sentence(rng), _sentence(rng)
        score = rng.uniform(0, 5) if index % 4 else 4.5
        rows.append(f"main-captions\tMSRvid\t2012test\t{index:04d}\t{score:.3f}\t{first}\t{second}")
    (root / "sts" / "stsbenchmark").mkdir(parents=True)
    (root / "sts" / "stsbenchmark" / "sts-dev.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


def tiny_recipe(tiny_bert: Path, corpus: Path, output_dir: Path, *extra: str):
    """Return a recipe that trains the tiny BERT on the tiny corpus; `extra` contains more `--set` overrides."""
    from isotune.recipe import load_recipe

    return load_recipe(
        None,
        [
            f"model.name={tiny_bert}",
            "model.max_seq_length=32",
            f"data.path={corpus / 'books'}",
            "data.min_words=3",
            f"evaluation.data_root={corpus}",
            "evaluation.tasks=[stsb-dev, geometry]",
            "evaluation.geometry_sentences=100",
            "training.batch_size=8",
            "training.max_steps=12",
            "training.learning_rate=1e-3",
            "training.warmup_ratio=0.0",
            "training.eval_every=4",
            "training.checkpoint_every=4",
            f"output_dir={output_dir}",
            *extra,
        ],
    )
