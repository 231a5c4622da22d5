"""Measure one training step of all-MiniLM-L6-v2 on book pairs at batch sizes 64 to 4096, with and without caching.

Each configuration runs in a fresh subprocess, so its peak resident memory (max RSS) is its own. The parent
watches each child's RSS and kills it above --memory-limit-gb. A mode stops at its first failure, or when
a straight line through its last two peaks predicts that the next batch size would pass the memory limit.
It also stops when the next step time, extrapolated linearly in the batch size, would pass
--max-step-seconds. The largest uncached batch within --target-gb is read off the measured peaks, or extrapolated
along that line when the mode never reached the target (the output says which). For cached mode the
objective alone is then measured at larger batches, because its memory grows with the square of the batch.

    python bench/bench_batch_scaling.py --memory-limit-gb 20 --max-step-seconds 600   # 12 minutes, 2 quiet cores
    python bench/bench_batch_scaling.py --modes cached --batch-sizes 4096             # one size, then the objective
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import psutil
from benchlib import GIB, run_child

BATCH_SIZES = [64, 128, 256, 512, 1024, 2048, 4096]
EMBEDDING_SIZE = 384  # all-MiniLM-L6-v2
MODES = ("uncached", "cached")


def run_one(batch_size: int, mode: str, chunk_size: int, data_path: str) -> dict[str, float]:
    """Run one optimizer step in this process and return its pairs per second and memory."""
    import torch

    from isotune.encoder import build_encoder
    from isotune.recipe import DataConfig, ModelConfig, load_recipe
    from isotune.training.batches import PairBatcher
    from isotune.training.checkpoint import TrainerState
    from isotune.training.loop import _optimizer_step, make_accelerator
    from isotune.training.run import load_training_pairs

    torch.manual_seed(0)
    recipe = load_recipe(
        None,
        [
            f"training.batch_size={batch_size}",
            f"training.cached={'true' if mode == 'cached' else 'false'}",
            f"training.forward_chunk_size={chunk_size}",
        ],
    )
    pairs = load_training_pairs(DataConfig(path=data_path, encoding="latin-1")).pairs
    accelerator = make_accelerator(recipe)
    model = build_encoder(ModelConfig())
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.training.learning_rate)
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()
    batcher = PairBatcher(len(pairs), batch_size, recipe.training.seed)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    started = time.perf_counter()
    logs = _optimizer_step(recipe, accelerator, model, optimizer, batcher, pairs, TrainerState())
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"seconds": seconds, "pairs_per_s": batch_size / seconds, "peak_rss": peak, "rss_before": before, **logs}


def run_objective(batch_size: int) -> dict[str, float]:
    """Run the default objective forward and backward on random embeddings of `batch_size` pairs, in this process.

    This is the part of a cached step whose memory grows with the square of the batch: the pairwise
    distances, logits and same-text masks. The texts are all distinct, as in a batch of book pairs.
    """
    import torch

    from isotune.recipe import load_recipe
    from isotune.training.objective import compute_objective

    torch.manual_seed(0)
    config = load_recipe(None).objective
    x = torch.nn.functional.normalize(torch.randn(batch_size, EMBEDDING_SIZE), dim=1).requires_grad_(True)
    y = torch.nn.functional.normalize(torch.randn(batch_size, EMBEDDING_SIZE), dim=1).requires_grad_(True)
    texts = ([f"first {i}" for i in range(batch_size)], [f"second {i}" for i in range(batch_size)])
    started = time.perf_counter()
    compute_objective(config, x, y, texts)["loss"].backward()
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def objective_section(cached: dict[int, dict[str, float]], args: argparse.Namespace) -> str:
    """Find the largest cached batch within --target-gb from the step peak and the objective's own growth.

    A cached step's peak at batch n is estimated as the measured step peak at the largest measured batch
    b plus what the objective alone adds from b to n, measured on random embeddings in separate processes.
    """
    if not cached:
        return "none measured"
    base_batch = max(cached)
    print(f"\nobjective alone (default recipe, {EMBEDDING_SIZE}-dim random embeddings), from batch {base_batch}:")
    print(f"{'batch':>7} {'seconds':>8} {'peak RSS GiB':>13} {'cached step estimate GiB':>25}")
    objective_base = None
    fitting = None
    for batch_size in [base_batch * factor for factor in (1, 2, 3, 4, 6, 8, 12, 16)]:
        command = [sys.executable, __file__, "--objective-child", str(batch_size)]
        result = run_child(command, args.memory_limit_gb)
        if isinstance(result, str):
            print(f"{batch_size:>7}  {result}")
            break
        if objective_base is None:
            objective_base = result["peak_rss"]
        estimate = cached[base_batch]["peak_rss"] + result["peak_rss"] - objective_base
        print(f"{batch_size:>7} {result['seconds']:>8.1f} {result['peak_rss'] / GIB:>13.2f} {estimate / GIB:>25.2f}")
        if estimate > args.target_gb * GIB:
            break
        fitting = batch_size
    if fitting is None:
        return "none measured"
    return f"at least {fitting:,} (step peak at {base_batch} plus the objective's measured growth)"


def measure(batch_size: int, mode: str, args: argparse.Namespace) -> dict[str, float] | str:
    """Run one configuration in a subprocess; return its result, or why it failed."""
    command = [sys.executable, __file__, "--child", str(batch_size), mode, "--chunk-size", str(args.chunk_size)]
    command += ["--data", args.data]
    return run_child(command, args.memory_limit_gb)


def predicted_peak(results: dict[int, dict[str, float]], batch_size: int) -> float | None:
    """Extrapolate peak RSS to `batch_size` along the line through the two largest measured batches."""
    measured = sorted(results)
    if len(measured) < 2:
        return None
    small, large = measured[-2], measured[-1]
    slope = (results[large]["peak_rss"] - results[small]["peak_rss"]) / (large - small)
    return results[large]["peak_rss"] + slope * (batch_size - large)


def largest_within(results: dict[int, dict[str, float]], target: float) -> str:
    """Return the largest batch whose peak RSS stays under `target` bytes, measured or extrapolated."""
    measured = sorted(results)
    fitting = [b for b in measured if results[b]["peak_rss"] <= target]
    if not fitting:
        return "none measured"
    if fitting[-1] != measured[-1] or len(measured) < 2:
        return f"{fitting[-1]} (measured; the next size measured exceeded it)"
    small, large = measured[-2], measured[-1]
    slope = (results[large]["peak_rss"] - results[small]["peak_rss"]) / (large - small)
    if slope <= 0:
        return f"> {large} (peak RSS did not grow between {small} and {large})"
    estimate = large + (target - results[large]["peak_rss"]) / slope
    return f"about {int(estimate):,} (extrapolated linearly from the peaks at {small} and {large})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, metavar=("BATCH", "MODE"), help=argparse.SUPPRESS)
    parser.add_argument("--objective-child", type=int, metavar="BATCH", help=argparse.SUPPRESS)
    parser.add_argument("--chunk-size", type=int, default=32, help="training.forward_chunk_size (texts)")
    parser.add_argument("--data", default="../shared/data/books", help="folder of books (Latin-1 text files)")
    parser.add_argument("--memory-limit-gb", type=float, default=12.0, help="kill a run above this RSS (GiB)")
    parser.add_argument(
        "--max-step-seconds", type=float, default=200.0, help="skip batches whose predicted step time is longer"
    )
    parser.add_argument("--target-gb", type=float, default=24.0, help="memory for the largest-batch estimate (GiB)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=BATCH_SIZES, help="batch sizes to measure")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="modes to measure")
    args = parser.parse_args()
    if args.objective_child:
        print(json.dumps(run_objective(args.objective_child)))
        return
    if args.child:
        result = run_one(int(args.child[0]), args.child[1], args.chunk_size, args.data)
        print(json.dumps(result))
        return

    import torch

    print(f"torch {torch.__version__}, {psutil.cpu_count()} CPUs, {torch.get_num_threads()} threads, fp32")
    print(f"forward_chunk_size {args.chunk_size}; one optimizer step per configuration, each in a fresh process")
    print(f"{'mode':<9} {'batch':>6} {'seconds':>8} {'pairs/s':>8} {'peak RSS GiB':>13}  loss")
    summary = {}
    for mode in args.modes:
        results: dict[int, dict[str, float]] = {}
        for batch_size in args.batch_sizes:
            guess = predicted_peak(results, batch_size)
            if guess is not None and guess > args.memory_limit_gb * GIB:
                print(f"{mode:<9} {batch_size:>6}  skipped: predicted peak {guess / GIB:.1f} GiB > limit")
                break
            if results:
                largest = max(results)
                seconds = results[largest]["seconds"] * batch_size / largest
                if seconds > args.max_step_seconds:
                    print(f"{mode:<9} {batch_size:>6}  skipped: predicted step time {seconds:.0f} s > limit")
                    break
            result = measure(batch_size, mode, args)
            if isinstance(result, str):
                print(f"{mode:<9} {batch_size:>6}  {result}")
                break
            results[batch_size] = result
            print(
                f"{mode:<9} {batch_size:>6} {result['seconds']:>8.1f} {result['pairs_per_s']:>8.1f} "
                f"{result['peak_rss'] / GIB:>13.2f}  {result['loss']:.4f}",
                flush=True,
            )
        if mode == "cached":
            # The cached step's own peak grows slowly, and a line through it misses the objective's
            # quadratic memory, so the largest cached batch comes from measuring the objective alone.
            summary[mode] = objective_section(results, args)
        else:
            summary[mode] = largest_within(results, args.target_gb * GIB)
    for mode, text in summary.items():
        print(f"largest batch within {args.target_gb:g} GiB, {mode}: {text}")


if __name__ == "__main__":
    main()
