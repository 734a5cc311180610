"""A study: original model -> N retrained -> N unlearned per method -> audits -> results.

The pipeline runs one way; every cell comes from the store when it is already there, so a
rerun recomputes nothing and a killed run finishes only what is missing. Each method is
audited against its reference: the retrained models, or (for a certified method whose
certificate is stated against another mechanism) the cells of the method it names in
`reference`.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from hydra.utils import get_class
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from unlearnlab.auditing import audit_methods, audit_originals, data_record
from unlearnlab.audits.base import ModelOutputs
from unlearnlab.cells import CellResult
from unlearnlab.cores import job_cores
from unlearnlab.errors import ConfigError
from unlearnlab.files import write_atomic
from unlearnlab.interrupts import doing
from unlearnlab.models import build_model
from unlearnlab.pipeline import Pipeline, open_pipeline, threads_per_worker, training_device
from unlearnlab.plan import Cell
from unlearnlab.report import write_report
from unlearnlab.tables import print_results
from unlearnlab.workers import as_finished, positive, submit, worker_pool


def stack_outputs(results: list[CellResult], weights: list[str] | None = None) -> ModelOutputs:
    """The cells' stored logits and metrics, stacked along a leading model axis (every scalar
    metric all the cells have: accuracies, cost, and what a method reports itself), and, when
    WEIGHTS names state-dict entries, those entries of every cell flattened into one row each."""
    stored = [r.outputs() for r in results]
    arr = lambda part: np.stack([o[part].numpy() for o in stored])  # noqa: E731
    common = set.intersection(*(set(r.metrics) for r in results))
    keys = [k for k in results[0].metrics if k in common]
    metrics = {k: np.array([r.metrics[k] for r in results], dtype=float) for k in keys}
    flat = None
    if weights:
        states = [r.entry.state_dict() for r in results]
        flat = np.stack([np.concatenate([s[k].double().numpy().ravel() for k in weights]) for s in states])
    return ModelOutputs(forget=arr("forget"), test=arr("test"), retain=arr("retain_sample"), metrics=metrics,
                        weights=flat)


def released_weights(cfg, input_shape: tuple[int, int, int], num_classes: int) -> list[str] | None:
    """The state-dict entries the audits receive as ModelOutputs.weights: the model's parameters
    (not its buffers: newton's loss perturbation b is the mechanism's secret noise, not a released
    weight), when the lower_bound audit tests weights and the model has at most its
    `weights_max_params` of them (logistic regression, not a net); else None."""
    bound = (cfg.audit or {}).get("lower_bound")
    if bound is None or "weights" not in list(bound.get("statistics") or ()):
        return None
    params = dict(build_model(cfg.model, input_shape, num_classes).named_parameters())
    if sum(p.numel() for p in params.values()) > int(bound.get("weights_max_params", 0)):
        return None
    return list(params)


LARGE_STUDY_CELLS = 10_000  # more cells to compute than this: a warning before the first one
LONG_STUDY_SECONDS = 3600.0  # more time left than this, at the rate so far: a warning, once
# Worker processes start when the cells left would take longer than this here, at the rate so far:
# a worker pays ~7 s of imports and data loading before its first cell (torch, Lightning).
WORKERS_PAY_OFF_SECONDS = 30.0


def study_workers(cfg) -> int:
    """Processes computing a study's cells at once (`workers`): auto is, on a CPU, the cores this
    job owns (each cell runs on one torch thread: cells.py), and on a GPU `workers_per_device`."""
    if str(cfg.get("workers", "auto")) != "auto":
        return positive(cfg, "workers")
    if training_device(cfg.trainer).type == "cpu":
        return job_cores()
    return positive(cfg, "workers_per_device")


class Study:
    def __init__(self, pipe: Pipeline, console: Console | None = None):
        self.pipe = pipe
        self.cfg, self.planner, self.runner = pipe.cfg, pipe.planner, pipe.runner
        self.n = int(self.cfg.n_models)  # ≥ 2, checked at start-up (checks.check_sizes)
        self.console = console or Console()

    def run_cells(self, cells: list[Cell]) -> dict[Cell, CellResult]:
        """Run (or fetch) every cell in order. On a terminal: a progress bar. With output redirected
        (SLURM, nohup, a pipe): one line per cell as it finishes, flushed, with the time left at
        the rate so far. Either way a warning, once, when that time passes LONG_STUDY_SECONDS."""
        done: dict[Cell, CellResult] = {}
        store = self.runner.store
        pending = [not store.has(c.kind, c.key) for c in cells]
        cached, todo = pending.count(False), pending.count(True)
        live = self.console.is_terminal
        say = self.console.print
        say(f"cells: {len(cells)} ({cached} in the store {store.root}, {todo} to compute)", soft_wrap=True)
        if todo > LARGE_STUDY_CELLS:
            say(f"warning: {todo:,} cells to compute; `unlearnlab task=plan` with the same overrides estimates how long "
                f"they take (finished cells are kept if you stop it)", soft_wrap=True)
        eta, warned, computed, start = TimeLeft([c for c, p in zip(cells, pending) if p]), False, 0, time.perf_counter()
        status = f"{cached} cached, 0 computed of {todo}"
        columns = (
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
        )
        with Progress(*columns, console=self.console, transient=False, disable=not live) as progress:
            task = progress.add_task("cells", total=len(cells), status=f"{cached} cached, {todo} to run")
            for pos, result, seconds, workers in self.finished(cells, pending, progress, task):
                cell = result.cell
                done[cell] = result
                left = ""
                if pending[pos - 1]:
                    eta.done(cell, seconds if not result.cached else None)  # another job may have computed it
                remaining = 0.0
                if not result.cached:
                    computed += 1
                    remaining = eta.left() / workers
                    left = f"; about {duration(remaining)} left" if eta.pending else ""
                status = f"{cached} cached, {computed} computed of {todo}"
                progress.update(task, advance=1, status=status + left)
                if not live and not result.cached:
                    say(f"cell {pos}/{len(cells)} {cell.label} {cell.key}: computed in {seconds:.1f} s ({status}{left})",
                        soft_wrap=True)
                if remaining > LONG_STUDY_SECONDS and eta.pending and not warned:
                    warned = True
                    say(f"warning: at the rate so far the remaining {eta.pending:,} cells take about "
                        f"{duration(remaining)}; stop with Ctrl-C if that is not what you meant (finished cells "
                        f"are kept), and size the study with `unlearnlab task=plan`", soft_wrap=True)
                sys.stdout.flush()
            progress.update(task, description="cells")
        if not live:
            say(f"cells: {status} in {duration(time.perf_counter() - start)}", soft_wrap=True)
        return done

    def finished(self, cells: list[Cell], pending: list[bool], progress: Progress, task) -> Iterator[
            tuple[int, CellResult, float, int]]:
        """(position from 1, result, seconds, processes computing) of each cell as it finishes. In this
        process, until the cells still to compute would take longer here than WORKERS_PAY_OFF_SECONDS
        at the rate so far; then, when the study has more than one worker (`workers`), the rest in
        worker processes (workers.py), as many cells at once as workers. The cells, their
        seeds and their one torch thread each are the same either way, and so are the stored bytes."""
        workers, left, timed, seconds_timed = study_workers(self.cfg), sum(pending), 0, 0.0
        for pos, cell in enumerate(cells):
            if workers > 1 and timed and left > 1 and left * seconds_timed / timed > WORKERS_PAY_OFF_SECONDS:
                yield from self.finished_in_workers(cells, pending, pos, min(workers, left), progress, task)
                return
            left -= pending[pos]
            progress.update(task, description=f"cells: {cell.label}")
            began = time.perf_counter()
            with doing(f"computing {cell.kind} cell {cell.label} (key {cell.key}, cell {pos + 1} of {len(cells)})"):
                result = self.runner.run(cell)
            seconds = time.perf_counter() - began
            if not result.cached:
                timed, seconds_timed = timed + 1, seconds_timed + seconds
            yield pos + 1, result, seconds, 1

    def finished_in_workers(self, cells: list[Cell], pending: list[bool], start: int, workers: int,
                            progress: Progress, task) -> Iterator[tuple[int, CellResult, float, int]]:
        jobs: dict[int, str] = {}
        for pos in range(start, len(cells)):  # already in the store: fetched here, in order
            found = None if pending[pos] else self.runner.fetch(cells[pos])
            if found is None:
                jobs[pos] = cells[pos].key
            else:
                yield pos + 1, found, 0.0, 1
        progress.update(task, description=f"cells ({workers} worker processes)")
        with doing(f"computing {len(jobs)} cells in {workers} worker processes (finished cells are in the store)"), \
                worker_pool(self.pipe, None, workers, threads_per_worker(workers), log=False) as pool:
            for pos, record in as_finished(submit(pool, jobs)):
                result = self.runner.fetch(cells[pos])
                assert result is not None, f"worker finished {cells[pos].label} but the store lacks it"
                yield pos + 1, CellResult(cells[pos], result.entry, cached=record["cached"]), record["seconds"], workers

    def fetch_cells(self, cells: list[Cell]) -> dict[Cell, CellResult]:
        """Audit-only: every cell must already be in the store; say which are not, all at once."""
        found = {c: self.runner.fetch(c) for c in cells}
        missing = [c for c, r in found.items() if r is None]
        if missing:
            names = sorted({c.name for c in missing})
            raise ConfigError(
                f"{len(missing)} of {len(cells)} cells are not in the store {self.runner.store.root} "
                f"(missing: {', '.join(names)}); compute them first (run the study or its sweep), "
                f"or check that dataset/split/model/n_models/seed match the run that computed them"
            )
        return found  # type: ignore[return-value]

    def audit(self, done: dict[Cell, CellResult]) -> dict[str, Any]:
        """Every method against its reference, per original: the retrained models are shared (they
        never see an original), each original has its own N unlearned models per method."""
        planner, n, data = self.planner, self.n, self.pipe.data
        weights = released_weights(self.cfg, data.input_shape, data.num_classes)
        retrained = stack_outputs([done[planner.retrain(i)] for i in range(n)], weights)
        per_original = [
            {name: stack_outputs([done[planner.unlearn(name, i, j)] for i in range(n)], weights)
             for name in planner.methods}
            for j in range(planner.n_originals)
        ]
        labels = {
            "forget": data.labels("forget").cpu().numpy(),
            "test": data.labels("test").cpu().numpy(),
            "retain": data.labels("retain_sample").cpu().numpy(),
        }
        classes = [get_class(m["_target_"]) for m in planner.methods.values() if m.get("_target_")]
        reference_of = {name: planner.reference_of(name) for name in planner.methods}
        if len(per_original) == 1:
            results = audit_methods(self.cfg, labels, retrained, per_original[0], reference_of, classes)
        else:
            results = audit_originals(self.cfg, labels, retrained, per_original, reference_of, classes)
        results["data"] = data_record(data.fingerprint(), data.split.forget.cpu().numpy(), split=str(self.cfg.split.name))
        return results

    def run(self, compute: bool = True) -> dict[str, Any]:
        cells = self.planner.cells()
        done = self.run_cells(cells) if compute else self.fetch_cells(cells)
        with doing("auditing the cells (they are all in the store)"):
            return self.audit(done)


class TimeLeft:
    """Seconds the cells still to compute take at the rate so far: each (kind, name)'s mean time
    per computed cell; a kind not computed yet at the mean of everything computed. Counts per
    (kind, name), so a study of a million cells costs nothing per cell."""

    def __init__(self, to_compute: list[Cell]) -> None:
        self.left_count: dict[tuple[str, str], int] = {}
        for c in to_compute:
            self.left_count[c.kind, c.name] = self.left_count.get((c.kind, c.name), 0) + 1
        self.total: dict[tuple[str, str], list[float]] = {}  # (kind, name) -> [seconds, cells]

    @property
    def pending(self) -> int:
        return sum(self.left_count.values())

    def done(self, cell: Cell, seconds: float | None) -> None:
        """A cell that was to be computed is finished (SECONDS: computed here; None: found ready)."""
        self.left_count[cell.kind, cell.name] -= 1
        if seconds is not None:
            total = self.total.setdefault((cell.kind, cell.name), [0.0, 0])
            total[0] += seconds
            total[1] += 1

    def left(self) -> float:
        if not self.total:
            return 0.0
        overall = sum(t[0] for t in self.total.values()) / sum(t[1] for t in self.total.values())
        rate = {k: t[0] / t[1] for k, t in self.total.items()}
        return sum(n * rate.get(k, overall) for k, n in self.left_count.items())


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def run_study(cfg, compute: bool = True, device: str | None = None,
              selection: dict[str, Any] | None = None) -> float | None:
    """task=study (and, with compute=False, task=audit): run or fetch the cells, audit them, print
    the tables, write results.json and the report, log to W&B. Returns the `objective` method's
    audit/score (what a hyperparameter search maximises), or None. SELECTION: when this study
    re-audits a search's winner on fresh cells, what was selected and how (sweep.ReauditCallback);
    results, tables and report then label its score as the number to cite."""
    console = Console() if sys.stdout.isatty() else Console(width=200)  # logs: don't squeeze the table
    torch.set_num_threads(threads_per_worker(1))  # the cores this job owns (SLURM, joblib), not the machine's
    with doing("loading the data"):
        pipe = open_pipeline(cfg, device=device)
    results = Study(pipe, console).run(compute=compute)
    if selection is not None:
        objective = selection["objective"]
        results["selection"] = {**selection, "value": results["methods"][objective].get(selection["metric"])}
    with doing("writing results.json and the report (the cells are all in the store)"):
        path = write_results(results, pipe.output_dir)
        print_results(console, results)
        report = write_report(results, cfg, pipe.output_dir)
    with doing("logging the study to W&B (results.json and the report are written)"):
        pipe.tracker.log_study(results, report, [path])  # one `audit` run per method + the `study` run (+ artifact)
    console.print(f"results: {path}\nreport:  {report.markdown}")
    objective = cfg.get("objective")
    return None if objective is None else results["methods"][str(objective)].get("audit/score")


def write_results(results: dict[str, Any], output_dir: Path) -> Path:
    """results.json, whole or not at all (a full disk leaves no half-written file)."""
    public = {k: v for k, v in results.items() if not k.startswith("_")}
    return write_atomic(Path(output_dir) / "results.json", json.dumps(public, indent=2, allow_nan=True))
