"""Tokenise texts once and build padded model inputs from the stored token ids.

Sentence-transformers tokenises every batch again when it embeds it (`SentenceTransformer.preprocess`).
`TokenCache` calls that same `preprocess` once per group of new texts, keeps each text's ids without the
padding, and later pads any subset of the cached texts to its own longest member. The padded inputs equal
what `preprocess` returns for that subset, so the forward pass computes the same embeddings.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from sentence_transformers import SentenceTransformer

# Inputs of a text encoder that have one value per token. Any other tensor from `preprocess` cannot be
# split into per-text rows by the attention mask, so it makes the texts unsupported.
PER_TOKEN_KEYS = ("input_ids", "token_type_ids")


class UnsupportedTokenizationError(ValueError):
    """The model's `preprocess` output is not plain right-padded text input, so it cannot be cached per text."""


@dataclass
class TokenRow:
    """The token ids of one text, without padding, stored as int32 to halve the memory of int64.

    `values[key]` is a 1-D tensor for each per-token key. A key whose values are all zero (the token types
    of a single sentence) is left out and padded back as zeros.
    """

    length: int
    values: dict[str, torch.Tensor]


class TokenCache:
    """Token ids of texts, tokenised by the model's own `preprocess` once per distinct text.

    `features(texts)` tokenises the texts not seen before in one `preprocess` call, then returns
    `input_ids`, `attention_mask` and (when the tokenizer gives them) `token_type_ids` for `texts`, padded on
    the right to the longest of them: the same tensors as `model.preprocess(texts)`.

    At most `max_texts` texts are kept, about 250 bytes each for sentences of 30 tokens; texts beyond that
    are tokenised on every call.

    Raises:
        UnsupportedTokenizationError: from any method, when `preprocess` returns anything else than
            right-padded per-token tensors (left padding, a prompt length, images, flattened inputs).
    """

    def __init__(self, model: SentenceTransformer, tokenize_chunk: int = 2048, max_texts: int = 1_000_000) -> None:
        self.model = model
        self.tokenize_chunk = tokenize_chunk
        self.max_texts = max_texts
        self.rows: dict[str, TokenRow] = {}
        self.pad_values = {"input_ids": _pad_token_id(model)}
        self.dtypes: dict[str, torch.dtype] = {}  # the dtype of each tensor that `preprocess` returns
        self.extras: dict[str, object] = {}  # non-tensor entries of `preprocess`, such as the modality
        self.error: UnsupportedTokenizationError | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, texts: Iterable[str]) -> int:
        """Tokenise the texts not cached yet, `tokenize_chunk` per `preprocess` call; return how many there were."""
        return len(self._tokenize_missing(texts))

    def lengths(self, texts: Sequence[str]) -> list[int]:
        """Return the token count of each text (special tokens included, after truncation), tokenising new ones."""
        return [row.length for row in self._rows_for(texts)]

    def features(self, texts: Sequence[str], device: torch.device | str | None = None) -> dict[str, object]:
        """Return the model inputs of `texts`, `[len(texts), longest]` tensors padded on the right."""
        rows = self._rows_for(texts)
        lengths = torch.tensor([row.length for row in rows])
        width = int(lengths.max())
        features: dict[str, object] = {}
        for key, dtype in self.dtypes.items():
            if key == "attention_mask":
                features[key] = (torch.arange(width) < lengths[:, None]).to(dtype)
            elif all(key not in row.values for row in rows):
                features[key] = torch.zeros(len(rows), width, dtype=dtype)
            else:
                columns = [row.values.get(key, torch.zeros(row.length, dtype=torch.int32)) for row in rows]
                padding = self.pad_values.get(key, 0)
                features[key] = torch.nn.utils.rnn.pad_sequence(columns, True, padding).to(dtype)
        if device is not None:
            features = {key: value.to(device) for key, value in features.items()}
        features.update(self.extras)
        return features

    def _rows_for(self, texts: Sequence[str]) -> list[TokenRow]:
        fresh = self._tokenize_missing(texts)
        return [self.rows.get(text) or fresh[text] for text in texts]

    def _tokenize_missing(self, texts: Iterable[str]) -> dict[str, TokenRow]:
        """Tokenise the texts that are not cached, cache as many as `max_texts` allows and return them all."""
        if self.error is not None:
            raise self.error
        missing = list(dict.fromkeys(text for text in texts if text not in self.rows))
        fresh: dict[str, TokenRow] = {}
        for start in range(0, len(missing), self.tokenize_chunk):
            chunk = missing[start : start + self.tokenize_chunk]
            try:
                fresh.update(zip(chunk, self._split_rows(self.model.preprocess(chunk), len(chunk)), strict=True))
            except UnsupportedTokenizationError as error:
                self.error = error  # the same model gives the same layout, so later calls fail at once
                raise
        room = max(self.max_texts - len(self.rows), 0)
        self.rows.update(itertools.islice(fresh.items(), room))
        return fresh

    def _split_rows(self, output: dict[str, object], count: int) -> list[TokenRow]:
        """Cut a padded `preprocess` output into one unpadded `TokenRow` per text, checking its layout."""
        mask = output.get("attention_mask")
        if not torch.is_tensor(mask) or mask.dim() != 2 or mask.shape[0] != count:
            raise UnsupportedTokenizationError(
                f"preprocess returned no [batch, tokens] attention_mask (keys: {sorted(output)})."
            )
        lengths = mask.sum(dim=1)
        if not torch.equal(mask.bool(), torch.arange(mask.shape[1]) < lengths[:, None]):
            raise UnsupportedTokenizationError("preprocess padded on the left; only right padding can be cached.")

        tensors = {key: value for key, value in output.items() if torch.is_tensor(value)}
        extras = {key: value for key, value in output.items() if not torch.is_tensor(value)}
        unexpected = sorted(tensors.keys() - {*PER_TOKEN_KEYS, "attention_mask"}) + sorted(extras.keys() - {"modality"})
        if unexpected or "input_ids" not in tensors or extras.get("modality", "text") != "text":
            raise UnsupportedTokenizationError(
                f"preprocess returned inputs other than text input_ids, token_type_ids and attention_mask: "
                f"{sorted(output)}."
            )
        self.extras = extras
        self.dtypes = {key: value.dtype for key, value in tensors.items()}

        per_token = {key: tensors[key].to(torch.int32) for key in PER_TOKEN_KEYS if key in tensors}
        rows = []
        for index, length in enumerate(lengths.tolist()):
            values = {key: column[index, :length].clone() for key, column in per_token.items()}
            values = {key: value for key, value in values.items() if key == "input_ids" or value.any()}
            rows.append(TokenRow(length, values))
        return rows


def _pad_token_id(model: SentenceTransformer) -> int:
    tokenizer = getattr(model, "tokenizer", None)
    pad_id = getattr(tokenizer, "pad_token_id", None)
    return int(pad_id) if pad_id is not None else 0
