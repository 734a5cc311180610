"""The CPU cores this process may use: what sizes every thread pool of a job (torch's threads
for the work around cells, the competition audit's threads)."""

from __future__ import annotations

import os

THREAD_VARS = ("SLURM_CPUS_PER_TASK", "OMP_NUM_THREADS")


def job_cores() -> int:
    """The cores this job owns, at least 1: the smallest of its CPU affinity mask, SLURM's
    --cpus-per-task and the thread budget its launcher exported (joblib's loky workers get
    OMP_NUM_THREADS = cores // n_jobs). torch's default (every core of the machine, in every
    process) made two busy jobs here take ~10 s for a 0.26 s digits fit."""
    if hasattr(os, "sched_getaffinity"):
        limits = [len(os.sched_getaffinity(0))]
    else:  # pragma: no cover - macOS / Windows
        limits = [os.cpu_count() or 1]
    for var in THREAD_VARS:
        value = os.environ.get(var, "")
        if value.isdigit() and int(value) > 0:
            limits.append(int(value))
    return max(1, min(limits))
