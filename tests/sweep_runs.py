"""What the sweep tests share: the tiny sweeps they run and how they read a sweep's results."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from cli_runs import CliProcess

REPO = Path(__file__).resolve().parents[1]
CONF = str(REPO / "conf")

# The tiny sweep every end-to-end test runs: debug=tiny (digits, N = 2, one epoch, finetune only),
# audited with competition and mia_kit (the lower_bound audit needs N ≥ 4).
# 9 relabellings (not 49) in the competition audit's permutation test: no test here reads a p-value's
# resolution, and the audits compared are all run with the same K.
BASE = ["task=cell", "debug=tiny", "audit=[competition,mia_kit]", "audit.competition.n_permutations=9"]
TINY = [*BASE, "methods.finetune.epochs=1"]
INDEXES = "index=range(0,2)"
# The sliced sweep: N = 4 in 2 jobs of 2 cells per kind.
SLICED = [*TINY, "n_models=4", "cells_per_job=2", "index=range(0,4,2)"]


def start_sweep(tmp: Path, *overrides: str, name: str = "sweep") -> CliProcess:
    """`unlearnlab -m OVERRIDES` started in a process of its own (cli_runs.py) and a session of its
    own (os.killpg ends it and its jobs), with its store and sweep dir under TMP, its output in TMP/NAME.log."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return CliProcess(["-m", *overrides, f"paths.root={tmp}", f"hydra.sweep.dir={tmp}/{name}"], cwd=tmp, env=env,
                      stdout=tmp / f"{name}.log", start_new_session=True)


def sweep_here(tmp: Path, *overrides: str, name: str = "sweep") -> None:
    """`unlearnlab -m OVERRIDES` as `sweep` runs it, but in this process: the CLI's own `main` (its
    start-up checks, Hydra's sweeper, launcher and callbacks), without a ~6 s interpreter start-up.
    For the basic launcher and sweepers that run their jobs in the launching process; what the CLI
    sets for its process (Hydra's loader hook and global state, signal handlers, the root logger,
    argv, cwd, torch's thread count) is put back afterwards."""
    import logging
    import signal

    import torch
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    from unlearnlab import cli
    from unlearnlab.hydra_internals import restore_loader, saved_loader

    loader, hydra_cfg = saved_loader(), HydraConfig.instance().cfg
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    root = logging.getLogger()
    root_handlers, root_level = root.handlers[:], root.level
    argv, cwd, threads = sys.argv[:], os.getcwd(), torch.get_num_threads()
    sys.argv = ["unlearnlab", "-m", *overrides, f"paths.root={tmp}", f"hydra.sweep.dir={tmp}/{name}"]
    os.chdir(tmp)
    try:
        cli.main()
    finally:
        sys.argv = argv
        os.chdir(cwd)
        torch.set_num_threads(threads)
        restore_loader(loader)
        GlobalHydra.instance().clear()
        HydraConfig.instance().cfg = hydra_cfg  # type: ignore[assignment]
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        for handler in root.handlers:
            if handler not in root_handlers:
                handler.close()
        root.handlers[:] = root_handlers
        root.setLevel(root_level)


def entries(store: Path, kind: str) -> list[Path]:
    d = store / kind
    # a writer killed mid-save leaves a `.tmp-*` folder: never an entry (the store removes it later)
    return sorted(p for p in d.iterdir() if (p / "meta.json").is_file() and not p.name.startswith(".")) \
        if d.is_dir() else []


def computed(sweep_dir: Path) -> dict[str, int]:
    """How many jobs computed (not fetched) each cell key, from every job's cells.json."""
    counts: dict[str, int] = {}
    for f in sweep_dir.glob("*/cells.json"):
        for c in json.loads(f.read_text()):
            counts.setdefault(c["key"], 0)
            counts[c["key"]] += not c["cached"]
    return counts


def audit_results(sweep_dir: Path, label: str = "all") -> dict:
    return json.loads((sweep_dir / "audit" / label / "results.json").read_text())


def assert_complete(tmp: Path, n: int, methods=("finetune",)) -> None:
    store = tmp / "store"
    assert len(entries(store, "original")) == 1
    assert len(entries(store, "retrain")) == n
    names = [json.loads((p / "meta.json").read_text())["name"] for p in entries(store, "unlearn")]
    assert sorted(names) == sorted(m for m in methods for _ in range(n))


def assert_same_audit(a: dict, b: dict) -> None:
    assert a["methods"].keys() == b["methods"].keys()
    for m, row in a["methods"].items():
        for k, v in row.items():
            if k.startswith("cost/"):
                continue  # wall time
            if isinstance(v, str):  # a label: the lower bound's statistic, a certificate's verdict
                assert v == b["methods"][m][k], (m, k)
            else:
                assert v == pytest.approx(b["methods"][m][k], rel=1e-6, abs=1e-9, nan_ok=True), (m, k)


def assert_identical_audit(a: dict, b: dict) -> None:
    """Bit for bit: every number but wall time equal (==, NaN = NaN)."""
    assert a["methods"].keys() == b["methods"].keys()
    for m, row in a["methods"].items():
        other = b["methods"][m]
        assert {k for k in row if not k.startswith("cost/")} == {k for k in other if not k.startswith("cost/")}, m
        for k, v in row.items():
            if not k.startswith("cost/"):
                assert v == other[k] or (v != v and other[k] != other[k]), (m, k, v, other[k])


def assert_same_cells(store_a: Path, store_b: Path) -> None:
    """Every entry of store A is in store B with the same bytes (weights and logits; meta.json holds
    the wall time)."""
    found = 0
    for kind in ("original", "retrain", "unlearn"):
        for entry in entries(store_a, kind):
            twin = store_b / kind / entry.name
            assert (twin / "meta.json").is_file(), f"{kind} {entry.name} is not in {store_b}"
            for f in entry.iterdir():
                if f.name != "meta.json":
                    assert f.read_bytes() == (twin / f.name).read_bytes(), f"{kind} {entry.name} {f.name}"
            found += 1
    assert found
