"""Choice of pair loader by source name, as a recipe names it."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from isotune.data.books import pairs_from_books
from isotune.data.hf_datasets import pairs_from_hf_dataset
from isotune.data.pair_files import pairs_from_file
from isotune.data.pair_set import PairSet
from isotune.data.simcse import identical_pairs
from isotune.errors import ConfigError

PAIR_LOADERS: dict[str, Callable[..., PairSet]] = {
    "books": pairs_from_books,
    "pair_file": pairs_from_file,
    "hf_dataset": pairs_from_hf_dataset,
    "simcse": identical_pairs,
}
# Option names that recipes may use in place of the loader's keyword.
_OPTION_ALIASES = {"decode_errors": "errors"}


def load_pairs(source: str, path: str, **options: Any) -> PairSet:
    """Load positive pairs with the loader for `source`, passing `options` as its keyword arguments.

    Args:
        source: one of "books", "pair_file", "hf_dataset" or "simcse".
        path: the file, folder or dataset id to read.
        **options: keyword arguments of that loader. `decode_errors` is accepted as a name for `errors`.

    Raises:
        ConfigError: unknown `source` or option, or an invalid option value.
        DataError: the data cannot be read or gives no pair.
    """
    if source not in PAIR_LOADERS:
        raise ConfigError(f"Unknown data source {source!r}: use one of {', '.join(PAIR_LOADERS)}.")
    loader = PAIR_LOADERS[source]
    keyword_options = {_OPTION_ALIASES.get(name, name): value for name, value in options.items()}
    allowed = _keyword_names(loader)
    for name in options:
        if _OPTION_ALIASES.get(name, name) not in allowed:
            raise ConfigError(f"Unknown option {name!r} for data source {source!r}: use {', '.join(sorted(allowed))}.")
    return loader(path, **keyword_options)


def _keyword_names(loader: Callable[..., PairSet]) -> set[str]:
    parameters = inspect.signature(loader).parameters.values()
    return {parameter.name for parameter in parameters if parameter.kind is inspect.Parameter.KEYWORD_ONLY}
