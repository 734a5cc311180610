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

from unlearnlab.audits.base import AuditInput, ModelOutputs
from unlearnlab.audits.competition import logit_scaled_confidence, pairwise_tests
from unlearnlab.audits.lower_bound import certificate_verdict
from unlearnlab.cells import CellResult
from unlearnlab.errors import ConfigError
from unlearnlab.metrics import ACCURACIES, Catalogue
from unlearnlab.pipeline import Pipeline, open_pipeline, threads_per_worker
from unlearnlab.plan import RETRAIN, Cell
from unlearnlab.registry import instantiate
from unlearnlab.report import write_report
from unlearnlab.tables import print_results


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


def build_audits(cfg) -> dict[str, Any]:
    """The study's audits (a non-empty list: checked at start-up)."""
    return {name: instantiate(acfg, where=f"audit.{name}") for name, acfg in (cfg.audit or {}).items()}


def catalogue(cfg, audits: dict[str, Any], methods) -> Catalogue:
    """The metrics this study can report: its audits' and methods' declarations, plus core ones."""
    classes = [get_class(m["_target_"]) for m in methods.values() if m.get("_target_")]
    return Catalogue.of(audits.values(), classes)


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
        cfg, planner, n = self.cfg, self.planner, self.n
        data = self.pipe.data
        retrained = [done[planner.retrain(i)] for i in range(n)]
        methods = {name: [done[planner.unlearn(name, i)] for i in range(n)] for name in planner.methods}
        labels = {
            "forget": data.labels("forget").cpu().numpy(),
            "test": data.labels("test").cpu().numpy(),
            "retain": data.labels("retain_sample").cpu().numpy(),
        }
        audits = build_audits(cfg)
        metrics = catalogue(cfg, audits, planner.methods)
        # a method may itself be called "retrain" (the control): references live apart from methods
        outputs = {name: stack_outputs(cells) for name, cells in methods.items()}
        reference = {RETRAIN: (retrained, stack_outputs(retrained))}
        reference.update({name: (methods[name], outputs[name]) for name in methods if name != RETRAIN})
        rows: dict[str, dict[str, float]] = {}
        arrays: dict[str, dict[str, np.ndarray]] = {}
        for name, unlearned in methods.items():
            ref_cells, ref_outputs = reference[planner.reference_of(name)]
            inp = AuditInput(labels=labels, retrain=ref_outputs, unlearn=outputs[name])
            row = {k: _mean(unlearned, k) for k in ACCURACIES}
            row["cost/seconds"] = _mean(unlearned, "cost/seconds")
            row["cost/rte"] = _mean(ref_cells, "cost/seconds") / max(row["cost/seconds"], 1e-9)
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
        for name, row in rows.items():
            row.update(certificate_check(row, cfg, n))
        present = {k for row in rows.values() for k in row}
        ordered = [k for k in metrics.by_name if k in present] + sorted(present - set(metrics.by_name))
        return {
            "study": str(cfg.study_name),
            "n_models": n,
            "methods": rows,
            "reference": {name: planner.reference_of(name) for name in rows},
            "retrain": {k: _mean(retrained, k) for k in (*ACCURACIES, "cost/seconds")},
            "metrics": {k: metrics.get(k).as_dict() for k in ordered},
            "pairwise": method_vs_method(cfg, labels["forget"], reference[RETRAIN][1], outputs, planner),
            "_arrays": arrays,
        }

    def run(self, compute: bool = True) -> dict[str, Any]:
        cells = self.planner.cells()
        done = self.run_cells(cells) if compute else self.fetch_cells(cells)
        return self.audit(done)


def method_vs_method(cfg, labels, retrained: ModelOutputs, outputs: dict[str, ModelOutputs], planner) -> dict | None:
    """Which methods this N tells apart: permutation tests of F_A − F_B over every pair audited
    against the retrained models (Holm-adjusted), and the groups no test separates."""
    competition = (cfg.audit or {}).get("competition")
    skip = set(cfg.get("pairwise_skip") or ())
    names = [m for m in outputs if planner.reference_of(m) == RETRAIN and m not in skip]
    if competition is None or int(competition.get("n_permutations", 0)) == 0 or len(names) < 2:
        return None
    if len(names) > int(cfg.get("pairwise_max_methods", 6)):
        # Holm over k(k-1)/2 pairs needs ~k²/2α permutations per pair to reject at all
        return {"skipped": f"{len(names)} methods = {len(names) * (len(names) - 1) // 2} pairs; the tests run "
                           f"for at most pairwise_max_methods={cfg.get('pairwise_max_methods', 6)} methods"}
    conf = {m: logit_scaled_confidence(outputs[m].forget, labels) for m in names}
    alpha = 0.05
    tests = pairwise_tests(logit_scaled_confidence(retrained.forget, labels), conf, seed=int(competition.seed),
                           delta=float(competition.delta), alpha=alpha)
    return {
        "methods": list(tests.names), "F": tests.F.tolist(), "p_adjusted": tests.adjusted.tolist(),
        "alpha": alpha, "n_permutations": int(tests.n_run.max()), "groups": [list(g) for g in tests.groups(alpha)],
    }


def certificate_check(row: dict[str, float], cfg, n: int) -> dict[str, Any]:
    """A certified method's ε against the audit's lower bound: violated only when the bound
    exceeds the certificate; not testable when no outcome at this N could exceed it."""
    bound = (cfg.audit or {}).get("lower_bound")
    if "cert/epsilon" not in row or "audit/eps_lb" not in row or bound is None:
        return {}
    verdict, needed = certificate_verdict(
        row["audit/eps_lb"], row["audit/eps_lb_max"], row["cert/epsilon"], n,
        delta=float(bound.delta), level=float(bound.level), rule_fraction=float(bound.rule_fraction),
    )
    return {"cert/verdict": verdict, **({"cert/n_needed": float(needed)} if needed is not None else {})}


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
