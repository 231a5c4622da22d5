"""Tokenise texts once and build padded model inputs from the stored token ids.

Sentence-transformers tokenises every batch again when it embeds it (`SentenceTransformer.preprocess`).
`TokenCache` calls that same `preprocess` once per group of new texts, keeps each text's ids without the
padding, and later pads any subset of the cached texts to its own longest member. The padded inputs equal
what `preprocess` returns for that subset, so the forward pass computes the same embeddings.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from sentence_transformers import SentenceTransformer

# Inputs of a text encoder that have one value per token; every other tensor key of `preprocess` makes the
# texts unsupported, because it cannot be split into per-text rows by the attention mask.
PER_TOKEN_KEYS = ("input_ids", "token_type_ids")


class UnsupportedTokenizationError(ValueError):
    """The model's `preprocess` output is not plain right-padded text input, so it cannot be cached per text."""


@dataclass
class TokenRow:
    """The token ids of one text, without padding: `values[key]` is a 1-D int tensor for each per-token key."""

    values: dict[str, torch.Tensor]

    @property
    def length(self) -> int:
        return int(self.values["input_ids"].shape[0])


class TokenCache:
    """Token ids of texts, tokenised by the model's own `preprocess` once per distinct text.

    `features(texts)` tokenises the texts not seen before in one `preprocess` call, then returns
    `input_ids`, `attention_mask` and (when the tokenizer gives them) `token_type_ids` for `texts`, padded on
    the right to the longest of them: the same tensors as `model.preprocess(texts)`.

    Raises:
        UnsupportedTokenizationError: on the first call, when `preprocess` returns anything else than
            right-padded per-token tensors (left padding, a prompt length, images, flattened inputs).
    """

    def __init__(self, model: SentenceTransformer, tokenize_chunk: int = 2048) -> None:
        self.model = model
        self.tokenize_chunk = tokenize_chunk
        self.rows: dict[str, TokenRow] = {}
        self.pad_values: dict[str, int] = {"input_ids": _pad_token_id(model), "token_type_ids": 0}
        self.extras: dict[str, object] | None = None  # non-tensor entries of `preprocess`, such as the modality
        self.mask_dtype = torch.long

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, texts: Iterable[str]) -> int:
        """Tokenise the texts not cached yet, `tokenize_chunk` per `preprocess` call; return how many there were."""
        missing = list(dict.fromkeys(text for text in texts if text not in self.rows))
        for start in range(0, len(missing), self.tokenize_chunk):
            chunk = missing[start : start + self.tokenize_chunk]
            self.rows.update(zip(chunk, self._split_rows(self.model.preprocess(chunk), len(chunk)), strict=True))
        return len(missing)

    def lengths(self, texts: Sequence[str]) -> list[int]:
        """Return the token count of each text (special tokens included, after truncation), tokenising new ones."""
        self.add(texts)
        return [self.rows[text].length for text in texts]

    def features(self, texts: Sequence[str], device: torch.device | str | None = None) -> dict[str, object]:
        """Return the model inputs of `texts`, `[len(texts), longest]` tensors padded on the right."""
        self.add(texts)
        rows = [self.rows[text] for text in texts]
        lengths = torch.tensor([row.length for row in rows])
        width = int(lengths.max())
        features: dict[str, object] = {}
        for key in rows[0].values:
            padded = torch.nn.utils.rnn.pad_sequence(
                [row.values[key] for row in rows], batch_first=True, padding_value=self.pad_values.get(key, 0)
            )
            features[key] = padded.to(device) if device is not None else padded
        mask = (torch.arange(width) < lengths[:, None]).to(self.mask_dtype)
        features["attention_mask"] = mask.to(device) if device is not None else mask
        features.update(self.extras or {})
        return features

    def _split_rows(self, output: dict[str, object], count: int) -> list[TokenRow]:
        """Cut a padded `preprocess` output into one unpadded `TokenRow` per text, checking its layout."""
        mask = output.get("attention_mask")
        if not torch.is_tensor(mask) or mask.dim() != 2 or mask.shape[0] != count:
            raise UnsupportedTokenizationError(
                f"preprocess returned no [batch, tokens] attention_mask (keys: {sorted(output)})."
            )
        lengths = mask.sum(dim=1)
        right_padded = torch.arange(mask.shape[1]) < lengths[:, None]
        if not torch.equal(mask.bool(), right_padded):
            raise UnsupportedTokenizationError("preprocess padded on the left; only right padding can be cached.")
        extras = {key: value for key, value in output.items() if not torch.is_tensor(value)}
        unknown = [key for key, value in output.items() if torch.is_tensor(value) and key not in PER_TOKEN_KEYS]
        unknown = [key for key in unknown if key != "attention_mask"]
        if (
            unknown
            or "input_ids" not in output
            or extras.keys() - {"modality"}
            or extras.get("modality", "text") != "text"
        ):
            raise UnsupportedTokenizationError(
                f"preprocess returned inputs other than input_ids, token_type_ids and attention_mask: {sorted(output)}."
            )
        if self.extras is None:
            self.extras = extras
            self.mask_dtype = mask.dtype
        per_token = {key: output[key] for key in PER_TOKEN_KEYS if key in output}
        return [
            TokenRow({key: values[index, : int(length)].clone() for key, values in per_token.items()})
            for index, length in enumerate(lengths)
        ]


def _pad_token_id(model: SentenceTransformer) -> int:
    tokenizer = getattr(model, "tokenizer", None)
    pad_id = getattr(tokenizer, "pad_token_id", None)
    return int(pad_id) if pad_id is not None else 0
