"""How training cost grows: pairs per second over 1k, 10k and 100k pairs, and peak memory from batch 64 to 1024.

Every configuration is one child of bench/bench_train_speed.py in a fresh process (all-MiniLM-L6-v2, fp32,
max length 64, no STS-B evaluation), for isotune (objective info_nce, the loss of the other trainer) and
SentenceTransformerTrainer with MultipleNegativesRankingLoss(scale=20).

- Pairs: a run trains once over N pairs at batch 64 (N / 64 steps). The books give about 40,000 pairs, so
  N = 100,000 cycles through them 2.5 times (a new seeded shuffle each time), as a longer run does; texts
  seen again are already tokenised in isotune's token cache. Steady pairs/s excludes the first step; "end to
  end" divides N by the time from reading the books to the last step, so it counts data loading, model
  set-up and tokenisation too.
- Memory: one warm-up step and one timed step at each batch size; the peak RSS of the process includes the
  model, AdamW state and the pairs. isotune also runs with training.cached=true (gradient caching), whose
  activation memory depends on forward_chunk_size instead of the batch. A child above --memory-limit-gb is
  killed and reported.

    python bench/bench_scaling.py                      # both sections; the 100k-pair runs take hours on 2 cores
    python bench/bench_scaling.py --pairs 1000 10000   # pairs section without the 100k runs
    python bench/bench_scaling.py --pairs 100000 --batch-sizes --trainers "isotune info_nce"   # one trainer
    python bench/bench_scaling.py --quick              # smoke test: 32 pairs at batch 8, memory at batch 8
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import benchlib

SPEED_SCRIPT = Path(__file__).with_name("bench_train_speed.py")
ISOTUNE = "isotune info_nce"
SENTENCE_TRANSFORMERS = "sentence-transformers"


def child(args: argparse.Namespace, trainer: str, batch_size: int, steps: int, cached: bool = False) -> dict | str:
    arguments = ["--child", trainer, "--max-lengths", str(args.max_length), "--batch-size", str(batch_size)]
    arguments += ["--warmup-steps", "1", "--steps", str(steps), "--data-root", args.data_root, "--skip-eval"]
    if args.threads:
        arguments += ["--threads", str(args.threads)]
    if cached:
        arguments.append("--cached")
    return benchlib.run_child(benchlib.python_command(SPEED_SCRIPT, *arguments), args.memory_limit_gb)


def pairs_section(args: argparse.Namespace) -> list[dict]:
    print(
        f"\nPairs per second by data size (batch {args.batch_size}, max length {args.max_length}):\n\n"
        "| trainer | pairs | steps | steady pairs/s | end-to-end pairs/s | load s | first step s | peak RSS GiB |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        flush=True,
    )
    rows = []
    for count in args.pairs:
        steps = count // args.batch_size
        if steps < 2:
            raise SystemExit(f"--pairs {count} gives fewer than 2 steps of --batch-size {args.batch_size}.")
        for trainer in args.trainers:
            result = child(args, trainer, args.batch_size, steps - 1)
            if isinstance(result, str):
                print(f"| {trainer} | {count} | {steps} | {result} | | | | |", flush=True)
                continue
            total = result["load_seconds"] + result["total_seconds"]
            used = steps * args.batch_size
            print(
                f"| {trainer} | {used:,} | {steps} | {result['pairs_per_second']:.1f} | {used / total:.1f} | "
                f"{result['load_seconds']:.1f} | {result['first_step_seconds']:.1f} | "
                f"{result['peak_rss'] / benchlib.GIB:.2f} |",
                flush=True,
            )
            rows.append({"section": "pairs", "pairs": used, **result})
    return rows


def memory_section(args: argparse.Namespace) -> list[dict]:
    print(
        f"\nPeak memory by batch size (max length {args.max_length}, 1 warm-up + 1 timed step):\n\n"
        "| trainer | batch | peak RSS GiB | s/step | pairs/s |\n|---|---:|---:|---:|---:|",
        flush=True,
    )
    rows = []
    configurations = [(trainer, False) for trainer in args.trainers]
    configurations += [(ISOTUNE, True)] if ISOTUNE in args.trainers else []
    for trainer, cached in configurations:
        name = f"{trainer}, cached" if cached else trainer
        for batch_size in args.batch_sizes:
            result = child(args, trainer, batch_size, 1, cached)
            if isinstance(result, str):
                print(f"| {name} | {batch_size} | {result} | | |", flush=True)
                break  # larger batches need more memory still
            print(
                f"| {name} | {batch_size} | {result['peak_rss'] / benchlib.GIB:.2f} | "
                f"{result['seconds_per_step']:.1f} | {result['pairs_per_second']:.1f} |",
                flush=True,
            )
            rows.append({"section": "memory", **result})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, nargs="*", default=[1_000, 10_000, 100_000], help="data sizes to train on")
    parser.add_argument("--batch-sizes", type=int, nargs="*", default=[64, 128, 256, 512, 1024])
    parser.add_argument("--batch-size", type=int, default=64, help="batch for the pairs section")
    parser.add_argument(
        "--trainers",
        nargs="+",
        choices=[SENTENCE_TRANSFORMERS, ISOTUNE],
        default=[SENTENCE_TRANSFORMERS, ISOTUNE],
        help="trainers to measure (isotune also runs cached in the memory section)",
    )
    parser.add_argument("--max-length", type=int, default=64, help="model.max_seq_length")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--data-root", default=benchlib.DEFAULT_DATA, help="folder with books/")
    parser.add_argument("--memory-limit-gb", type=float, default=16.0, help="kill a configuration above this RSS")
    parser.add_argument("--quick", action="store_true", help="smoke test: 32 pairs at batch 8, memory at batch 8")
    parser.add_argument("--output", type=Path, help="also write the measurements as JSON")
    args = parser.parse_args()
    if args.quick:
        args.pairs, args.batch_size, args.batch_sizes = [32], 8, [8]

    import torch

    print(f"torch {torch.__version__}, {args.threads or torch.get_num_threads()} threads, fp32")
    rows = pairs_section(args) if args.pairs else []
    rows += memory_section(args) if args.batch_sizes else []
    if args.output:
        args.output.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
