"""Sweeps: Hydra jobs that each compute a slice of cells, the audit at the end of the multirun or later.

`unlearnlab -m task=cell method=identity,retrain,finetune n_models=64 cells_per_job=8
'index=range(0,64,8)'` runs one job per (method, slice): the job with index=i computes (or
fetches) the original model, retrained cells i .. i+7 and the method's unlearned cells
i .. i+7, clipped to n_models. A job pays Python start-up, data loading and
fetching the original once for its whole slice (seconds, against a fast-net cell's 2–3 s on a
GPU). `workers_per_device=W` runs the slice in W processes sharing the job's device
(workers.py). Every cell is computed under a per-cell file lock in the store, so however many
jobs and workers start at once, each cell is trained once and the others reuse it; a killed
sweep rerun computes only what is missing.

The audit reads cells, never trains: `task=audit` (same overrides as the sweep, minus `index`)
or the `AuditCallback` (on by default, conf/hydra/callbacks/audit.yaml), which at the end of a
multirun runs one audit per combination of the sweep's values other than `index` and `method`
(one per hyperparameter setting), each over all the sweep's methods.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from unlearnlab.errors import ConfigError, safe_name
from unlearnlab.files import write_atomic

log = logging.getLogger(__name__)

# Overrides that say how a sweep's cells are spread over jobs, never which cells: the audit
# (and the plan) of a sweep drop them.
INDEX_KEYS = ("index", "cells_per_job", "workers_per_device")


# -- task=cell ---------------------------------------------------------------------------------
def job_indices(cfg: DictConfig) -> list[int]:
    """The cell indices of this job: index .. index+cells_per_job-1, clipped to n_models (all
    indices when index is unset)."""
    from unlearnlab.workers import positive

    n = int(cfg.n_models)
    k = positive(cfg, "cells_per_job")
    index = cfg.get("index")
    if index is None:
        return list(range(n))
    try:
        i = int(index)
    except (TypeError, ValueError):
        raise ConfigError(f"index={index!r} must be an integer in [0, n_models={n})") from None
    return slice_indices(n, k, i)


def slice_indices(n: int, k: int, i: int) -> list[int]:
    """Indices i .. i+k-1 of N cells, clipped to n_models."""
    if not 0 <= i < n:
        raise ConfigError(f"index={i} is outside [0, n_models={n}); the audit reads cells 0..{n - 1}")
    return list(range(i, min(i + k, n)))


def cell_task(cfg: DictConfig) -> list[dict[str, Any]]:
    """Compute (or fetch) the cells of one sweep job: the original, then for each of its indices
    the retrained cell and each method's unlearned cell.

    Writes cells.json (one record per cell: label, kind, key, cached, seconds, pid) to the
    job's output dir and returns that list.
    """
    import torch

    from unlearnlab.pipeline import open_pipeline
    from unlearnlab.workers import positive, run_cells, threads_per_worker

    indices = job_indices(cfg)
    workers = positive(cfg, "workers_per_device")
    threads = threads_per_worker(workers)
    torch.set_num_threads(threads)
    pipe = open_pipeline(cfg)
    log.info("cells %s in %d worker(s), %d torch thread(s) each", index_ranges(indices), workers, threads)
    done = run_cells(pipe, indices, workers, threads)
    write_atomic(pipe.output_dir / "cells.json", json.dumps(done, indent=1))
    return done


# -- task=audit --------------------------------------------------------------------------------
def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix.rstrip("."): d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}."))
    return out


def _differences(mine: dict[str, Any], theirs: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    a, b = _flat(mine), _flat(theirs)
    return {k: (b.get(k, "<absent>"), a.get(k, "<absent>")) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def explain_missing(store, planner, cells) -> str | None:
    """Why cells are missing: for each missing cell name, the store's cells of that kind and name
    computed with other settings, and which spec fields differ. None when nothing is missing."""
    missing = [c for c in cells if not store.has(c.kind, c.key)]
    if not missing:
        return None
    stored: dict[str, list[dict[str, Any]]] = {}
    from unlearnlab.store import read_meta

    for kind, _key, path in store.entries():
        meta = read_meta(path)  # bounded, regular files only
        if isinstance(meta, dict):
            stored.setdefault(kind, []).append(meta)
    lines: list[str] = []
    by_name: dict[tuple[str, str], list] = {}
    for c in missing:
        by_name.setdefault((c.kind, c.name), []).append(c)
    for (kind, name), group in by_name.items():
        want = sorted(c.index for c in group)
        label = name if kind == "original" else f"{name} ({kind})"
        head = f"{label}: {len(group)} cell(s) missing" + ("" if kind == "original" else f" (index {index_ranges(want)})")
        same = [m for m in stored.get(kind, []) if m.get("name") == name]
        if not same:
            lines.append(f"{head}; the store has no {label} cells at all")
            continue
        by_index = {m.get("index"): m for m in same}
        counted: dict[str, tuple[Any, Any]] = {}
        for c in group:
            other = by_index.get(c.index)
            if other is None:
                continue
            diff = _differences(c.spec, other.get("spec", {}))
            if "original" in diff and "original" in stored:
                theirs = next((m for m in stored["original"] if m.get("key") == other["spec"].get("original")), None)
                if theirs is not None:
                    mine = planner.original().spec
                    for k, v in _differences(mine, theirs.get("spec", {})).items():
                        if k != "seed" or "seed" not in diff:
                            diff[f"original.{k}"] = v
            if "seed" in diff:  # per-cell seeds derive from the study seed and the index
                diff["seed (study seed)"] = ("other", "this")
                del diff["seed"]
            for k, v in diff.items():
                counted.setdefault(k, v)
        if counted:
            shown = [f"{k} (store: {_short(v[0])}, this audit: {_short(v[1])})" for k, v in list(counted.items())[:8]]
            more = f" and {len(counted) - 8} more" if len(counted) > 8 else ""
            lines.append(f"{head}; the store's {label} cells differ in {', '.join(shown)}{more}")
        else:
            have = sorted(i for i in by_index if isinstance(i, int))
            lines.append(
                f"{head}; the store holds {label} cells for index {index_ranges(have)} only "
                f"(n_models differs, or the sweep has not finished)"
            )
    return "\n  ".join(lines)


def _short(v: Any) -> str:
    s = json.dumps(v, default=str) if not isinstance(v, str) else v
    return s if len(s) <= 40 else s[:37] + "..."


def index_ranges(xs: list[int]) -> str:
    if not xs:
        return "none"
    parts, start, prev = [], xs[0], xs[0]
    for x in xs[1:] + [None]:  # type: ignore[list-item]
        if x is not None and x == prev + 1:
            prev = x
            continue
        parts.append(str(start) if start == prev else f"{start}..{prev}")
        if x is not None:
            start = prev = x
    return ",".join(parts)


def check_audit_inputs(cfg: DictConfig) -> None:
    """Refuse an audit whose cells are not all in the store, naming what differs."""
    from unlearnlab.data import load_study_data
    from unlearnlab.pipeline import data_id
    from unlearnlab.plan import Planner
    from unlearnlab.registry import source_loader
    from unlearnlab.store import Store

    n = int(cfg.n_models)
    if n < 2:
        raise ConfigError(f"n_models={n} must be ≥ 2: the audit compares two samples of models")
    planner = Planner(cfg, data_id(load_study_data(cfg.dataset, cfg.split, source_loader(cfg.dataset))))
    store = Store(cfg.paths.store)
    why = explain_missing(store, planner, planner.cells())
    if why:
        raise ConfigError(
            f"audit refused: not every cell it reads is in the store {store.root}:\n  {why}\n"
            f"compute them with the sweep (task=cell) using the same dataset/split/model/n_models/seed, "
            f"or audit with the settings the store's cells were computed with"
        )


def audit_task(cfg: DictConfig) -> float | None:
    """Audit cells from the store only (never trains): same table, results.json, report, W&B run."""
    import torch

    from unlearnlab.study import run_study

    accel = str(cfg.trainer.get("accelerator", "cpu"))
    device = None
    if accel in ("gpu", "cuda") and not torch.cuda.is_available():
        log.info("audit: no CUDA here; reading the cells on the CPU")  # the audit never trains
        device = "cpu"  # the cells keep the study's keys (trainer.accelerator is in them)
    check_audit_inputs(cfg)
    return run_study(cfg, compute=False, device=device)


# -- the audit at the end of a multirun --------------------------------------------------------
def audit_overrides(task_overrides: list[str]) -> list[list[str]]:
    """The audits a `task=cell` sweep calls for: one per combination of its sweep values other
    than `index` and `method`, with task=audit; the methods of a sweep (`method=a,b,c`) are
    audited together, `method=[a,b,c]`, so one table compares them. [] when the task is not `cell`."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from unlearnlab.hydra_internals import split_sweep

    parser = OverridesParser.create()
    parsed = parser.parse_overrides(list(task_overrides))
    task = next((o for o in parsed if o.key_or_group == "task"), None)
    if task is None or task.is_sweep_override() or task.value() != "cell":
        return []
    kept = [o for o in parsed if o.key_or_group not in INDEX_KEYS and o.key_or_group != "task"]
    kept = [parser.parse_override(_methods_together(o)) if o.key_or_group == "method" else o for o in kept]
    combos = split_sweep(kept) if kept else [[]]
    seen, out = set(), []
    for combo in combos:
        ov = ["task=audit", *combo]
        if tuple(ov) not in seen:
            seen.add(tuple(ov))
            out.append(ov)
    return out


def _methods_together(override) -> str:
    """`method=a,b,[c,d]` → `method=[a,b,c,d]`: every method the sweep computed, in one audit."""
    values = list(override.sweep_iterator()) if override.is_sweep_override() else [override.value()]
    names: list[str] = []
    for v in values:
        for name in (v if isinstance(v, list) else [v]):
            if str(name) not in names:
                names.append(str(name))
    return f"{override.get_key_element()}=[{','.join(names)}]"


def audit_label(overrides: list[str], varying: set[str]) -> str:
    """The audit's folder under SWEEP_DIR/audit/: the overrides that tell it apart. A value that
    is not a plain name (a path, say) is rewritten and tagged with a hash of the original, so
    the label is one folder name (no `/`, never `..`) and two audits never share one."""
    parts = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") in varying]
    text = ",".join(parts) or "all"
    clean = re.sub(r"[^A-Za-z0-9_.,=+-]", "_", text).replace("..", "_.")[:100]
    if clean != text:
        clean = f"{clean}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"
    return safe_name(clean, "audit label")


try:
    from hydra.experimental.callback import Callback as _HydraCallback
except ImportError:  # pragma: no cover
    _HydraCallback = object  # type: ignore[misc,assignment]


class AuditCallback(_HydraCallback):  # type: ignore[misc,valid-type]
    """`on_multirun_end`: audit what a `task=cell` sweep computed, in this (the launching) process.

    Output: SWEEP_DIR/audit/<label>/{results.json, report.md, ...}. Failed audits are reported
    on stderr and end the command with exit status 2 after every audit was tried.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.enabled:
            return
        overrides = [str(o) for o in config.hydra.overrides.task]
        audits = audit_overrides(overrides)
        if not audits:
            return
        config_name = kwargs.get("config_name") or config.hydra.job.config_name
        sweep_dir = Path(str(config.hydra.sweep.dir))
        keys = [{o.split("=", 1)[0]: o for o in a} for a in audits]
        varying = {k for k in set().union(*keys) if len({d.get(k) for d in keys}) > 1}
        failures = []
        for ov in audits:
            out = sweep_dir / "audit" / audit_label(ov, varying)
            print(f"\naudit: unlearnlab {' '.join(ov)}  ->  {out}", flush=True)
            try:
                run_audit(config_name, ov, out)
            except ConfigError as err:
                print(f"error: {err}", file=sys.stderr, flush=True)
                failures.append(ov)
        if failures:
            sys.exit(2)


def run_audit(config_name: str, overrides: list[str], out: Path) -> float | None:
    """Compose the config for OVERRIDES as `unlearnlab` would and run the audit task with its
    output dir at OUT (in this process; Hydra's global state is restored afterwards)."""
    from unlearnlab.checks import check_config
    from unlearnlab.pipeline import run_composed

    def checked_audit(cfg: DictConfig) -> float | None:
        check_config(cfg)
        return audit_task(cfg)

    out.mkdir(parents=True, exist_ok=True)
    (out / "overrides.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(list(overrides))))
    return run_composed(list(overrides), out, checked_audit, config_name)
