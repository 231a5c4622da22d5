"""Layer-wise anisotropy: the geometry of mean-pooled hidden states at every layer of a sentence encoder.

Ethayarajh (2019) measured the average cosine similarity of random word representations at each layer of
BERT, ELMo and GPT-2 and found them anisotropic in every layer. This module takes the same view at the
sentence level: each layer's token states are mean-pooled over the non-padding tokens into one vector per
sentence, L2-normalised, and measured with `isotune.metrics`. Layer 0 is the embedding output and layer k
the output of the k-th transformer layer, so the last layer mean-pooled is what a mean-pooling encoder
returns.

Reference: Kawin Ethayarajh, "How Contextual are Contextualized Word Representations? Comparing the
Geometry of BERT, ELMo, and GPT-2 Embeddings", EMNLP 2019.
"""

from __future__ import annotations

import numpy as np
import torch
from sentence_transformers import SentenceTransformer
from tqdm.auto import tqdm

from isotune import metrics
from isotune.encoder import Transformer
from isotune.errors import ConfigError, DataError

LAYER_MEASURES = ("average_cosine", "uniformity", "effective_rank")
"""Keys of the per-layer measures, in the order of tables and plot panels."""


def transformer_module(model: SentenceTransformer) -> Transformer:
    """Return the sentence-transformers Transformer module that `model` starts with.

    Raises ConfigError when the first module is something else (for example a static embedding), or when
    it has no tokenizer, because the hidden states then cannot be computed from text.
    """
    first = model[0]
    if not isinstance(first, Transformer):
        raise ConfigError(
            f"Layer-wise geometry needs a model whose first module is a Hugging Face Transformer, but this model "
            f"starts with {type(first).__name__}. Pass a transformer encoder (a sentence-transformers or Hugging "
            "Face model folder or Hub id)."
        )
    if first.tokenizer is None:
        raise ConfigError("Layer-wise geometry needs a text tokenizer, but the model's Transformer module has none.")
    return first


def mean_pooled_hidden_states(
    model: SentenceTransformer, texts: list[str], *, batch_size: int = 128, show_progress: bool = False
) -> np.ndarray:
    """Compute the mean-pooled hidden states of `texts` at every layer of `model`'s transformer.

    The texts are tokenised once, truncated at the module's `max_seq_length`, and run in batches of
    `batch_size`, longest first, so that each batch pads little. Pooling averages the states of the tokens
    whose attention mask is 1 (special tokens included, as sentence-transformers' mean pooling does).

    Returns a float32 array `[num_layers + 1, len(texts), hidden_size]` in the order of `texts`, not
    normalised.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    transformer = transformer_module(model)
    tokenizer = transformer.tokenizer
    network = transformer.auto_model
    encoded = tokenizer(list(texts), truncation=True, max_length=transformer.max_seq_length)
    lengths = np.array([len(ids) for ids in encoded["input_ids"]])
    order = np.argsort(-lengths, kind="stable")
    device = next(network.parameters()).device

    pooled_batches = []
    was_training = network.training
    network.eval()
    try:
        with (
            torch.inference_mode(),
            tqdm(total=len(texts), desc="hidden states", unit="text", disable=not show_progress) as progress,
        ):
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                features = {key: [values[row] for row in rows] for key, values in encoded.items()}
                batch = tokenizer.pad(features, return_tensors="pt").to(device)
                output = network(**batch, output_hidden_states=True, return_dict=True)
                mask = batch["attention_mask"].unsqueeze(-1).to(torch.float32)  # [batch, seq, 1]
                counts = mask.sum(dim=1)  # [batch, 1]
                # One layer at a time: stacking every layer's [batch, seq, hidden] states would need
                # num_layers + 1 times the memory of one.
                pooled = [(state.to(torch.float32) * mask).sum(dim=1) / counts for state in output.hidden_states]
                pooled_batches.append(torch.stack(pooled).cpu())  # [num_layers + 1, batch, hidden]
                progress.update(len(rows))
    finally:
        network.train(was_training)

    sorted_states = torch.cat(pooled_batches, dim=1).numpy()
    states = np.empty_like(sorted_states)
    states[:, order] = sorted_states
    return states


def layer_measures(vectors: np.ndarray, t: float = 2.0) -> dict[str, float]:
    """Measure one layer's sentence vectors (`[n, dim]`, L2-normalised, n >= 2).

    `average_cosine` is the mean over all n(n-1)/2 pairs, `uniformity` uses temperature `t`, and
    `effective_rank` is that of the uncentred matrix (definitions in `isotune.metrics`).
    """
    return {
        "average_cosine": metrics.average_cosine(vectors),
        "uniformity": metrics.uniformity(vectors, t=t),
        "effective_rank": metrics.effective_rank(vectors),
    }


def evaluate_layers(
    model: SentenceTransformer,
    texts: list[str],
    *,
    batch_size: int = 128,
    t: float = 2.0,
    show_progress: bool = False,
) -> dict:
    """Measure average cosine, uniformity and effective rank of the mean-pooled states at every layer.

    Duplicate texts are dropped first, because two copies of a sentence sit at cosine 1 and would raise
    the average cosine. Returns `{num_sentences, num_layers, layers}` where `layers` is a list of
    `{layer, average_cosine, uniformity, effective_rank}`, layer 0 being the embedding output.

    Raises DataError for fewer than 2 distinct texts, and ValueError when a layer has non-finite states or
    a sentence whose pooled state has norm 0.
    """
    distinct = list(dict.fromkeys(texts))
    if len(distinct) < 2:
        raise DataError(
            f"Layer-wise geometry needs at least 2 distinct sentences, got {len(distinct)}; pass a sentence source "
            "with more sentences."
        )
    states = mean_pooled_hidden_states(model, distinct, batch_size=batch_size, show_progress=show_progress)
    layers = []
    for index, layer_states in enumerate(states):
        if not np.isfinite(layer_states).all():
            raise ValueError(f"Layer {index} has non-finite hidden states (NaN or inf); check the model weights.")
        zero_norm = int((np.linalg.norm(layer_states, axis=1) == 0).sum())
        if zero_norm:
            raise ValueError(
                f"Layer {index}: {zero_norm} of {len(distinct)} sentences have a mean-pooled state of norm 0, "
                "which has no direction to measure; check the model weights."
            )
        layers.append({"layer": index, **layer_measures(metrics.normalize(layer_states), t=t)})
    return {"num_sentences": len(distinct), "num_layers": len(layers) - 1, "layers": layers}
