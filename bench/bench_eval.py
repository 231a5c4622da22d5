"""Time the `isotune eval` suite for all-MiniLM-L6-v2, and compare encoding speed with SentenceTransformer.encode.

Run from the repository root (the data root defaults to ../shared/data):

    python bench/bench_eval.py --threads 2 --output bench-eval.json

It prints three Markdown tables. The first is the suite time per task group. Each group starts from an
empty embedding cache, except `postprocess`, which reuses the cache of `sts` and `geometry` and so times
fitting and scoring only. The second gives sentences per second of isotune's embedding path
(`CachedEmbedder` over `make_embedder`, texts sorted by length in chunks of 4096) next to
`SentenceTransformer.encode` on the same texts, measured alternately in the same process. The third is
the results table of every group.
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
from isotune.evaluation.suite import load_suite_data, score_suite
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
    parser.add_argument("--groups", nargs="+", default=[*GROUPS, "postprocess"], help="groups to time")
    parser.add_argument("--output", type=Path, help="write timings and results as JSON")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    torch.set_num_threads(args.threads)

    model = load_encoder(args.model)
    speed_texts = corpus_texts("stsb-dev", args.data_root) + corpus_texts("sts12", args.data_root)
    speed = measure_encoding(model, list(dict.fromkeys(speed_texts))[: args.speed_texts], args.batch_size)

    timings, rows, caches = {}, {}, {}
    for group in [name for name in GROUPS if name in args.groups]:
        data = load_suite_data(GROUPS[group], args.data_root, on_missing="skip")
        raw = CachedEmbedder(make_embedder(model, args.batch_size))
        start = time.perf_counter()
        results = score_suite(raw, data, show_progress=True)
        timings[group] = {
            "seconds": time.perf_counter() - start,
            "tasks": data.tasks,
            "skipped": sorted(data.skipped),
            "distinct_texts": len(raw),
        }
        rows.setdefault(args.model, {}).update(results)
        caches[group] = (raw, data)
    if "postprocess" in args.groups and {"sts", "geometry"} <= set(caches):
        raw, data = caches["sts"]
        geometry_raw, geometry_data = caches["geometry"]
        raw.add(geometry_data.texts())
        data.tasks += geometry_data.tasks
        data.geometry = geometry_data.geometry
        start = time.perf_counter()
        specs = [parse_postprocess(text) for text in POSTPROCESS]
        variants = build_variants(
            args.model, raw, specs, "stsb-train", corpus_texts("stsb-train", args.data_root), True
        )
        score_variants(variants[1:], data, seed=0, num_resamples=200, show_progress=True)
        timings["postprocess"] = {
            "seconds": time.perf_counter() - start,
            "tasks": data.tasks,
            "skipped": [],
            "distinct_texts": len(raw),
        }
        rows.update({variant.label: variant.results for variant in variants[1:]})

    print(f"\nSuite time per task group ({args.model}, {args.threads} torch threads, batch {args.batch_size}):\n")
    print("| group | tasks run | tasks skipped | distinct texts | seconds |\n|---|---|---|---:|---:|")
    for group, timing in timings.items():
        skipped = ", ".join(timing["skipped"]) or "none"
        print(
            f"| {group} | {', '.join(timing['tasks'])} | {skipped} | {timing['distinct_texts']} "
            f"| {timing['seconds']:.1f} |"
        )
    print(f"| total | | | | {sum(timing['seconds'] for timing in timings.values()):.1f} |")
    print(f"\nEncoding speed on {min(args.speed_texts, len(set(speed_texts)))} STS sentences (mean of 2 runs each):\n")
    print("| path | sentences/s |\n|---|---:|")
    for path, rate in speed.items():
        print(f"| {path} | {rate:.1f} |")
    print("\nResults:\n")
    print(results_table(rows))
    if args.output is not None:
        args.output.write_text(json.dumps({"timings": timings, "speed": speed, "results": rows}, indent=2))


if __name__ == "__main__":
    main()
