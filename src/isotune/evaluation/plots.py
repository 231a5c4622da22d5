"""PNG plots of evaluation results with matplotlib's Agg backend (no display needed).

- `plot_cosine_histogram`: cosine similarities of random sentence pairs and of positive pairs.
- `plot_alignment_uniformity`: each model as a point in the alignment-uniformity plane, as in figure 2
  of Gao, Yao and Chen, "SimCSE: Simple Contrastive Learning of Sentence Embeddings", EMNLP 2021.
- `plot_spectrum`: the singular values of each model's sample matrix, divided by the largest.
- `plot_layers`: average cosine, uniformity and effective rank of mean-pooled hidden states per layer.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402 (the backend is chosen before pyplot is imported)
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from isotune.evaluation.tasks import GEOMETRY_TASK  # noqa: E402


def _save(figure: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def plot_cosine_histogram(random_cosines: np.ndarray, positive_cosines: np.ndarray, title: str, path: Path) -> Path:
    """Plot the density histograms of the two cosine samples on [-1, 1] and save them to `path`."""
    figure, axes = plt.subplots(figsize=(6, 4))
    bins = np.linspace(-1, 1, 81)
    axes.hist(random_cosines, bins=bins, density=True, alpha=0.6, label=f"random pairs (n={len(random_cosines)})")
    axes.hist(positive_cosines, bins=bins, density=True, alpha=0.6, label=f"positive pairs (n={len(positive_cosines)})")
    axes.set_xlabel("cosine similarity")
    axes.set_ylabel("density")
    axes.set_title(title)
    axes.legend()
    return _save(figure, path)


def plot_alignment_uniformity(rows: dict[str, dict[str, dict]], path: Path) -> Path | None:
    """Plot each label's (uniformity, alignment) point; return None when no row has a geometry result."""
    points = {label: results[GEOMETRY_TASK] for label, results in rows.items() if GEOMETRY_TASK in results}
    if not points:
        return None
    figure, axes = plt.subplots(figsize=(6, 4.5))
    for label, result in points.items():
        axes.scatter(result["uniformity"], result["alignment"], s=40)
        axes.annotate(
            label, (result["uniformity"], result["alignment"]), fontsize=8, xytext=(4, 4), textcoords="offset points"
        )
    axes.set_xlabel("uniformity (lower is better)")
    axes.set_ylabel("alignment (lower is better)")
    axes.set_title("alignment-uniformity plane")
    axes.grid(alpha=0.3)
    return _save(figure, path)


def plot_sts_against_average_cosine(rows: dict[str, dict[str, dict]], sts_tasks: list[str], path: Path) -> Path | None:
    """Plot each STS task's pooled Spearman against the average cosine of random pairs: a panel per task.

    The trade-off of anisotropy work in one figure: a model in the upper left keeps its accuracy with a
    low average cosine. Rows without geometry or without the task are left out of that panel. Returns None
    when no row has both.
    """
    panels = []
    for task in sts_tasks:
        points: dict[str, tuple[float, float]] = {}
        for label, results in rows.items():
            if GEOMETRY_TASK in results and "spearman" in results.get(task, {}):
                point = (results[GEOMETRY_TASK]["average_cosine"], results[task]["spearman"]["all"])
                if point not in points.values():  # the runs of one base model repeat its before row
                    points[label] = point
        if points:
            panels.append((task, points))
    if not panels:
        return None
    figure, axes_row = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.2), squeeze=False)
    for axes, (task, points) in zip(axes_row[0], panels, strict=True):
        for label, (cosine, score) in points.items():
            axes.scatter(cosine, score, s=35)
            axes.annotate(label, (cosine, score), fontsize=7, xytext=(3, 3), textcoords="offset points")
        axes.set_xlabel("average cosine of random pairs (lower: less anisotropic)")
        axes.set_ylabel(f"{task} Spearman x100")
        axes.set_title(f"{task} against average cosine")
        axes.grid(alpha=0.3)
    return _save(figure, path)


def plot_spectrum(rows: dict[str, dict[str, dict]], path: Path) -> Path | None:
    """Plot each label's normalised singular values on a log scale; None when no row has them."""
    spectra = {
        label: np.asarray(results[GEOMETRY_TASK]["singular_values"])
        for label, results in rows.items()
        if "singular_values" in results.get(GEOMETRY_TASK, {})
    }
    if not spectra:
        return None
    figure, axes = plt.subplots(figsize=(6, 4))
    for label, values in spectra.items():
        axes.plot(np.arange(1, len(values) + 1), values / values[0], label=label)
    axes.set_yscale("log")
    axes.set_xlabel("index k")
    axes.set_ylabel("singular value s_k / s_1")
    axes.set_title("singular-value spectrum of the sentence sample")
    axes.legend(fontsize=8)
    return _save(figure, path)


# Panels of `plot_layers`: measure key -> axis label.
LAYER_PANELS = {
    "average_cosine": "average cosine",
    "uniformity": "uniformity (lower is more uniform)",
    "effective_rank": "effective rank",
}


def plot_layers(models: dict[str, list[dict]], path: Path) -> Path:
    """Plot each measure of `LAYER_PANELS` against the layer, one line per model, in three panels.

    `models` maps a legend label to the `layers` list of `isotune.evaluation.layers.evaluate_layers`.
    """
    figure, panels = plt.subplots(1, len(LAYER_PANELS), figsize=(12, 3.8))
    for axes, (key, label) in zip(panels, LAYER_PANELS.items(), strict=True):
        for model_label, layers in models.items():
            indices = [layer["layer"] for layer in layers]
            axes.plot(indices, [layer[key] for layer in layers], marker="o", label=model_label)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_xlabel("layer (0 = embedding output)")
        axes.set_ylabel(label)
        axes.grid(alpha=0.3)
    panels[0].legend(fontsize=8)
    figure.suptitle("mean-pooled hidden states per layer")
    return _save(figure, path)
