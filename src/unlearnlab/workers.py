"""Running cells in worker processes: one sweep job's, with torch threads sized to the cores the
job owns and, with `workers_per_device=W`, W processes sharing the job's device; and a study's
(`workers`, study.py), which on a CPU computes as many cells at once as the job owns cores.

Why threads: torch starts as many threads as the machine has cores, in every process. Two busy
jobs on one machine then fight over the cores (a 1-epoch digits fit went from 0.26 s to ~10 s
here). A job owns: SLURM's `--cpus-per-task`, the thread budget its launcher exported (joblib's
loky workers get OMP_NUM_THREADS = cores // n_jobs; a user may set it too) and its CPU affinity
mask — whichever is smallest; each of its W workers gets 1/W of that.

Why workers: on a GPU one small-net training process leaves the device idle between kernels;
two processes per GPU gave 1.47× the throughput (measured on an H100). Each worker is a process
forked from multiprocessing's fork server (`worker_context`) that opens the pipeline itself and
takes cells from the pool's shared queue; the store's per-cell file locks make computing a cell
twice impossible, as between jobs.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
from omegaconf import OmegaConf

from unlearnlab.errors import ConfigError
from unlearnlab.interrupts import doing, exit_with_requester
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


def run_cell(runner, cell, log: bool = True) -> dict[str, Any]:
    """Compute (or fetch) one cell; one log line (LOG); the record cells.json keeps."""
    start = time.perf_counter()
    with doing(f"computing {cell.kind} cell {cell.label} (key {cell.key}) [pid {os.getpid()}]"):
        result = runner.run(cell)
    seconds = time.perf_counter() - start
    state = "cached" if result.cached else "computed"
    if log:
        print(f"cell {cell.label:<24} {cell.key}  {state} ({seconds:.1f}s) [pid {os.getpid()}]", flush=True)
    return {"label": cell.label, "kind": cell.kind, "name": cell.name, "index": cell.index,
            **({"origin": cell.origin} if cell.origin else {}),  # n_originals > 1: which original
            "key": cell.key, "cached": result.cached, "seconds": seconds, "pid": os.getpid()}


def run_cells(pipe, indices: list[int], workers: int, threads: int) -> list[dict[str, Any]]:
    """Every planned cell for INDICES, in this process (workers=1) or in W worker processes.

    With workers, this process computes the original(s) (every unlearned cell starts from one)
    while the workers start up, then waits; records come back in planned order.
    """
    cells = pipe.planner.cells(indices)
    if workers == 1 or len(cells) <= 2:
        return [run_cell(pipe.runner, c) for c in cells]
    records: list[dict[str, Any] | None] = [None] * len(cells)
    with worker_pool(pipe, indices, workers, threads) as pool:
        futures = submit(pool, {pos: c.key for pos, c in enumerate(cells) if c.kind != "original"})
        for pos, c in enumerate(cells):
            if c.kind == "original":
                records[pos] = run_cell(pipe.runner, c)
        for pos, record in as_finished(futures):
            records[pos] = record
    return [r for r in records if r is not None]


@contextmanager
def worker_pool(pipe, indices: list[int] | None, workers: int, threads: int,
                log: bool = True) -> Iterator[ProcessPoolExecutor]:
    """W worker processes that each open the pipeline of PIPE's config and compute the cells
    planned for INDICES (None: the whole study) by position, each logging a line per cell (LOG; a
    study prints its own progress instead); an error or an interrupt cancels the cells not started
    and waits for the running ones (each keeps its store lock until it ends)."""
    # A worker cannot see Hydra's runtime: hand it the resolved config, the output dir, the environment.
    resolved = OmegaConf.to_container(pipe.cfg, resolve=True)
    init = (resolved, str(pipe.output_dir), None if indices is None else list(indices), threads, dict(os.environ), log)
    with ProcessPoolExecutor(workers, mp_context=worker_context(), initializer=_init_worker, initargs=init) as pool:
        try:
            yield pool
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def submit(pool: ProcessPoolExecutor, keys: dict[int, str]) -> dict[Future, int]:
    """Each planned position with its cell's key (the worker checks it planned the same cell)."""
    return {pool.submit(_worker_run, pos, key): pos for pos, key in keys.items()}


def as_finished(futures: dict[Future, int]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(position, record) of each cell as its worker finishes it; a worker's error is raised here."""
    for fut in as_completed(futures):
        yield futures[fut], fut.result()


def worker_context():
    """How cell workers start: forked from multiprocessing's fork server, which has imported this
    module (torch, Lightning: ~6 s of imports here) once for the process that asks, not once per
    worker as a spawned interpreter would. CUDA-safe like spawn: the server never touches a
    device. Where there is no fork server (Windows), spawned."""
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():  # pragma: no cover - Windows
        return torch.multiprocessing.get_context("spawn")
    ctx = torch.multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["unlearnlab.workers"])  # read when the server starts: once per process
    return ctx


# -- inside a worker process ---------------------------------------------------------------
_WORKER: dict[str, Any] = {}


def _init_worker(resolved: dict, out: str, indices: list[int] | None, threads: int, env: dict[str, str],
                 log: bool) -> None:
    threading.Thread(target=exit_with_requester, name="unlearnlab-exit-with-requester", daemon=True).start()
    # the fork server's environment is the one it started with: take the requester's, as a spawned
    # worker would (the thread budget, CUDA_VISIBLE_DEVICES, W&B's settings may have changed since)
    os.environ.clear()
    os.environ.update(env)
    torch.set_num_threads(threads)
    quiet_lightning()
    pipe = open_pipeline(OmegaConf.create(resolved), out=Path(out))
    _WORKER.update(pipe=pipe, cells=pipe.planner.cells(indices), log=log)


def _worker_run(pos: int, key: str) -> dict[str, Any]:
    cell = _WORKER["cells"][pos]
    if cell.key != key:  # planning is pure; a difference means the worker saw another config
        raise RuntimeError(f"worker planned {cell.label} with key {cell.key}, the job with {key}")
    return run_cell(_WORKER["pipe"].runner, cell, _WORKER["log"])
