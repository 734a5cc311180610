"""`unlearnlab task=plan`: what a study or sweep will compute, before anything is launched.

`unlearnlab task=plan OVERRIDES` plans one study (N cells per kind, what the store already
holds, the jobs a sweep of it would take with `cells_per_job`); `unlearnlab -m task=plan
SWEEP_OVERRIDES` plans the sweep exactly as `-m task=cell SWEEP_OVERRIDES` would launch it
(one study per combination of the values other than `index`, one job per index value) and
launches nothing: the plan callback prints it when the multirun starts, then exits.

Device time comes from the rates `task=bench` measured (bench.json: `bench_file=PATH`, else the
newest under paths.root/outputs or multirun/), else from built-in rates measured on an H100 and on a 2-core CPU;
the output says which, and what was assumed. Nothing here trains or writes to the store.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from unlearnlab.errors import ConfigError

# Training images per second at 32×32, batch 512 (64 on CPU), one process: measured for
# measurements (H100: fast net, small CNN, ResNet-18 with bf16 + channels_last; the 2-core
# CPU: small CNN, ResNet-18). Used only when no bench.json from this kind of device is found.
DEFAULT_IMG_S = {
    "cuda": {"fastnet": 200_000.0, "small_cnn": 107_000.0, "resnet18_cifar": 53_300.0},
    "cpu": {"small_cnn": 1_000.0, "resnet18_cifar": 33.0},
}


LARGE_PLAN_CELLS = 100_000  # planning more cells than this takes seconds: a line says so first


# -- rates -----------------------------------------------------------------------------------------
def device_kind(cfg: DictConfig) -> str:
    return "cuda" if str(cfg.trainer.get("accelerator", "cpu")) in ("gpu", "cuda") else "cpu"


def find_bench(cfg: DictConfig) -> Path | None:
    """bench_file=PATH, else the newest bench.json under paths.root's outputs/ and multirun/."""
    given = cfg.get("bench_file")
    if given:
        path = Path(str(given))
        if not path.is_file():
            raise ConfigError(f"bench_file={given} does not exist; run `unlearnlab task=bench` or drop bench_file")
        return path
    root = Path(str(cfg.paths.root))
    found = [p for d in ("outputs", "multirun") for p in (root / d).glob("**/bench.json")]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def _bench_kind(bench: dict[str, Any]) -> str:
    return "cpu" if str(bench.get("device", "")).startswith("CPU") else "cuda"


def rates(cfg: DictConfig, data, methods: list[str], bench_path: Path | None) -> dict[str, Any]:
    """Seconds per cell: {"original", "retrain", "unlearn": {method: s}, "source", "assumptions"}.

    In order of preference: the bench's measured cells when it timed this dataset, model and
    recipe on this kind of device; its measured throughput for this model; built-in rates.
    """
    kind, model = device_kind(cfg), str(cfg.model.name)
    epochs, n_train, n_retain = int(cfg.recipe.epochs), len(data.labels("train")), len(data.labels("retain"))
    bench = json.loads(bench_path.read_text()) if bench_path else None
    notes: list[str] = []
    if bench is not None and _bench_kind(bench) != kind:
        notes.append(f"{bench_path} was measured on {bench.get('device')}, not on a {kind} device: not used")
        bench = None
    measured = (bench or {}).get("methods") or {}
    ratios = {m: v["unlearn_over_retrain"] for m, v in measured.get("methods", {}).items()}
    if measured and (measured.get("dataset"), measured.get("model"), measured.get("train_epochs")) == (
            str(cfg.dataset.name), model, epochs):
        out = {"original": measured["original_s"], "retrain": measured["retrain_s"],
               "source": f"cells timed by task=bench on {bench['device']} ({bench_path})"}
    else:
        img_s, source = None, ""
        rows = [r for r in (bench or {}).get("throughput", []) if r.get("model") == model]
        if rows:
            same = [r for r in rows if r.get("precision") == str(cfg.trainer.precision)] or rows
            same = [r for r in same if r.get("threads", 1) == 1] or same  # a cell runs on one thread (cells.py)
            img_s = max(r["img_s"] for r in same)
            source = f"task=bench's {model} throughput on {bench['device']} ({bench_path}): {img_s:,.0f} img/s"
        elif model in DEFAULT_IMG_S[kind]:
            img_s = DEFAULT_IMG_S[kind][model]
            source = (f"built-in rate for {model} on a {'H100 GPU' if kind == 'cuda' else '2-core CPU'} "
                      f"({img_s:,.0f} img/s, built-in H100/CPU rate; no bench.json from a {kind} device: "
                      "run `unlearnlab task=bench` here for this machine's)")
        if img_s is None:
            return {"source": None, "assumptions": notes + [
                f"no rate for model {model} on a {kind} device: run `unlearnlab task=bench` on it"]}
        out = {"original": epochs * n_train / img_s, "retrain": epochs * n_retain / img_s, "source": source}
        notes.append(f"a cell trains {epochs} epochs over its images at that rate (32×32 images; "
                     "evaluation, start-up and smaller or larger images not counted)")
    out["unlearn"] = {}
    for m in methods:
        if m == "retrain":
            out["unlearn"][m] = out["retrain"]
        elif m in measured.get("methods", {}) and out["source"].startswith("cells timed"):
            out["unlearn"][m] = measured["methods"][m]["unlearn_s"]
        elif m in ratios:
            out["unlearn"][m] = out["retrain"] * ratios[m]
            notes.append(f"{m}: its unlearn/retrain time ratio ({ratios[m]:.3f}) as task=bench measured it")
        elif _epochs(cfg, m) is not None and epochs > 0:
            out["unlearn"][m] = out["retrain"] * _epochs(cfg, m) / epochs
            notes.append(f"{m}: not timed by task=bench; costed as {_epochs(cfg, m)} epochs over the retain set")
        else:
            out["unlearn"][m] = out["retrain"]
            notes.append(f"{m}: not timed by task=bench; costed as one retrain (an upper bound for most methods)")
    out["assumptions"] = notes
    return out


def _epochs(cfg: DictConfig, method: str) -> float | None:
    value = ((cfg.get("methods") or {}).get(method) or {}).get("epochs")
    return float(value) if isinstance(value, (int, float)) else None


# -- one study ---------------------------------------------------------------------------------
def plan_study(cfg: DictConfig, job_starts: list[int] | None = None) -> dict[str, Any]:
    """The plan of one study. JOB_STARTS: the sweep's index values (one job each); None: this
    command's own `index` (one job), or a suggested split by cells_per_job when index is unset."""
    from unlearnlab.pipeline import open_pipeline
    from unlearnlab.sweep import index_ranges, slice_indices
    from unlearnlab.tracking import Tracker
    from unlearnlab.workers import positive

    n, k = int(cfg.n_models), positive(cfg, "cells_per_job")
    workers = positive(cfg, "workers_per_device")
    with tempfile.TemporaryDirectory(prefix="unlearnlab-plan-") as tmp:
        # on the CPU (a login node has no GPU), no W&B run; the keys are the study's own
        pipe = open_pipeline(cfg, tracker=Tracker({"kind": "none"}, "plan", tmp, {}), out=Path(tmp), device="cpu")
    planner, store = pipe.planner, pipe.store
    total = 1 + n * (1 + len(planner.methods))
    if total > LARGE_PLAN_CELLS:  # seconds of keys and store look-ups: say so first
        print(f"plan: {total:,} cells to plan and look up in the store {store.root} …", flush=True)
    cells = planner.cells()
    missing = [c for c in cells if not store.has(c.kind, c.key)]
    if job_starts is None and cfg.get("index") is not None:
        job_starts = [int(cfg.index)]
    suggested = job_starts is None
    if suggested:
        job_starts = list(range(0, n, k))
    slices = [slice_indices(n, k, start) for start in job_starts]
    covered = {i for s in slices for i in s}
    uncovered = [i for i in range(n) if i not in covered]
    methods = list(planner.methods)
    rate = rates(cfg, pipe.data, methods, find_bench(cfg))
    cost: dict[str, float | None] = {c.key: None for c in missing}
    if rate.get("source"):
        cost = {c.key: rate["unlearn"][c.name] if c.kind == "unlearn" else rate[c.kind] for c in missing}
    seconds = None if None in cost.values() else sum(cost.values())
    if suggested and n > k:
        sweep_index = f"index='range(0,{n},{k})'"
    else:
        sweep_index = "index=" + ",".join(map(str, job_starts))
    return {
        "study": str(cfg.study_name), "n_models": n, "methods": methods,
        "cells": {"original": 1, "retrain": n, "unlearn": n * len(methods), "total": len(cells)},
        "in_store": len(cells) - len(missing), "to_compute": len(missing),
        "jobs": len(slices), "cells_per_job": k, "workers_per_device": workers,
        "job_index": sweep_index, "suggested": suggested,
        "largest_job_cells": max(1 + len(s) * (1 + len(methods)) for s in slices),
        "uncovered": uncovered, "uncovered_text": index_ranges(uncovered),
        "device": device_kind(cfg), "seconds": seconds,
        "device_hours": None if seconds is None else seconds / 3600,
        "rates": rate, "missing": cost,  # key -> seconds: studies of one sweep share cells
    }


def print_plan(plan: dict[str, Any]) -> None:
    c = plan["cells"]
    print(f"plan: study {plan['study']}, N = {plan['n_models']}, methods: {', '.join(plan['methods'])}")
    print(f"  cells: {c['original']} original + {c['retrain']} retrain + {c['unlearn']} unlearn = {c['total']}; "
          f"in the store: {plan['in_store']}; to compute: {plan['to_compute']}")
    how = "suggested: " if plan["suggested"] else ""
    print(f"  jobs: {plan['jobs']} ({how}{plan['job_index']} cells_per_job={plan['cells_per_job']}, "
          f"workers_per_device={plan['workers_per_device']}); the largest job holds "
          f"{plan['largest_job_cells']} cells (the original is computed once and fetched by the others)")
    if plan["uncovered"]:
        print(f"  warning: no job computes index {plan['uncovered_text']}: the audit will refuse until they are "
              f"computed (use cells_per_job ≥ the index step)")
    r = plan["rates"]
    if plan["seconds"] is None:
        print("  device time: no estimate")
    else:
        per = ", ".join(f"{m} {s:.2f}" for m, s in r["unlearn"].items())
        print(f"  device time: {plan['device_hours']:.3f} {plan['device']}-hours for the {plan['to_compute']} cells "
              f"to compute (seconds per cell: original {r['original']:.2f}, retrain {r['retrain']:.2f}, {per})")
        print(f"    rates: {r['source']}")
    for note in r["assumptions"]:
        print(f"    assumed: {note}")


def plan_task(cfg: DictConfig) -> dict[str, Any]:
    """`unlearnlab task=plan ...`: print the plan of this study (and of its sweep)."""
    plan = plan_study(cfg)
    print_plan(plan)
    return plan


# -- `unlearnlab -m task=plan ...`: the sweep's plan, at multirun start ---------------------------------
def sweep_plans(config_name: str, task_overrides: list[str]) -> list[dict[str, Any]] | None:
    """The plan of each study a `-m task=plan` sweep would launch as `task=cell`; None when the
    sweep's task is not plan."""
    from hydra import compose
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from unlearnlab.checks import check_config
    from unlearnlab.hydra_internals import split_sweep

    parsed = OverridesParser.create().parse_overrides(list(task_overrides))
    task = next((o for o in parsed if o.key_or_group == "task"), None)
    if task is None or task.is_sweep_override() or task.value() != "plan":
        return None
    index = [o for o in parsed if o.key_or_group == "index"]
    kept = [o for o in parsed if o.key_or_group not in ("index", "task")]
    starts = None
    if index:
        starts = [int(job[0].split("=", 1)[1]) for job in split_sweep(index)]
    combos = split_sweep(kept) if kept else [[]]
    plans = []
    for combo in combos:
        cfg = compose(config_name=config_name, overrides=["task=plan", *combo])
        check_config(cfg)
        plans.append(plan_study(cfg, starts))
    return plans


try:
    from hydra.experimental.callback import Callback as _HydraCallback
except ImportError:  # pragma: no cover
    _HydraCallback = object  # type: ignore[misc,assignment]


class PlanCallback(_HydraCallback):  # type: ignore[misc,valid-type]
    """`on_multirun_start` of `-m task=plan ...`: print the sweep's plan and exit before any job
    is launched. Does nothing for other tasks."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        overrides = [str(o) for o in config.hydra.overrides.task]
        config_name = kwargs.get("config_name") or config.hydra.job.config_name
        try:
            plans = sweep_plans(config_name, overrides)
        except ConfigError as err:
            print(f"error: {err}", file=sys.stderr, flush=True)
            sys.exit(2)
        if plans is None:
            return
        for plan in plans:
            print_plan(plan)
        if len(plans) > 1:
            jobs = sum(p["jobs"] for p in plans)
            missing = {k: s for p in plans for k, s in p["missing"].items()}  # shared cells once
            todo = len(missing)
            total = "no estimate" if None in missing.values() else f"{sum(missing.values()) / 3600:.3f} device-hours"
            print(f"sweep: {len(plans)} studies, {jobs} jobs, {todo} cells to compute, {total}")
        print("nothing launched (task=plan); run the same command with task=cell to launch it", flush=True)
        sys.exit(0)

