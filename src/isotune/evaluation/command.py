"""The `isotune eval` workflow: load data and model, score the model and its post-processed variants, write.

The raw model embeds each distinct text once; post-processed variants transform those cached rows.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from isotune.errors import ConfigError, DataError
from isotune.evaluation.bootstrap import DEFAULT_CONFIDENCE
from isotune.evaluation.embedding import CachedEmbedder, EmbedFunction
from isotune.evaluation.postprocess import PostprocessSpec, fit_postprocessor, parse_postprocess
from isotune.evaluation.results import SCHEMA, variant_label
from isotune.evaluation.suite import (
    GEOMETRY_NUM_SENTENCES,
    POSITIVE_MIN_SCORE,
    SuiteData,
    load_suite_data,
    resolve_tasks,
    score_suite,
)
from isotune.evaluation.tasks import corpus_texts
from isotune.evaluation.transfer import classifier_settings

logger = logging.getLogger(__name__)

CHUNK_SIZE = 4096
CLI_DEFAULT_TASKS = ["sts", "geometry"]


@dataclass
class Variant:
    """One row of the evaluation: the model itself (`postprocess` None) or a post-processed version."""

    label: str
    embed: CachedEmbedder
    postprocess: dict | None
    results: dict[str, dict] | None = None


def build_variants(
    model_label: str,
    raw: CachedEmbedder,
    specs: list[PostprocessSpec],
    fit_corpus: str,
    fit_texts: list[str] | None,
    show_progress: bool,
) -> list[Variant]:
    """Return the model's own variant and one per post-processing, each fitted on `fit_texts`."""
    variants = [Variant(model_label, raw, None)]
    if not specs:
        return variants
    if not fit_texts:
        raise DataError(f"The fit corpus {fit_corpus!r} contains no sentence.")
    raw.add(fit_texts, chunk_size=CHUNK_SIZE, show_progress=show_progress)
    fit_vectors = raw(fit_texts)
    for spec in specs:
        transform = fit_postprocessor(spec, fit_vectors)

        def embed(texts: list[str], transform=transform) -> np.ndarray:
            return transform(raw(texts))

        settings = {
            "method": spec.method,
            "dims": spec.dims,
            "fit_corpus": fit_corpus,
            "num_fit_sentences": len(fit_texts),
        }
        variants.append(Variant(variant_label(model_label, spec.label), CachedEmbedder(embed), settings))
    return variants


def score_variants(
    variants: list[Variant], data: SuiteData, *, seed: int, num_resamples: int, show_progress: bool
) -> None:
    """Fill `results` of every variant; the raw embeddings are computed once, by the first variant."""
    for variant in variants:
        logger.info("Scoring %s on %s", variant.label, ", ".join(data.tasks))
        variant.results = score_suite(
            variant.embed,
            data,
            seed=seed,
            show_progress=show_progress,
            num_resamples=num_resamples,
            chunk_size=CHUNK_SIZE,
        )


def results_document(
    args: argparse.Namespace,
    source,
    data: SuiteData,
    variants: list[Variant],
    seconds: float,
    layers: dict | None = None,
) -> dict:
    """Return the JSON document of an evaluation (schema in docs/evaluation.md); `layers` is None without --layers."""
    from isotune import __version__

    return {
        "schema": SCHEMA,
        "isotune_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model": args.model,
        "model_source": {
            "kind": source.kind,
            "path": source.model,
            "weights": None if source.weights is None else str(source.weights),
        },
        "data_root": str(args.data_root),
        "sts_source": args.sts_source,
        "tasks_requested": list(args.tasks),
        "tasks": data.tasks,
        "skipped": data.skipped,
        "settings": {
            "seed": args.seed,
            "batch_size": args.batch_size,
            "geometry": {
                "pairs_task": args.geometry_pairs,
                "positive_min_score": POSITIVE_MIN_SCORE,
                "num_sentences": GEOMETRY_NUM_SENTENCES,
                "bootstrap_resamples": args.bootstrap,
                "confidence": DEFAULT_CONFIDENCE,
            },
            "transfer_classifier": classifier_settings(args.seed),
        },
        "seconds": round(seconds, 1),
        "variants": [
            {"label": variant.label, "postprocess": variant.postprocess, "results": variant.results}
            for variant in variants
        ],
        "layers": layers,
    }


def _pair_cosines(embed: EmbedFunction, pairs: list[tuple[str, str]]) -> np.ndarray:
    first = embed([pair[0] for pair in pairs])
    second = embed([pair[1] for pair in pairs])
    return (first.astype(np.float64) * second).sum(axis=1)


def _sample_cosines(embed: EmbedFunction, sample: list[str]) -> np.ndarray:
    vectors = embed(sample).astype(np.float64)
    upper = np.triu_indices(len(vectors), k=1)
    return (vectors @ vectors.T)[upper]


def write_plots(folder: Path, variants: list[Variant], data: SuiteData) -> list[Path]:
    """Write the cosine histograms (one per variant), the alignment-uniformity plane and the spectrum."""
    from isotune.evaluation.plots import plot_alignment_uniformity, plot_cosine_histogram, plot_spectrum

    rows = {variant.label: variant.results for variant in variants}
    written = [
        plot_alignment_uniformity(rows, folder / "alignment-uniformity.png"),
        plot_spectrum(rows, folder / "spectrum.png"),
    ]
    if data.geometry is not None:
        for index, variant in enumerate(variants):
            written.append(
                plot_cosine_histogram(
                    _sample_cosines(variant.embed, data.geometry.sample),
                    _pair_cosines(variant.embed, data.geometry.positive_pairs),
                    variant.label,
                    folder / f"cosine-histogram-{index}.png",
                )
            )
    return [path for path in written if path is not None]


def task_tables(variants: list[Variant], data: SuiteData) -> str:
    """Return the Markdown tables of the scored tasks: the summary, then STS and geometry details."""
    from isotune.evaluation.report import geometry_detail_table, results_table, sts_detail_table

    rows = {variant.label: variant.results for variant in variants}
    markdown = results_table(rows)
    if data.sts:
        markdown += "\n" + sts_detail_table(variants[0].results)
    if "geometry" in data.tasks:
        markdown += "\n" + geometry_detail_table(rows)
    return markdown


def evaluate_command(args: argparse.Namespace) -> int:
    """Run `isotune eval` with the parsed `args`; return the exit status."""
    from isotune.encoder import make_embedder
    from isotune.evaluation.layers_command import (
        base_model,
        check_layer_options,
        evaluate_layer_models,
        layer_sentences,
        layers_table,
        write_layers_plot,
    )
    from isotune.evaluation.model_source import load_model
    from isotune.fileio import write_json_atomic, write_text_atomic

    start = time.perf_counter()
    check_layer_options(args)
    if args.tasks is None:
        args.tasks = [] if args.layers else list(CLI_DEFAULT_TASKS)
    specs = [parse_postprocess(text) for text in args.postprocess]
    if specs and not args.tasks:
        raise ConfigError("--postprocess applies to tasks, and --layers without --tasks runs none; add --tasks.")
    show_progress = not args.quiet
    data = SuiteData(tasks=[])
    if args.tasks:
        data = load_suite_data(
            resolve_tasks(args.tasks),
            args.data_root,
            seed=args.seed,
            sts_source=args.sts_source,
            on_missing="skip",
            geometry_pairs=args.geometry_pairs,
        )
        for name, reason in data.skipped.items():
            print(f"Skipped {name}: {reason}")
        if not data.tasks:
            raise DataError(f"None of the requested tasks ({', '.join(args.tasks)}) has data under {args.data_root}.")
    fit_texts = corpus_texts(args.fit_corpus, args.data_root, args.sts_source) if specs else None
    sentences = layer_sentences(args) if args.layers else None
    base = base_model(args) if args.layers else None

    model, source = load_model(args.model, device=args.device)
    variants: list[Variant] = []
    markdown = ""
    if data.tasks:
        raw = CachedEmbedder(make_embedder(model, args.batch_size))
        variants = build_variants(args.model, raw, specs, args.fit_corpus, fit_texts, show_progress)
        score_variants(variants, data, seed=args.seed, num_resamples=args.bootstrap, show_progress=show_progress)
        markdown = task_tables(variants, data)
    layers = None
    if sentences is not None:
        layers = evaluate_layer_models(args, model, base, sentences)
        markdown += ("\n" if markdown else "") + layers_table(layers)
    print(markdown)
    if args.markdown is not None:
        write_text_atomic(args.markdown, markdown)
        print(f"Tables written to {args.markdown}")
    if args.output is not None:
        document = results_document(args, source, data, variants, time.perf_counter() - start, layers)
        write_json_atomic(args.output, document)
        print(f"Results written to {args.output}")
    if args.plots is not None:
        written = write_plots(args.plots, variants, data) if variants else []
        if layers is not None:
            written.append(write_layers_plot(layers, args.plots))
        for path in written:
            print(f"Plot written to {path}")
    return 0
