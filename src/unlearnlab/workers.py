"""Running one sweep job's cells: torch threads sized to the cores the job owns, and, with
`workers_per_device=W`, W processes sharing the job's device.

Why threads: torch starts as many threads as the machine has cores, in every process. Two busy
jobs on one machine then fight over the cores (a 1-epoch digits fit went from 0.26 s to ~10 s
here). A job owns: SLURM's `--cpus-per-task`, the thread budget its launcher exported (joblib's
loky workers get OMP_NUM_THREADS = cores // n_jobs; a user may set it too) and its CPU affinity
mask — whichever is smallest; each of its W workers gets 1/W of that.

Why workers: on a GPU one small-net training process leaves the device idle between kernels;
two processes per GPU gave 1.47× the throughput (measured on an H100). Each worker is a fresh
(spawned) process that opens the pipeline itself and takes cells from the pool's shared queue;
the store's per-cell file locks make computing a cell twice impossible, as between jobs.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from unlearnlab.errors import ConfigError
from unlearnlab.interrupts import doing
from unlearnlab.pipeline import (  # noqa: F401 - the job's cores, shared with studies
    job_cores,
    open_pipeline,
    quiet_lightning,
    threads_per_worker,
)


def positive(cfg, key: str, default: int = 1) -> int:
    """cfg[key] as an int ≥ 1 (absent: default), or a ConfigError naming the fix."""
    value = cfg.get(key, default)
    value = default if value is None else value
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n < 1 or str(n) != str(value).strip():
        raise ConfigError(f"{key}={value!r} must be an integer ≥ 1, e.g. {key}={default}")
    return n


def run_cell(runner, cell) -> dict[str, Any]:
    """Compute (or fetch) one cell; one log line; the record cells.json keeps."""
    start = time.perf_counter()
    with doing(f"computing {cell.kind} cell {cell.label} (key {cell.key}) [pid {os.getpid()}]"):
        result = runner.run(cell)
    seconds = time.perf_counter() - start
    state = "cached" if result.cached else "computed"
    print(f"cell {cell.label:<24} {cell.key}  {state} ({seconds:.1f}s) [pid {os.getpid()}]", flush=True)
    return {"label": cell.label, "kind": cell.kind, "name": cell.name, "index": cell.index,
            "key": cell.key, "cached": result.cached, "seconds": seconds, "pid": os.getpid()}


def run_cells(pipe, indices: list[int], workers: int, threads: int) -> list[dict[str, Any]]:
    """Every planned cell for INDICES, in this process (workers=1) or in W spawned workers.

    With workers, this process computes the original (every unlearned cell starts from it)
    while the workers start up, then waits; records come back in planned order.
    """
    cells = pipe.planner.cells(indices)
    if workers == 1 or len(cells) <= 2:
        return [run_cell(pipe.runner, c) for c in cells]
    # A spawned worker cannot see Hydra's runtime: hand it the resolved config and the output dir.
    resolved = OmegaConf.to_container(pipe.cfg, resolve=True)
    ctx = torch.multiprocessing.get_context("spawn")  # CUDA cannot be forked
    init = (resolved, str(pipe.output_dir), list(indices), threads, os.getpid())
    records: list[dict[str, Any] | None] = [None] * len(cells)
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=init) as pool:
        futures = {pool.submit(_worker_run, pos, c.key): pos for pos, c in enumerate(cells) if c.kind != "original"}
        try:
            for pos, c in enumerate(cells):
                if c.kind == "original":
                    records[pos] = run_cell(pipe.runner, c)
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            for fut in done:
                records[futures[fut]] = fut.result()  # re-raises a worker's error here
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return [r for r in records if r is not None]


# -- inside a worker process ---------------------------------------------------------------
_WORKER: dict[str, Any] = {}


def _exit_with_parent(parent: int) -> None:
    """A worker orphaned by a killed job (kill -9) exits instead of idling on the device."""
    while True:
        if os.getppid() != parent:
            os._exit(1)
        time.sleep(1.0)


def _init_worker(resolved: dict, out: str, indices: list[int], threads: int, parent: int) -> None:
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    torch.set_num_threads(threads)
    quiet_lightning()
    pipe = open_pipeline(OmegaConf.create(resolved), out=Path(out))
    _WORKER.update(pipe=pipe, cells=pipe.planner.cells(indices))


def _worker_run(pos: int, key: str) -> dict[str, Any]:
    cell = _WORKER["cells"][pos]
    if cell.key != key:  # planning is pure; a difference means the worker saw another config
        raise RuntimeError(f"worker planned {cell.label} with key {cell.key}, the job with {key}")
    return run_cell(_WORKER["pipe"].runner, cell)
