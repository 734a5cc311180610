"""Sweeps whose jobs compute slices of cells (cells_per_job): a joblib pool, a real single-node
SLURM cluster, and kill -9 / scancel mid-slice followed by a rerun that computes only what is
missing; and the same cells as one study whose spawned workers compute them. All compared with one
uninterrupted sliced sweep, bit for bit. (A sweep job's own workers, workers_per_device=2, against
one worker: test_sweeps.py, bit for bit on the same cells.) The real SLURM sweep is the scancel
test's: its jobs are cancelled, and the same sweep then finishes on SLURM."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest
from slurm_cluster import slurm_cluster  # noqa: F401  (fixture)
from sweep_runs import (
    SLICED,
    assert_complete,
    assert_identical_audit,
    assert_same_audit,
    assert_same_cells,
    audit_results,
    computed,
    entries,
    start_sweep,
    sweep_here,
)


@pytest.fixture(scope="module")
def sliced_reference(tmp_path_factory):
    """The sliced sweep (N = 4, 2 jobs of 2), uninterrupted, 2 jobs at once in a joblib pool (the
    launching `unlearnlab -m` in this process, its jobs in the pool's worker processes)."""
    tmp = tmp_path_factory.mktemp("sliced")
    sweep_here(tmp, *SLICED, "logger=none", "hydra/launcher=pool")
    return tmp


def assert_slices(sweep_dir: Path, starts=(0, 2), k: int = 2, once: bool = True) -> None:
    """One cells.json per job, each holding the original and its own slice; ONCE: every key computed
    once (a rerun fetches what the first run finished)."""
    jobs = sorted((json.loads(f.read_text()) for f in sweep_dir.glob("*/cells.json")),
                  key=lambda job: min(c["index"] for c in job if c["kind"] != "original"))
    assert len(jobs) == len(starts)
    for start, job in zip(starts, jobs):
        assert job[0]["kind"] == "original"
        assert sorted({c["index"] for c in job[1:]}) == list(range(start, start + k))
        assert len(job) == 1 + 2 * k  # retrain + finetune per index
    if once:
        assert all(n == 1 for n in computed(sweep_dir).values()), computed(sweep_dir)


@pytest.mark.slow
def test_pool_slices_and_end_of_sweep_audit(sliced_reference):
    tmp = sliced_reference
    assert_complete(tmp, 4)
    assert_slices(tmp / "sweep")
    audit = audit_results(tmp / "sweep")  # the audit callback found all 4 + 4 cells
    assert audit["n_models"] == 4 and set(audit["methods"]) == {"finetune"}


def test_a_study_in_one_process_equals_the_sweep_bit_for_bit(tmp_path, sliced_reference, monkeypatch):
    """The same cells as one study in this process, which owns 2 cores (the pool's jobs own 1
    each) and so computes them in 2 spawned worker processes (`workers=auto`; told that workers pay
    off at once, as they do for cells of real size): the thread count is the cell's, not the job's
    or the process's, so the stored bytes and every audited number equal the sweep's."""
    import torch
    from conftest import unlearnlab_inprocess

    from unlearnlab import study as study_module
    from unlearnlab import workers

    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(study_module, "WORKERS_PAY_OFF_SECONDS", 0.0)
    pids = set()

    def noting_pids(futures):
        for pos, record in workers.as_finished(futures):
            pids.add(record["pid"])
            yield pos, record
    monkeypatch.setattr(study_module, "as_finished", noting_pids)
    before = torch.get_num_threads()
    try:
        study = [o for o in SLICED if not o.startswith(("task=", "cells_per_job=", "index="))]
        unlearnlab_inprocess(tmp_path / "out", *study, "logger=none", f"paths.root={tmp_path}")
        assert torch.get_num_threads() == 2  # the job's own cores, for everything but the cells
    finally:
        torch.set_num_threads(before)
    assert len(pids) == 2 and os.getpid() not in pids  # the retrained and unlearned cells: in 2 workers
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert_identical_audit(results, audit_results(sliced_reference / "sweep"))
    assert_same_cells(tmp_path / "store", sliced_reference / "store")
    assert_same_cells(sliced_reference / "store", tmp_path / "store")


def _on_slurm(cluster) -> list[str]:
    return ["hydra/launcher=slurm", f"hydra.launcher.partition={cluster.partition}", "hydra.launcher.cpus_per_task=1",
            "hydra.launcher.mem_gb=null", "hydra.launcher.timeout_min=10"]


def _stamps(store: Path) -> dict[Path, tuple]:
    return {p: ((p / "meta.json").read_text(), (p / "meta.json").stat().st_ino, (p / "meta.json").stat().st_mtime_ns,
                (p / "model.safetensors").stat().st_mtime_ns)
            for k in ("original", "retrain", "unlearn") for p in entries(store, k)}


def _wait_for(proc, store: Path, log: Path, at_least: int) -> None:
    deadline = time.monotonic() + 300
    while sum(len(entries(store, k)) for k in ("original", "retrain", "unlearn")) < at_least:
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)


@pytest.mark.slow
def test_kill_9_mid_slice_then_rerun_finishes_without_recomputing(tmp_path, sliced_reference):
    store = tmp_path / "store"
    proc = start_sweep(tmp_path, *SLICED, "logger=none", name="killed")
    _wait_for(proc, store, tmp_path / "killed.log", 3)  # inside the first job's slice
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    before = _stamps(store)
    assert 3 <= len(before) < 9
    sweep_here(tmp_path, *SLICED, "logger=none", name="rerun")  # the basic launcher: in this process
    assert_complete(tmp_path, 4)
    for p, stamp in before.items():
        assert _stamps(store)[p] == stamp
    rerun = computed(tmp_path / "rerun")
    assert all(rerun[p.name] == 0 for p in before)  # fetched, not recomputed
    assert sum(rerun.values()) == 9 - len(before)
    assert_same_audit(audit_results(tmp_path / "rerun"), audit_results(sliced_reference / "sweep"))


@pytest.mark.slow
def test_real_slurm_sweep_cancelled_mid_slice_then_rerun_finishes_without_recomputing(tmp_path, slurm_cluster,  # noqa: F811
                                                                                       sliced_reference):
    """A real SLURM job cancelled while it works through its slice (a preemption), then the whole
    sweep on SLURM: it computes only what is missing, each job its own slice, on the thread count
    SLURM gave it, and audits like the uninterrupted sweep."""
    store = tmp_path / "store"
    first_slice = [o for o in SLICED if not o.startswith("index=")] + ["index=0"]
    proc = start_sweep(tmp_path, *first_slice, "logger=none", *_on_slurm(slurm_cluster), name="cancelled")
    _wait_for(proc, store, tmp_path / "cancelled.log", 2)  # past the original, inside the slice
    slurm_cluster.cmd("scancel", f"--partition={slurm_cluster.partition}")
    # The jobs are gone once squeue lists none (not even COMPLETING): their processes are dead and
    # write nothing more. The launcher itself never learns of the cancel here (this test cluster has
    # no accounting, so submitit's sacct poll says UNKNOWN forever) and would wait; stop it.
    deadline = time.monotonic() + 60
    while slurm_cluster.cmd("squeue", "-h", f"--partition={slurm_cluster.partition}").strip():
        assert time.monotonic() < deadline, slurm_cluster.cmd("squeue", f"--partition={slurm_cluster.partition}")
        time.sleep(0.2)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    before = _stamps(store)
    assert 2 <= len(before) < 1 + 2 * 2, "the cancel came after the job had finished its slice"
    sweep_here(tmp_path, *SLICED, "logger=none", *_on_slurm(slurm_cluster), name="rerun")  # submits from here
    assert_complete(tmp_path, 4)
    assert_slices(tmp_path / "rerun", once=False)
    for p, stamp in before.items():
        assert _stamps(store)[p] == stamp
    rerun = computed(tmp_path / "rerun")
    assert all(rerun[p.name] == 0 for p in before)  # fetched, not recomputed
    assert sum(rerun.values()) == 9 - len(before) and all(n <= 1 for n in rerun.values()), rerun
    assert_same_audit(audit_results(tmp_path / "rerun"), audit_results(sliced_reference / "sweep"))
    logs = [p.read_text() for p in (tmp_path / "rerun" / ".submitit").rglob("*_log.out")]
    assert len(logs) == 2  # one SLURM job per slice, each logging the cells it computed
    done_here = [c["label"] for f in (tmp_path / "rerun").glob("*/cells.json") for c in json.loads(f.read_text())
                 if not c["cached"]]
    assert done_here and all(any(re.search(rf"^cell {re.escape(label)} +\w+ +computed", log, re.M) for log in logs)
                         for label in done_here), logs
    # torch threads from SLURM's cpus_per_task=1, not the machine's cores
    assert all("in 1 worker(s), 1 torch thread(s) each" in log for log in logs)
