"""Audit stacked model outputs: one row per method against its reference, the method-vs-method
tests, and the results dict that tables, report, results.json and W&B read.

Everything here works on `ModelOutputs` (numpy logits and per-model metrics), never on store
entries, so a study's cells and logits trained elsewhere go through the same code and give the
same numbers.
"""

from __future__ import annotations

import hashlib
from typing import Any, Iterable

import numpy as np

from unlearnlab.audits.base import DEFAULT_READS, PARTS, AuditInput, ModelOutputs
from unlearnlab.audits.competition import SCORE_READS, logit_scaled_confidence, pairwise_tests
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


def reads_of(audit: Any) -> frozenset[str]:
    """The logit parts an audit declares it reads (`reads`; default forget and test)."""
    return frozenset(getattr(audit, "reads", DEFAULT_READS))


def declared(audit: Any) -> set[str]:
    return {m.name for m in getattr(audit, "metrics", ())}


def given_parts(*outputs: ModelOutputs) -> set[str]:
    """The logit parts every one of OUTPUTS has (a study's cells have all of PARTS)."""
    return {p for p in PARTS if all(getattr(o, p) is not None for o in outputs)}


def skip_reason(audit: Any, given: set[str]) -> str | None:
    """Why an audit cannot run on these models (None: it can): the parts it reads that are missing."""
    missing = sorted(reads_of(audit) - given)
    if not missing:
        return None
    return f"reads {' and '.join(missing)} logits, which these models lack"


def indices_sha256(indices: Any) -> str:
    """sha256 of the forget set's training indices (sorted, int64 little-endian): the split as a
    versioned thing — two runs with the same hash forget the same examples."""
    return hashlib.sha256(np.sort(np.asarray(indices, dtype="<i8")).tobytes()).hexdigest()


def data_record(fingerprint: str | None, forget_indices: Any = None, **more: Any) -> dict[str, Any]:
    """What results.json and the report record about the data: the fingerprint every cell key holds
    and the forget set's size and indices hash."""
    out: dict[str, Any] = {}
    if fingerprint is not None:
        out["fingerprint"] = str(fingerprint)
    if forget_indices is not None:
        out["n_forget"] = int(np.asarray(forget_indices).size)
        out["forget_indices_sha256"] = indices_sha256(forget_indices)
    return {**out, **more}


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
    skipped: dict[str, dict[str, list[str]]] = {}  # audit -> reason -> methods
    for name, outputs in methods.items():
        ref = reference[reference_of[name]]
        inp = AuditInput(labels=labels, retrain=ref, unlearn=outputs)
        row = {k: mean_metric(outputs, k) for k in ACCURACIES if k in outputs.metrics}
        if "cost/seconds" in outputs.metrics:
            row["cost/seconds"] = mean_metric(outputs, "cost/seconds")
            if "cost/seconds" in ref.metrics:
                row["cost/rte"] = mean_metric(ref, "cost/seconds") / max(row["cost/seconds"], 1e-9)
        arrays[name] = {}
        given = given_parts(ref, outputs)
        for audit_name, audit in audits.items():
            if (why := skip_reason(audit, given)) is not None:
                skipped.setdefault(audit_name, {}).setdefault(why, []).append(name)
                continue
            try:
                measured = audit(inp)
            except ValueError as err:  # the cells stay stored; only this audit can't run
                raise ConfigError(f"audit {audit_name} on {name}: {err}") from None
            if "audit/score" in declared(audit) and "audit/score" not in measured:
                lacking = [k for k in SCORE_READS if k not in outputs.metrics or k not in ref.metrics]
                why = f"needs {' and '.join(lacking)} on both sides (from retain logits), which these models lack"
                skipped.setdefault(f"{audit_name}: audit/score", {}).setdefault(why, []).append(name)
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
        **({"skipped": [{"audit": a, "methods": ms, "reason": why} for a, by in skipped.items() for why, ms in by.items()]}
           if skipped else {}),
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
