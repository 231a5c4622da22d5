"""Time the `isotune eval` suite for all-MiniLM-L6-v2, and compare encoding speed with SentenceTransformer.encode.

Run from the repository root (the data root defaults to ../shared/data):

    python bench/bench_eval.py --threads 2 --output bench-eval.json

It prints three Markdown tables, each row as soon as it is measured. The first gives sentences per second
of isotune's embedding path (`CachedEmbedder` over `make_embedder`, texts sorted by length in chunks of
4096) next to `SentenceTransformer.encode`, both on the same texts, alternately, in the same process.
The second is the suite time per task group. Each group starts from an empty embedding cache, except
`postprocess`, which reuses the cache of `sts` and `geometry` and so times fitting and scoring only.
The third is the results table of every group.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch

from isotune.encoder import load_encoder, make_embedder
from isotune.evaluation.command import CHUNK_SIZE, build_variants, score_variants
from isotune.evaluation.embedding import CachedEmbedder
from isotune.evaluation.postprocess import parse_postprocess
from isotune.evaluation.report import results_table
from isotune.evaluation.suite import SuiteData, load_suite_data, score_suite
from isotune.evaluation.tasks import corpus_texts

GROUPS = {"sts": ["sts"], "transfer": ["transfer"], "geometry": ["geometry"]}
POSTPROCESS = ["whiten", "whiten:256", "abtt:3"]


def measure_encoding(model, texts: list[str], batch_size: int) -> dict[str, float]:
    """Return sentences/s of SentenceTransformer.encode and of isotune's path, each the mean of two runs (ABBA)."""
    model.encode(texts[:64], batch_size=batch_size)  # warm-up: threads, allocator, tokenizer

    def sentence_transformers_run() -> float:
        start = time.perf_counter()
        model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
        return time.perf_counter() - start

    def isotune_run() -> float:
        start = time.perf_counter()
        CachedEmbedder(make_embedder(model, batch_size)).add(texts, chunk_size=CHUNK_SIZE)
        return time.perf_counter() - start

    first, second, third, fourth = (
        sentence_transformers_run(),
        isotune_run(),
        isotune_run(),
        sentence_transformers_run(),
    )
    return {
        "SentenceTransformer.encode": 2 * len(texts) / (first + fourth),
        "isotune (CachedEmbedder + make_embedder)": 2 * len(texts) / (second + third),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: 2)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--speed-texts", type=int, default=3000, help="texts for the encoding-speed comparison")
    parser.add_argument(
        "--groups",
        nargs="+",
        choices=[*GROUPS, "postprocess"],
        default=["sts", "geometry", "postprocess", "transfer"],
        help="groups to time, in this order; postprocess needs sts and geometry before it",
    )
    parser.add_argument("--output", type=Path, help="write timings and results as JSON")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    torch.set_num_threads(args.threads)

    model = load_encoder(args.model)
    speed_texts = list(dict.fromkeys(corpus_texts("stsb-dev", args.data_root) + corpus_texts("sts12", args.data_root)))
    speed_texts = speed_texts[: args.speed_texts]
    speed = measure_encoding(model, speed_texts, args.batch_size)
    print(f"Encoding speed on {len(speed_texts)} STS sentences (mean of 2 runs each):\n")
    print("| path | sentences/s |\n|---|---:|")
    for path, rate in speed.items():
        print(f"| {path} | {rate:.1f} |")
    print(f"\nSuite time per task group ({args.model}, {args.threads} torch threads, batch {args.batch_size}):\n")
    print("| group | tasks run | tasks skipped | distinct texts | seconds |\n|---|---|---|---:|---:|", flush=True)

    timings, rows, caches = {}, {args.model: {}}, {}
    for group in args.groups:
        start = time.perf_counter()
        if group == "postprocess":
            raw, data = _postprocess_inputs(caches)
            specs = [parse_postprocess(text) for text in POSTPROCESS]
            fit_texts = corpus_texts("stsb-train", args.data_root)
            variants = build_variants(args.model, raw, specs, "stsb-train", fit_texts, True)
            score_variants(variants[1:], data, seed=0, num_resamples=200, show_progress=True)
            rows.update({variant.label: variant.results for variant in variants[1:]})
        else:
            data = load_suite_data(GROUPS[group], args.data_root, on_missing="skip")
            raw = CachedEmbedder(make_embedder(model, args.batch_size))
            rows[args.model].update(score_suite(raw, data, show_progress=True))
            caches[group] = (raw, data)
        timings[group] = {
            "seconds": time.perf_counter() - start,
            "tasks": data.tasks,
            "skipped": sorted(data.skipped),
            "distinct_texts": len(raw),
        }
        skipped = ", ".join(timings[group]["skipped"]) or "none"
        print(
            f"| {group} | {', '.join(data.tasks)} | {skipped} | {len(raw)} | {timings[group]['seconds']:.1f} |",
            flush=True,
        )
        if args.output is not None:
            args.output.write_text(json.dumps({"timings": timings, "speed": speed, "results": rows}, indent=2))
    print(f"| total | | | | {sum(timing['seconds'] for timing in timings.values()):.1f} |")
    print("\nResults:\n")
    print(results_table(rows))


def _postprocess_inputs(caches: dict) -> tuple[CachedEmbedder, SuiteData]:
    """Return the raw cache of the `sts` group with the `geometry` data added, so only fitting is timed."""
    if not {"sts", "geometry"} <= set(caches):
        raise SystemExit("The postprocess group needs the sts and geometry groups before it in --groups.")
    raw, sts_data = caches["sts"]
    _, geometry_data = caches["geometry"]
    raw.add(geometry_data.texts())
    data = SuiteData(tasks=[*sts_data.tasks, *geometry_data.tasks], sts=sts_data.sts, geometry=geometry_data.geometry)
    return raw, data


if __name__ == "__main__":
    main()
