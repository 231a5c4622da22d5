"""Run a test function on several CPU processes joined in one gloo process group, with a bound on the wait.

The processes meet through a file in the test's temporary folder rather than a TCP port picked in advance,
so no other process can take the address between the pick and the bind. Every collective, and the wait for
the processes, ends with an error after `timeout_s` instead of hanging the test run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from isotune.distributed import release_process_group


def _join_group(rank: int, worker: Callable, store: str, world_size: int, timeout_s: float, args: tuple) -> None:
    dist.init_process_group(
        "gloo", init_method=f"file://{store}", rank=rank, world_size=world_size, timeout=timedelta(seconds=timeout_s)
    )
    worker(rank, *args)
    release_process_group()


def run_in_gloo_group(
    worker: Callable, folder: Path, *args: object, world_size: int = 2, timeout_s: float = 120
) -> None:
    """Call `worker(rank, *args)` on `world_size` spawned processes.

    The test fails if a process raises, or if the processes have not all finished within `timeout_s` seconds.
    """
    store = folder / "gloo-store"
    context = mp.start_processes(
        _join_group,
        args=(worker, str(store), world_size, timeout_s, args),
        nprocs=world_size,
        join=False,
        start_method="spawn",
    )
    deadline = time.monotonic() + timeout_s
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"{world_size} gloo processes running {worker.__name__} did not finish in {timeout_s} s")
