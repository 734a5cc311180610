"""Audit stacked model outputs: one row per method against its reference, the method-vs-method
tests, and the results dict that tables, report, results.json and W&B read.

Everything here works on `ModelOutputs` (numpy logits and per-model metrics), never on store
entries, so a study's cells and logits trained elsewhere go through the same code and give the
same numbers.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from unlearnlab.audits.base import AuditInput, ModelOutputs
from unlearnlab.audits.competition import logit_scaled_confidence, pairwise_tests
from unlearnlab.audits.lower_bound import certificate_verdict
from unlearnlab.errors import ConfigError
from unlearnlab.metrics import ACCURACIES, Catalogue
from unlearnlab.plan import RETRAIN
from unlearnlab.registry import instantiate


def build_audits(cfg) -> dict[str, Any]:
    """The study's audits (a non-empty list: checked at start-up)."""
    return {name: instantiate(acfg, where=f"audit.{name}") for name, acfg in (cfg.audit or {}).items()}


def mean_metric(outputs: ModelOutputs, key: str) -> float:
    return float(np.mean(outputs.metrics[key]))


def audit_methods(cfg, labels: dict[str, np.ndarray], retrained: ModelOutputs, methods: dict[str, ModelOutputs],
                  reference_of: dict[str, str], method_classes: Iterable[type] = ()) -> dict[str, Any]:
    """Audit every method's outputs against its reference (`reference_of[name]`: RETRAIN, the
    retrained models, or another method's name) with the config's audits; the results dict."""
    n = retrained.n_models
    audits = build_audits(cfg)
    metrics = Catalogue.of(audits.values(), method_classes)
    # a method may itself be called "retrain" (the control): references live apart from methods
    reference = {RETRAIN: retrained, **{name: out for name, out in methods.items() if name != RETRAIN}}
    rows: dict[str, dict[str, float]] = {}
    arrays: dict[str, dict[str, np.ndarray]] = {}
    for name, outputs in methods.items():
        ref = reference[reference_of[name]]
        inp = AuditInput(labels=labels, retrain=ref, unlearn=outputs)
        row = {k: mean_metric(outputs, k) for k in ACCURACIES if k in outputs.metrics}
        if "cost/seconds" in outputs.metrics:
            row["cost/seconds"] = mean_metric(outputs, "cost/seconds")
            if "cost/seconds" in ref.metrics:
                row["cost/rte"] = mean_metric(ref, "cost/seconds") / max(row["cost/seconds"], 1e-9)
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
        for k in sorted(set(outputs.metrics) - set(row) - {"val/acc"}):
            row[k] = mean_metric(outputs, k)  # what the method reports itself, e.g. cert/epsilon
        rows[name] = row
    for name, row in rows.items():
        row.update(certificate_check(row, cfg, n))
    present = {k for row in rows.values() for k in row}
    ordered = [k for k in metrics.by_name if k in present] + sorted(present - set(metrics.by_name))
    return {
        "study": str(cfg.study_name),
        "n_models": n,
        "methods": rows,
        "reference": dict(reference_of),
        "retrain": {k: mean_metric(retrained, k) for k in (*ACCURACIES, "cost/seconds") if k in retrained.metrics},
        "metrics": {k: metrics.get(k).as_dict() for k in ordered},
        "pairwise": method_vs_method(cfg, labels["forget"], retrained, methods, reference_of),
        "_arrays": arrays,
    }


def method_vs_method(cfg, labels, retrained: ModelOutputs, outputs: dict[str, ModelOutputs],
                     reference_of: dict[str, str]) -> dict | None:
    """Which methods this N tells apart: permutation tests of F_A − F_B over every pair audited
    against the retrained models (Holm-adjusted), and the groups no test separates."""
    competition = (cfg.audit or {}).get("competition")
    skip = set(cfg.get("pairwise_skip") or ())
    names = [m for m in outputs if reference_of[m] == RETRAIN and m not in skip]
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
