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
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import get_class
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from unlearnlab.auditing import audit_methods, data_record
from unlearnlab.audits.base import ModelOutputs
from unlearnlab.cells import CellResult
from unlearnlab.errors import ConfigError
from unlearnlab.pipeline import Pipeline, open_pipeline, threads_per_worker
from unlearnlab.plan import Cell
from unlearnlab.report import write_report
from unlearnlab.tables import print_results


def stack_outputs(results: list[CellResult]) -> ModelOutputs:
    """The cells' stored logits and metrics, stacked along a leading model axis (every scalar
    metric all the cells have: accuracies, cost, and what a method reports itself)."""
    stored = [r.outputs() for r in results]
    arr = lambda part: np.stack([o[part].numpy() for o in stored])  # noqa: E731
    common = set.intersection(*(set(r.metrics) for r in results))
    keys = [k for k in results[0].metrics if k in common]
    metrics = {k: np.array([r.metrics[k] for r in results], dtype=float) for k in keys}
    return ModelOutputs(forget=arr("forget"), test=arr("test"), retain=arr("retain_sample"), metrics=metrics)


class Study:
    def __init__(self, pipe: Pipeline, console: Console | None = None):
        self.pipe = pipe
        self.cfg, self.planner, self.runner = pipe.cfg, pipe.planner, pipe.runner
        self.n = int(self.cfg.n_models)  # ≥ 2, checked at start-up (checks.check_sizes)
        self.console = console or Console()

    def run_cells(self, cells: list[Cell]) -> dict[Cell, CellResult]:
        done: dict[Cell, CellResult] = {}
        cached = sum(self.runner.store.has(c.kind, c.key) for c in cells)
        columns = (
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
        )
        with Progress(*columns, console=self.console, transient=False) as progress:
            task = progress.add_task("cells", total=len(cells), status=f"{cached} cached, {len(cells) - cached} to run")
            computed = 0
            for cell in cells:
                progress.update(task, description=f"cells: {cell.label}")
                result = self.runner.run(cell)
                computed += not result.cached
                done[cell] = result
                progress.update(
                    task, advance=1, status=f"{cached} cached, {computed} computed of {len(cells) - cached}"
                )
            progress.update(task, description="cells")
        return done

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
        planner, n, data = self.planner, self.n, self.pipe.data
        retrained = stack_outputs([done[planner.retrain(i)] for i in range(n)])
        methods = {name: stack_outputs([done[planner.unlearn(name, i)] for i in range(n)]) for name in planner.methods}
        labels = {
            "forget": data.labels("forget").cpu().numpy(),
            "test": data.labels("test").cpu().numpy(),
            "retain": data.labels("retain_sample").cpu().numpy(),
        }
        classes = [get_class(m["_target_"]) for m in planner.methods.values() if m.get("_target_")]
        reference_of = {name: planner.reference_of(name) for name in planner.methods}
        results = audit_methods(self.cfg, labels, retrained, methods, reference_of, classes)
        results["data"] = data_record(data.fingerprint(), data.split.forget.cpu().numpy(), split=str(self.cfg.split.name))
        return results

    def run(self, compute: bool = True) -> dict[str, Any]:
        cells = self.planner.cells()
        done = self.run_cells(cells) if compute else self.fetch_cells(cells)
        return self.audit(done)


def run_study(cfg, compute: bool = True) -> float | None:
    """task=study (and, with compute=False, task=audit): run or fetch the cells, audit them, print
    the tables, write results.json and the report, log to W&B. Returns the `objective` method's
    audit/score (what a hyperparameter search maximises), or None."""
    console = Console() if sys.stdout.isatty() else Console(width=200)  # logs: don't squeeze the table
    torch.set_num_threads(threads_per_worker(1))  # the cores this job owns (SLURM, joblib), not the machine's
    pipe = open_pipeline(cfg)
    results = Study(pipe, console).run(compute=compute)
    path = write_results(results, pipe.output_dir)
    print_results(console, results)
    report = write_report(results, cfg, pipe.output_dir)
    pipe.tracker.log_study(results, report, [path])  # one `audit` run per method + the `study` run (+ artifact)
    console.print(f"results: {path}\nreport:  {report.markdown}")
    objective = cfg.get("objective")
    return None if objective is None else results["methods"][str(objective)].get("audit/score")


def write_results(results: dict[str, Any], output_dir: Path) -> Path:
    path = Path(output_dir) / "results.json"
    public = {k: v for k, v in results.items() if not k.startswith("_")}
    path.write_text(json.dumps(public, indent=2, allow_nan=True))
    return path
