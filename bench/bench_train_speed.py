"""Training speed of isotune against SentenceTransformerTrainer with MultipleNegativesRankingLoss, side by side.

Both trainers fine-tune all-MiniLM-L6-v2 (built the same way, mean pooling, fp32) on the same pairs of
consecutive book sentences: the first (warm-up + timed steps) x batch pairs of a seeded shuffle, each pair
seen once. Each configuration runs in its own process, so its peak resident memory is its own. After
--warmup-steps, --steps optimizer steps are timed from the end of the last warm-up step to the end of the
last step. Then the trained model is scored on STS-B dev, so the speed comes with the result it bought.

- sentence-transformers: MultipleNegativesRankingLoss(scale=20), the default batch sampler, the default
  optimizer of the transformers Trainer (fused AdamW with torch >= 2.8), no evaluation, saving or logging.
- isotune info_nce: objective.name=info_nce with temperature 0.05 = 1/20, the same loss (isotune also
  drops copies of a text from its negatives, which the book pairs almost never contain).
- isotune align_uniform: the default objective, for reference.

Both use learning rate 2e-5, linear decay after warm-up over 10% of the steps, gradient clipping at 1.0,
weight decay 0 and dropout on. MFU is 6 x non-embedding parameters x non-padding tokens per second,
divided by the fp32 matmul FLOP/s that this script measures on the same machine (torch.matmul, 2048^2).

    python bench/bench_train_speed.py                  # 2 lengths x 3 trainers, 3 + 20 steps each
    python bench/bench_train_speed.py --quick          # smoke test: batch 8, 1 + 2 steps, max length 64
    python bench/bench_train_speed.py --levers         # isotune's levers one at a time, interleaved, 1 thread
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import benchlib

TRAINERS = ("sentence-transformers", "isotune info_nce", "isotune align_uniform")
MODEL = "sentence-transformers/all-MiniLM-L6-v2"
LEARNING_RATE = 2e-5
WARMUP_RATIO = 0.1
SEED = 42


def non_embedding_parameters(model) -> int:
    """Count the transformer's parameters outside the token/position embeddings and the unused BERT pooler."""
    backbone = model[0].auto_model
    skipped = sum(
        p.numel()
        for name, child in backbone.named_children()
        if name in ("embeddings", "pooler")
        for p in child.parameters()
    )
    return sum(p.numel() for p in backbone.parameters()) - skipped


def tokens_per_pair(model, pairs: list[tuple[str, str]]) -> float:
    """Return the mean non-padding tokens of a pair (both texts, special tokens included, after truncation)."""
    from isotune.tokens import TokenCache

    lengths = TokenCache(model).lengths([text for pair in pairs for text in pair])
    return sum(lengths) / len(pairs)


def dev_score(model, data_root: str, dev_pairs: int | None) -> float | None:
    """Return STS-B dev Spearman x100 of `model` (the first `dev_pairs` pairs), or None without the data."""
    from isotune.encoder import make_embedder
    from isotune.evaluation.sts import StsSubset, StsTask, evaluate_sts, load_stsb

    path = Path(data_root) / "sts" / "stsbenchmark" / "sts-dev.csv"
    if not path.is_file():
        return None
    task = load_stsb(path)
    if dev_pairs is not None:
        whole = task.subsets[0]
        part = StsSubset(
            whole.name, whole.sentences1[:dev_pairs], whole.sentences2[:dev_pairs], whole.scores[:dev_pairs]
        )
        task = StsTask(task.name, [part])
    return evaluate_sts(make_embedder(model), task)["spearman"]["all"]


def train_isotune(objective: str, args: argparse.Namespace, pairs, run_dir: Path) -> dict:
    """Train with isotune's loop; return step end times (perf_counter), losses and the trained model."""
    import isotune.training.loop as loop
    from isotune.encoder import build_encoder
    from isotune.recipe import load_recipe

    recipe = load_recipe(
        None,
        [
            f"model.max_seq_length={args.max_length}",
            f"objective.name={objective}",
            "objective.temperature=0.05",
            f"training.batch_size={args.batch_size}",
            f"training.max_steps={args.warmup_steps + args.steps}",
            f"training.learning_rate={LEARNING_RATE}",
            f"training.warmup_ratio={WARMUP_RATIO}",
            f"training.seed={SEED}",
            f"training.cached={'true' if args.cached else 'false'}",
            # Cached mode needs several chunks per batch of 2 x batch_size texts.
            f"training.forward_chunk_size={min(32, 2 * args.batch_size - 1)}",
            "training.eval_every=0",
            "training.checkpoint_every=0",
            "training.keep_best=false",
            f"output_dir={run_dir}",
        ],
    )
    ends: list[float] = []
    step_function = loop._optimizer_step

    def timed_step(*step_args, **step_kwargs):
        result = step_function(*step_args, **step_kwargs)
        ends.append(time.perf_counter())
        return result

    loop._optimizer_step = timed_step  # records when each optimizer step ends; the loop itself is unchanged
    started = time.perf_counter()
    model = build_encoder(recipe.model)
    accelerator = loop.make_accelerator(recipe)
    state = loop.train(recipe, accelerator, model, pairs, run_dir, fingerprint="bench")
    losses = [entry["loss"] for entry in state.history]
    return {"started": started, "ends": ends, "losses": losses, "model": accelerator.unwrap_model(model)}


def train_sentence_transformers(args: argparse.Namespace, pairs, run_dir: Path) -> dict:
    """Train with SentenceTransformerTrainer and MultipleNegativesRankingLoss(scale=20)."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.losses import MultipleNegativesRankingLoss
    from transformers import TrainerCallback

    from isotune.encoder import build_encoder
    from isotune.recipe import ModelConfig

    ends: list[float] = []
    losses: list[float] = []

    class StepTimer(TrainerCallback):
        def on_step_end(self, *_args, **_kwargs):
            ends.append(time.perf_counter())

    class RecordedLoss(MultipleNegativesRankingLoss):
        def forward(self, *loss_args, **loss_kwargs):
            loss = super().forward(*loss_args, **loss_kwargs)
            losses.append(float(loss.detach()))
            return loss

    started = time.perf_counter()
    model = build_encoder(ModelConfig(name=MODEL, max_seq_length=args.max_length))
    dataset = Dataset.from_dict({"anchor": [a for a, _ in pairs], "positive": [b for _, b in pairs]})
    steps = args.warmup_steps + args.steps
    training_args = SentenceTransformerTrainingArguments(
        output_dir=str(run_dir),
        max_steps=steps,
        per_device_train_batch_size=args.batch_size,
        learning_rate=LEARNING_RATE,
        warmup_steps=math.ceil(WARMUP_RATIO * steps),
        lr_scheduler_type="linear",
        weight_decay=0.0,
        max_grad_norm=1.0,
        seed=SEED,
        dataloader_drop_last=True,
        dataloader_num_workers=0,
        eval_strategy="no",
        save_strategy="no",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
    )
    trainer = SentenceTransformerTrainer(
        model=model,
        args=training_args,
        train_dataset=dataset,
        loss=RecordedLoss(model, scale=20.0),
        callbacks=[StepTimer()],
    )
    trainer.train()
    return {
        "started": started,
        "ends": ends,
        "losses": losses,
        "model": model,
        "optimizer": type(trainer.optimizer).__name__,
    }


def run_child(trainer: str, args: argparse.Namespace) -> dict:
    """Train one configuration in this process and return its measurements."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    loading = time.perf_counter()
    all_pairs = benchlib.book_pairs(args.data_root)
    pairs = benchlib.pair_subset(all_pairs, args.batch_size * (args.warmup_steps + args.steps))
    load_seconds = time.perf_counter() - loading
    with tempfile.TemporaryDirectory() as folder:
        if trainer == "sentence-transformers":
            result = train_sentence_transformers(args, pairs, Path(folder) / "run")
        else:
            result = train_isotune(trainer.split()[1], args, pairs, Path(folder) / "run")
    model, ends = result["model"], result["ends"]
    if len(ends) != args.warmup_steps + args.steps:
        raise RuntimeError(f"{trainer} ran {len(ends)} steps, expected {args.warmup_steps + args.steps}.")
    seconds = ends[-1] - ends[args.warmup_steps - 1]
    pair_tokens = tokens_per_pair(model, pairs)
    pairs_per_second = args.steps * args.batch_size / seconds
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # bytes; Linux reports KiB
    return {
        "trainer": trainer,
        "max_length": args.max_length,
        "batch_size": args.batch_size,
        "threads": torch.get_num_threads(),
        "pairs": len(pairs),
        "timed_seconds": seconds,
        "seconds_per_step": seconds / args.steps,
        "load_seconds": load_seconds,
        "first_step_seconds": ends[0] - result["started"],
        "total_seconds": ends[-1] - result["started"],
        "pairs_per_second": pairs_per_second,
        "tokens_per_pair": pair_tokens,
        "tokens_per_second": pairs_per_second * pair_tokens,
        "non_embedding_parameters": non_embedding_parameters(model),
        "peak_rss": peak_rss,
        "timed_loss": statistics.mean(result["losses"][args.warmup_steps :]),
        "stsb_dev": None if args.skip_eval else dev_score(model, args.data_root, args.dev_pairs),
        "cached": args.cached,
        "optimizer": result.get("optimizer", "AdamW (isotune.training.optimizer)"),
    }


def child_arguments(args: argparse.Namespace, trainer: str, max_length: int) -> list[str]:
    arguments = ["--child", trainer, "--max-lengths", str(max_length), "--batch-size", str(args.batch_size)]
    arguments += ["--warmup-steps", str(args.warmup_steps), "--steps", str(args.steps), "--data-root", args.data_root]
    if args.threads:
        arguments += ["--threads", str(args.threads)]
    if args.dev_pairs is not None:
        arguments += ["--dev-pairs", str(args.dev_pairs)]
    if args.skip_eval:
        arguments.append("--skip-eval")
    if args.cached:
        arguments.append("--cached")
    return arguments


def print_table(results: list[dict], flops: float) -> None:
    print(
        "\n| trainer | max len | pairs/s | tokens/s | s/step | peak RSS GiB | MFU | loss (timed steps) | STS-B dev | "
        "speed vs sentence-transformers |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    reference = {r["max_length"]: r["pairs_per_second"] for r in results if r["trainer"] == "sentence-transformers"}
    for result in results:
        mfu = 6 * result["non_embedding_parameters"] * result["tokens_per_second"] / flops
        baseline = reference.get(result["max_length"])
        ratio = f"{result['pairs_per_second'] / baseline:.2f}x" if baseline else "n/a"
        score = f"{result['stsb_dev']:.2f}" if result["stsb_dev"] is not None else "n/a"
        print(
            f"| {result['trainer']} | {result['max_length']} | {result['pairs_per_second']:.1f} | "
            f"{result['tokens_per_second']:.0f} | {result['seconds_per_step']:.2f} | "
            f"{result['peak_rss'] / benchlib.GIB:.2f} | {100 * mfu:.1f}% | {result['timed_loss']:.4f} | {score} | "
            f"{ratio} |"
        )


def compare(args: argparse.Namespace) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    flops = benchlib.matmul_flops()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}; fp32 matmul {flops / 1e9:.1f} GFLOP/s"
    )
    print(
        f"batch {args.batch_size}, {args.warmup_steps} warm-up + {args.steps} timed steps, "
        "each configuration in a fresh process"
    )
    results = []
    for max_length in args.max_lengths:
        for trainer in args.trainers:
            command = benchlib.python_command(__file__, *child_arguments(args, trainer, max_length))
            result = benchlib.run_child(command, args.memory_limit_gb)
            if isinstance(result, str):
                print(f"{trainer}, max length {max_length}: {result}", flush=True)
                continue
            results.append(result)
            print(f"{trainer}, max length {max_length}: {result['pairs_per_second']:.1f} pairs/s", flush=True)
    flops_after = benchlib.matmul_flops()
    print(f"fp32 matmul after the runs: {flops_after / 1e9:.1f} GFLOP/s (MFU uses the mean of both)")
    print_table(results, (flops + flops_after) / 2)
    if args.base_score:
        from isotune.encoder import load_encoder

        score = dev_score(load_encoder("all-MiniLM-L6-v2"), args.data_root, args.dev_pairs)
        print(f"\nSTS-B dev of the untrained model: {score:.2f}" if score is not None else "\nNo STS-B dev data.")
    if args.output:
        args.output.write_text(json.dumps({"matmul_flops": [flops, flops_after], "results": results}, indent=2))


def measure_levers(args: argparse.Namespace) -> None:
    """Time one training step per lever setting, interleaved, on the same batches, in this process.

    Every setting trains its own copy of the model with the same simplified step (embed, objective,
    backward, clipping, AdamW), so only the lever differs. Reported per setting: median wall-clock and CPU
    seconds per step; CPU time is steadier than wall-clock time on a machine shared with other work.
    """
    import torch

    from isotune.encoder import build_encoder
    from isotune.losses import align_uniform_loss
    from isotune.recipe import ModelConfig, load_recipe
    from isotune.tokens import TokenCache
    from isotune.training.embedding import batch_chunks, embed_chunk, length_chunks, restore_order
    from isotune.training.loop import make_accelerator

    # One thread unless --threads is given, because the CPU time of several threads includes their spin-waiting.
    torch.set_num_threads(args.threads or 1)
    accelerator = make_accelerator(load_recipe(None))
    pairs = benchlib.pair_subset(benchlib.book_pairs(args.data_root), args.batch_size * args.steps)
    base = build_encoder(ModelConfig(name=MODEL, max_seq_length=args.max_lengths[0]))
    chunk_size = 32

    def character_chunks(model, texts, tokens):
        return length_chunks(texts, chunk_size), tokens

    def token_chunks(model, texts, tokens):
        return batch_chunks(model, texts, chunk_size, tokens)  # without a kept cache: one for this batch

    settings = {
        # name: (chunking, keep a token cache across steps, fused AdamW)
        "before: 32-text chunks by characters, preprocess per chunk, AdamW loop": (character_chunks, False, False),
        "+ token cache across steps": (character_chunks, True, False),
        "+ padding-aware chunks": (token_chunks, False, False),
        "+ fused AdamW": (character_chunks, False, True),
        "all levers (isotune now)": (token_chunks, True, True),
    }
    runs = {}
    for name, (chunking, keep_tokens, fused) in settings.items():
        model = copy.deepcopy(base).train()
        optimizer = torch.optim.AdamW(
            model.parameters(),
            lr=LEARNING_RATE,
            weight_decay=0.0,
            fused=fused or None,
            foreach=False if not fused else None,
        )
        runs[name] = (model, optimizer, chunking, TokenCache(model) if keep_tokens else None)

    def step(name: str, batch: list[tuple[str, str]]) -> None:
        model, optimizer, chunking, tokens = runs[name]
        texts = [a for a, _ in batch] + [b for _, b in batch]
        chunks, tokens = chunking(model, texts, tokens)
        pieces = [embed_chunk(accelerator, model, [texts[i] for i in rows], tokens) for rows in chunks]
        embeddings = restore_order(pieces, chunks)
        loss = align_uniform_loss(embeddings[: len(batch)], embeddings[len(batch) :])["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    walls: dict[str, list[float]] = {name: [] for name in settings}
    cpus: dict[str, list[float]] = {name: [] for name in settings}
    names = list(settings)
    for index in range(args.steps):
        batch = pairs[index * args.batch_size : (index + 1) * args.batch_size]
        for name in names if index % 2 == 0 else names[::-1]:
            wall, cpu = time.perf_counter(), time.process_time()
            step(name, batch)
            if index >= args.warmup_steps:
                walls[name].append(time.perf_counter() - wall)
                cpus[name].append(time.process_time() - cpu)
    timed = args.steps - args.warmup_steps
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; batch {args.batch_size}, max length "
        f"{args.max_lengths[0]}, align_uniform; {timed} timed steps per setting after {args.warmup_steps} warm-up, "
        "settings interleaved step by step"
    )
    print("\n| setting | wall s/step (median) | CPU s/step (median) | CPU time vs before |\n|---|---:|---:|---:|")
    before = statistics.median(cpus[names[0]])
    for name in names:
        cpu = statistics.median(cpus[name])
        print(f"| {name} | {statistics.median(walls[name]):.3f} | {cpu:.3f} | {before / cpu:.2f}x |")
    optimizer_seconds = time_optimizer_step(base)
    print("\n| AdamW implementation | s/step over all parameters (median of 10) |\n|---|---:|")
    for name, seconds in optimizer_seconds.items():
        print(f"| {name} | {seconds:.4f} |")
    if args.output:
        args.output.write_text(json.dumps({"wall": walls, "cpu": cpus, "adamw": optimizer_seconds}, indent=2))


def time_optimizer_step(model, repeats: int = 10) -> dict[str, float]:
    """Time AdamW's step alone over the parameters of `model` with random gradients, per implementation."""
    import torch

    parameters = [p.detach().clone().requires_grad_(True) for p in model.parameters()]
    for parameter in parameters:
        parameter.grad = torch.randn_like(parameter) * 1e-3
    implementations = {"per-parameter loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}
    seconds = {}
    for name, options in implementations.items():
        optimizer = torch.optim.AdamW(parameters, lr=LEARNING_RATE, weight_decay=0.0, **options)
        optimizer.step()  # creates the state
        runs = []
        for _ in range(repeats):
            start = time.perf_counter()
            optimizer.step()
            runs.append(time.perf_counter() - start)
        seconds[name] = statistics.median(runs)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", choices=TRAINERS, help=argparse.SUPPRESS)
    parser.add_argument("--trainers", nargs="+", choices=TRAINERS, default=list(TRAINERS))
    parser.add_argument("--max-lengths", nargs="+", type=int, default=[64, 128], help="model.max_seq_length values")
    parser.add_argument("--batch-size", type=int, default=64, help="pairs per step")
    parser.add_argument("--warmup-steps", type=int, default=3, help="untimed steps first (at least 1)")
    parser.add_argument("--steps", type=int, default=20, help="timed optimizer steps")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--data-root", default=benchlib.DEFAULT_DATA, help="folder with books/ and sts/")
    parser.add_argument("--dev-pairs", type=int, help="score only the first N STS-B dev pairs (default: all 1,500)")
    parser.add_argument("--memory-limit-gb", type=float, default=16.0, help="kill a configuration above this RSS")
    parser.add_argument("--base-score", action="store_true", help="also score the untrained model on STS-B dev")
    parser.add_argument("--skip-eval", action="store_true", help="do not score the trained models on STS-B dev")
    parser.add_argument("--cached", action="store_true", help="isotune trainers: training.cached=true")
    parser.add_argument("--levers", action="store_true", help="time isotune's levers one at a time instead")
    parser.add_argument(
        "--quick", action="store_true", help="smoke test: batch 8, 1 + 2 steps, length 64, 50 dev pairs"
    )
    parser.add_argument("--output", type=Path, help="also write the measurements as JSON")
    args = parser.parse_args()

    if args.quick:
        args.batch_size, args.warmup_steps, args.steps, args.max_lengths, args.dev_pairs = 8, 1, 2, [64], 50
        if args.levers:
            args.steps = 3
    if args.warmup_steps < 1 or args.steps < 1:
        parser.error("--warmup-steps and --steps must be at least 1, because timing starts at the end of a step.")

    if args.child:
        args.max_length = args.max_lengths[0]
        print(json.dumps(run_child(args.child, args)))
    elif args.levers:
        measure_levers(args)
    else:
        compare(args)


if __name__ == "__main__":
    sys.exit(main())
