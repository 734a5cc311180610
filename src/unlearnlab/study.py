"""A study: original model -> N retrained -> N unlearned per method -> audits -> table, results.

The pipeline runs one way; every cell comes from the store when it is already there, so a
rerun recomputes nothing and a killed run finishes only what is missing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from unlearnlab.audits.base import AuditInput, ModelOutputs
from unlearnlab.cells import Cell, CellResult, CellRunner
from unlearnlab.data import StudyData
from unlearnlab.errors import ConfigError
from unlearnlab.registry import instantiate

TABLE_COLUMNS = (
    "audit/F", "audit/score", "audit/eps_mean", "retain/acc", "forget/acc", "test/acc",
    "audit/mia_acc", "cost/seconds", "cost/rte",
)
ACCURACIES = ("retain/acc", "forget/acc", "test/acc")


def selected_methods(cfg: DictConfig) -> dict[str, DictConfig]:
    """`method=NAME` runs that method beside the controls; otherwise the study's `methods`."""
    methods = cfg.get("methods") or {}
    if cfg.get("method") is None:
        return {name: methods[name] for name in methods}
    chosen = {c: methods[c] for c in cfg.get("controls", []) if c in methods}
    chosen[cfg.method.name] = cfg.method
    return chosen


def stack_outputs(results: list[CellResult]) -> ModelOutputs:
    """The cells' stored logits and metrics, stacked along a leading model axis."""
    stored = [r.outputs() for r in results]
    arr = lambda part: np.stack([o[part].numpy() for o in stored])  # noqa: E731
    metrics = {
        k: np.array([r.metrics[k] for r in results], dtype=float) for k in (*ACCURACIES, "val/acc", "cost/seconds")
    }
    return ModelOutputs(forget=arr("forget"), test=arr("test"), retain=arr("retain_sample"), metrics=metrics)


def _mean(results: list[CellResult], key: str) -> float:
    return float(np.mean([r.metrics[key] for r in results]))


class Study:
    def __init__(self, cfg: DictConfig, runner: CellRunner, data: StudyData, console: Console | None = None):
        if int(cfg.n_models) < 2:
            raise ConfigError(f"n_models={cfg.n_models} must be ≥ 2: the audit compares two samples of models")
        self.cfg, self.runner, self.data = cfg, runner, data
        self.methods = selected_methods(cfg)
        if not self.methods:
            raise ConfigError("no method selected; pass method=NAME or list methods in the study config")
        self.console = console or Console()

    def plan(self) -> list[Cell]:
        n = int(self.cfg.n_models)
        cells = [self.runner.original()] + [self.runner.retrain(i) for i in range(n)]
        for name, mcfg in self.methods.items():
            cells += [self.runner.unlearn(name, mcfg, i) for i in range(n)]
        return cells

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

    def audit(self, done: dict[Cell, CellResult]) -> dict[str, Any]:
        n = int(self.cfg.n_models)
        retrain = [done[self.runner.retrain(i)] for i in range(n)]
        reference = stack_outputs(retrain)
        labels = {
            "forget": self.data.labels("forget").cpu().numpy(),
            "test": self.data.labels("test").cpu().numpy(),
            "retain": self.data.labels("retain_sample").cpu().numpy(),
        }
        audits = {name: instantiate(acfg, where=f"audit.{name}") for name, acfg in (self.cfg.audit or {}).items()}
        retrain_seconds = _mean(retrain, "cost/seconds")
        rows: dict[str, dict[str, float]] = {}
        arrays: dict[str, dict[str, np.ndarray]] = {}
        for name, mcfg in self.methods.items():
            unlearned = [done[self.runner.unlearn(name, mcfg, i)] for i in range(n)]
            inp = AuditInput(labels=labels, retrain=reference, unlearn=stack_outputs(unlearned))
            row = {k: _mean(unlearned, k) for k in ACCURACIES}
            row["cost/seconds"] = _mean(unlearned, "cost/seconds")
            row["cost/rte"] = retrain_seconds / max(row["cost/seconds"], 1e-9)
            arrays[name] = {}
            for audit_name, audit in audits.items():
                try:
                    measured = audit(inp)
                except ValueError as err:  # the cells stay stored; only this audit can't run
                    raise ConfigError(f"audit {audit_name} on {name}: {err}") from None
                for k, v in measured.items():
                    if np.ndim(v) == 0:
                        row[k] = float(v)
                    else:
                        arrays[name][k] = np.asarray(v)
            for k in sorted(set(unlearned[0].metrics) - set(row) - {"val/acc"}):
                row[k] = _mean(unlearned, k)  # what the method reports itself, e.g. cert/epsilon
            rows[name] = row
        _certificate_shares(rows, arrays)
        return {
            "study": str(self.cfg.study_name),
            "n_models": n,
            "methods": rows,
            "retrain": {k: _mean(retrain, k) for k in (*ACCURACIES, "cost/seconds")},
            "_arrays": arrays,
        }

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

    def run(self, compute: bool = True) -> dict[str, Any]:
        cells = self.plan()
        done = self.run_cells(cells) if compute else self.fetch_cells(cells)
        return self.audit(done)


def _certificate_shares(rows: dict[str, dict[str, float]], arrays: dict[str, dict[str, np.ndarray]]) -> None:
    """Share of forget examples whose empirical ε exceeds a method's certified ε — and the same
    share for the retrain control, whose ε is the estimator's finite-N floor, not a leak."""
    control = arrays.get("retrain", {}).get("audit/eps")
    for name, row in rows.items():
        eps = arrays.get(name, {}).get("audit/eps")
        if "cert/epsilon" not in row or eps is None:
            continue
        row["audit/eps_above_cert"] = float(np.mean(eps > row["cert/epsilon"]))
        if control is not None:
            row["audit/eps_above_cert_control"] = float(np.mean(control > row["cert/epsilon"]))


def results_table(results: dict[str, Any], columns=TABLE_COLUMNS) -> Table:
    """The headline table: one row per method with the nine metrics every study reports."""
    table = Table(title=f"{results['study']}  (N = {results['n_models']} models per method)")
    present = [c for c in columns if any(c in row for row in results["methods"].values())]
    table.add_column("method", style="bold", no_wrap=True)
    for c in present:
        table.add_column(c, justify="right", no_wrap=True)
    for name, row in results["methods"].items():
        table.add_row(name, *(fmt(row.get(c)) for c in present))
    r = results["retrain"]
    table.add_row("retrained (reference)", *(fmt(r.get(c)) for c in present), style="dim")
    return table


def rows_table(title: str, rows: list[dict[str, Any]], columns: list[str]) -> Table:
    """Any further group of metrics (other audits, certificates) as its own small table."""
    table = Table(title=title)
    table.add_column("method", style="bold", no_wrap=True)
    for c in columns:
        table.add_column(c, justify="right", no_wrap=True)
    for row in rows:
        table.add_row(row["method"], *(fmt(row.get(c)) for c in columns))
    return table


def fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if not np.isfinite(v):
            return str(v)
        return f"{v:.3g}" if abs(v) >= 1000 or (v != 0 and abs(v) < 1e-3) else f"{v:.4f}"
    return str(v)


def write_results(results: dict[str, Any], output_dir: Path) -> Path:
    path = output_dir / "results.json"
    public = {k: v for k, v in results.items() if not k.startswith("_")}
    path.write_text(json.dumps(public, indent=2, allow_nan=True))
    return path


def config_dict(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
