"""Encoding speed of isotune.encode against SentenceTransformer.encode on book sentences, in one process.

Both embed the same distinct sentences of the books (a seeded sample) with all-MiniLM-L6-v2 at the same
batch size and return L2-normalised rows. Each method is warmed up on 256 sentences, then the methods run
in alternating order (A B, then B A) for --repeats rounds; the table gives the median per method, its
sentences per second, the speed against SentenceTransformer.encode and the largest absolute difference of
its embeddings from those of SentenceTransformer.encode.

With --levers, two more rows isolate the batching: isotune.encode with batching=same_length (batches that
never mix token lengths, so no padding but many small passes) and batching=fixed (tokenised once and sorted
by token count, then cut every --batch-size texts, as SentenceTransformer.encode cuts its batches). Each
--threads value repeats the whole table with that many torch threads.

    python bench/bench_encode.py                       # 10,000 sentences, 5 rounds
    python bench/bench_encode.py --levers --threads 1 2
    python bench/bench_encode.py --quick               # smoke test: 300 sentences, 2 rounds
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import benchlib
import numpy as np
import torch

from isotune.encoder import load_encoder
from isotune.encoding import encode

SENTENCE_TRANSFORMERS = "SentenceTransformer.encode"


def methods(model, batch_size: int, levers: bool) -> dict:
    """Return the encoding methods to compare, each a function from texts to a `[n, dim]` float32 array."""
    table = {
        SENTENCE_TRANSFORMERS: lambda texts: model.encode(
            texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        ),
        "isotune.encode": lambda texts: encode(model, texts, batch_size=batch_size),
    }
    if levers:
        for batching in ("same_length", "fixed"):
            table[f"isotune.encode, batching={batching}"] = lambda texts, batching=batching: encode(
                model, texts, batch_size=batch_size, batching=batching
            )
    return table


def measure(model, texts: list[str], batch_size: int, repeats: int, levers: bool) -> dict[str, dict]:
    """Time every method `repeats` times in alternating order; return wall and CPU seconds and the max difference."""
    candidates = methods(model, batch_size, levers)
    for run in candidates.values():
        run(texts[:256])  # warm-up: threads, allocator, tokenizer
    names = list(candidates)
    walls: dict[str, list[float]] = {name: [] for name in names}
    cpus: dict[str, list[float]] = {name: [] for name in names}
    outputs: dict[str, np.ndarray] = {}
    for round_index in range(repeats):
        for name in names if round_index % 2 == 0 else names[::-1]:
            wall, cpu = time.perf_counter(), time.process_time()
            outputs[name] = candidates[name](texts)
            walls[name].append(time.perf_counter() - wall)
            cpus[name].append(time.process_time() - cpu)
    reference = outputs[SENTENCE_TRANSFORMERS]
    return {
        name: {
            "wall_seconds": walls[name],
            "cpu_seconds": cpus[name],
            "max_abs_difference": float(np.abs(outputs[name] - reference).max()),
        }
        for name in names
    }


def print_table(results: dict[str, dict], count: int, threads: int) -> None:
    baseline = statistics.median(results[SENTENCE_TRANSFORMERS]["wall_seconds"])
    print(
        f"\n{count} sentences, {threads} torch thread(s):\n\n| method | median s | sentences/s | median CPU s | "
        "speed vs SentenceTransformer.encode | max abs difference |\n|---|---:|---:|---:|---:|---:|"
    )
    for name, result in results.items():
        seconds = statistics.median(result["wall_seconds"])
        print(
            f"| {name} | {seconds:.2f} | {count / seconds:.0f} | {statistics.median(result['cpu_seconds']):.2f} | "
            f"{baseline / seconds:.2f}x | {result['max_abs_difference']:.1e} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=benchlib.DEFAULT_DATA, help="folder with books/")
    parser.add_argument("--texts", type=int, default=10_000, help="distinct book sentences to embed")
    parser.add_argument("--batch-size", type=int, default=128, help="texts per forward pass, for both methods")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per method")
    parser.add_argument("--threads", type=int, nargs="+", help="torch thread counts to try (default: torch's)")
    parser.add_argument("--levers", action="store_true", help="add isotune.encode with the other batchings")
    parser.add_argument("--quick", action="store_true", help="smoke test: 300 sentences, 2 rounds")
    parser.add_argument("--output", type=Path, help="also write the measurements as JSON")
    args = parser.parse_args()
    if args.quick:
        args.texts, args.repeats = 300, 2

    texts = benchlib.book_sentences(args.data_root, args.texts)
    model = load_encoder("all-MiniLM-L6-v2")
    print(
        f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, batch {args.batch_size}"
    )
    everything = {}
    for threads in args.threads or [torch.get_num_threads()]:
        torch.set_num_threads(threads)
        results = measure(model, texts, args.batch_size, args.repeats, args.levers)
        print_table(results, len(texts), threads)
        everything[threads] = results
    if args.output:
        args.output.write_text(json.dumps(everything, indent=2))


if __name__ == "__main__":
    main()
