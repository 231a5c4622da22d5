"""Plots of a training run: cosine histograms before and after, the alignment-uniformity plane, the spectrum."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from isotune.evaluation.embedding import EmbedFunction
from isotune.evaluation.suite import SuiteData, load_suite_data

CosineSamples = tuple[np.ndarray, np.ndarray]


def load_geometry_data(data_root: Path, sentences: list[str]) -> SuiteData:
    """Load the geometry task's inputs: STS-B dev pairs with gold >= 4 and a sample of `sentences`."""
    return load_suite_data(["geometry"], data_root, sentences=sentences)


def cosine_samples(embed: EmbedFunction, data: SuiteData) -> CosineSamples:
    """Return the cosines of all pairs of the geometry sample and of the positive pairs, as float64 arrays."""
    geometry = data.geometry
    sample = embed(geometry.sample).astype(np.float64)
    upper = np.triu_indices(len(sample), k=1)
    first = embed([pair[0] for pair in geometry.positive_pairs]).astype(np.float64)
    second = embed([pair[1] for pair in geometry.positive_pairs]).astype(np.float64)
    return (sample @ sample.T)[upper], (first * second).sum(axis=1)


def write_run_plots(plots_dir: Path, metrics: dict[str, Any], cosines: dict[str, CosineSamples]) -> list[Path]:
    """Write the before/after plots of a run to `plots_dir` and return the files written."""
    from isotune.evaluation.plots import plot_alignment_uniformity, plot_cosine_histogram, plot_spectrum

    rows = {"before": metrics["before"], "after": metrics["after"]}
    written = [
        plot_alignment_uniformity(rows, plots_dir / "alignment-uniformity.png"),
        plot_spectrum(rows, plots_dir / "spectrum.png"),
    ]
    for label, (random_cosines, positive_cosines) in cosines.items():
        title = f"cosine similarity, {label} training"
        written.append(
            plot_cosine_histogram(random_cosines, positive_cosines, title, plots_dir / f"cosine-{label}.png")
        )
    return [path for path in written if path is not None]
