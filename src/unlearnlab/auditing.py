"""Audit stacked model outputs: one row per method against its reference, the method-vs-method
tests, and the results dict that tables, report, results.json and W&B read.

Everything here works on `ModelOutputs` (numpy logits and per-model metrics), never on store
entries, so a study's cells and logits trained elsewhere go through the same code and give the
same numbers.

Multiplicity: each method's `audit/p_value` tests it alone; `audit/p_value_holm` adjusts them
(Holm) over the table's non-control methods (`controls` in the config), the family a sentence
such as "every method is told apart from retraining" is about. With n_originals = K > 1 every
method is audited once per original (`audit_originals`) and the rows combine the K audits.
"""

from __future__ import annotations

import hashlib
from typing import Any, Iterable

import numpy as np
from omegaconf import OmegaConf, open_dict

from unlearnlab.audits.base import DEFAULT_READS, PARTS, AuditInput, ModelOutputs
from unlearnlab.audits.competition import SCORE_READS, logit_scaled_confidence, pairwise_tests, permutations_for
from unlearnlab.audits.lower_bound import certificate_verdict
from unlearnlab.errors import ConfigError
from unlearnlab.metrics import ACCURACIES, Catalogue
from unlearnlab.plan import RETRAIN
from unlearnlab.registry import instantiate

ALPHA = 0.05  # the family-wise level of the Holm adjustments and the method-vs-method groups


def controls(cfg) -> set[str]:
    """The config's control methods (`controls`): reference points, not candidates, so they stay
    out of the Holm family."""
    return {str(c) for c in (cfg.get("controls") or ())}


def holm_family(cfg, names: Iterable[str]) -> list[str]:
    """The methods `audit/p_value_holm` adjusts over: every method that is not a control."""
    skip = controls(cfg)
    return [n for n in names if n not in skip]


def build_audits(cfg, family_size: int = 1) -> dict[str, Any]:
    """The study's audits (a non-empty list: checked at start-up). The competition audit's
    `n_permutations: null` becomes the K at which Holm over FAMILY_SIZE p-values can reject at
    ALPHA at all (`permutations_for`: ≥ 49, family_size/α − 1)."""
    audits = {}
    for name, acfg in (cfg.audit or {}).items():
        if name == "competition" and acfg.get("n_permutations", 0) is None:
            acfg = OmegaConf.create(OmegaConf.to_container(acfg))
            with open_dict(acfg):
                acfg.n_permutations = permutations_for(max(family_size, 1), ALPHA)
        audits[name] = instantiate(acfg, where=f"audit.{name}")
    return audits


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


def holm(p_values: dict[str, float]) -> dict[str, float]:
    """Holm's step-down adjustment of m p-values: the i-th smallest becomes
    max over j ≤ i of (m − j + 1) p_(j), capped at 1. Rejecting where it is ≤ α controls the
    family-wise error rate at α under any dependence between the tests."""
    names = list(p_values)
    p = np.array([p_values[n] for n in names], dtype=float)
    order = np.argsort(p, kind="stable")
    m = len(p)
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    return {n: float(a) for n, a in zip(names, adjusted)}


def holm_rows(cfg, rows: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """audit/p_value_holm into every non-control row with a p-value; the family's record."""
    family = [n for n in holm_family(cfg, rows) if "audit/p_value" in rows[n]]
    if not family:
        return None
    adjusted = holm({n: rows[n]["audit/p_value"] for n in family})
    for n, p in adjusted.items():
        rows[n]["audit/p_value_holm"] = p
    return {"methods": family, "alpha": ALPHA, "rejected": [n for n in family if adjusted[n] <= ALPHA]}


def audit_methods(cfg, labels: dict[str, np.ndarray], retrained: ModelOutputs, methods: dict[str, ModelOutputs],
                  reference_of: dict[str, str], method_classes: Iterable[type] = (),
                  multiplicity: int = 1, pairwise: bool = True) -> dict[str, Any]:
    """Audit every method's outputs against its reference (`reference_of[name]`: RETRAIN, the
    retrained models, or another method's name) with the config's audits; the results dict.
    MULTIPLICITY: how many p-values of each method will be combined (the originals), for the K
    that lets Holm reject; PAIRWISE: run the method-vs-method tests."""
    n = retrained.n_models
    audits = build_audits(cfg, len(holm_family(cfg, methods)) * multiplicity)
    metrics = Catalogue.of(audits.values(), method_classes)
    # a method may itself be called "retrain" (the control): references live apart from methods
    reference = {RETRAIN: retrained, **{name: out for name, out in methods.items() if name != RETRAIN}}
    rows: dict[str, dict[str, Any]] = {}
    arrays: dict[str, dict[str, np.ndarray]] = {}
    skipped: dict[str, dict[str, list[str]]] = {}  # audit -> reason -> methods
    for name, outputs in methods.items():
        ref = reference[reference_of[name]]
        inp = AuditInput(labels=labels, retrain=ref, unlearn=outputs)
        row: dict[str, Any] = {k: mean_metric(outputs, k) for k in ACCURACIES if k in outputs.metrics}
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
                if isinstance(v, str):
                    row[k] = v  # a label, e.g. the statistic the lower bound chose
                elif np.ndim(v) == 0:
                    row[k] = float(v)
                else:
                    arrays[name][k] = np.asarray(v)
        for k in sorted(set(outputs.metrics) - set(row) - {"val/acc"}):
            row[k] = mean_metric(outputs, k)  # what the method reports itself, e.g. cert/epsilon
        rows[name] = row
    for name, row in rows.items():
        row.update(certificate_check(row, cfg, n))
    holm_record = holm_rows(cfg, rows)
    present = {k for row in rows.values() for k in row}
    ordered = [k for k in metrics.by_name if k in present] + sorted(present - set(metrics.by_name))
    return {
        "study": str(cfg.study_name),
        "n_models": n,
        "methods": rows,
        "reference": dict(reference_of),
        "retrain": {k: mean_metric(retrained, k) for k in (*ACCURACIES, "cost/seconds") if k in retrained.metrics},
        "metrics": {k: metrics.get(k).as_dict() for k in ordered},
        "pairwise": method_vs_method(cfg, labels["forget"], retrained, methods, reference_of) if pairwise else None,
        **({"holm": holm_record} if holm_record else {}),
        **({"skipped": [{"audit": a, "methods": ms, "reason": why} for a, by in skipped.items() for why, ms in by.items()]}
           if skipped else {}),
        "_arrays": arrays,
    }


# -- several originals ------------------------------------------------------------------------------
# How a row combines its K per-original values; every other number is their mean.
COMBINED = {
    # Bonferroni over the originals: a valid p-value of "exchangeable with retraining for every original"
    "audit/p_value": lambda v: min(1.0, len(v) * min(v)),
    # each original's bound holds with 95% for that original's ε, so their minimum holds for each
    "audit/eps_lb": min,
}


def audit_originals(cfg, labels: dict[str, np.ndarray], retrained: ModelOutputs,
                    per_original: list[dict[str, ModelOutputs]], reference_of: dict[str, str],
                    method_classes: Iterable[type] = ()) -> dict[str, Any]:
    """The audit of K originals' unlearned models against the shared retrained models: one
    audit_methods per original, then one row per method — audit/F the mean of the K F values
    (listed in audit/F_originals, their standard deviation in audit/F_sd), p-value and ε lower
    bound combined as COMBINED says, everything else the mean over originals. Certificates,
    Holm and the method-vs-method tests (on original 0) follow from the combined rows."""
    k = len(per_original)
    runs = [audit_methods(cfg, labels, retrained, methods, reference_of, method_classes, multiplicity=k,
                          pairwise=j == 0) for j, methods in enumerate(per_original)]
    first = runs[0]
    n = int(first["n_models"])
    rows: dict[str, dict[str, Any]] = {}
    originals: dict[str, dict[str, list[float]]] = {}
    for name, row0 in first["methods"].items():
        per = [r["methods"][name] for r in runs]
        row: dict[str, Any] = {}
        originals[name] = {}
        for key, value in row0.items():
            if key.startswith("cert/verdict") or key in ("cert/power", "cert/n_needed", "audit/p_value_holm"):
                continue  # follow from the combined row below
            values = [p.get(key) for p in per]
            if isinstance(value, str):
                continue
            values = [float(v) for v in values]
            originals[name][key] = values
            row[key] = float(COMBINED[key](values)) if key in COMBINED else float(np.mean(values))
        if "audit/eps_lb_statistic" in row0:  # the statistic of the smallest bound, the one reported
            worst = int(np.argmin(originals[name]["audit/eps_lb"]))
            row["audit/eps_lb_statistic"] = per[worst]["audit/eps_lb_statistic"]
        if "audit/F" in originals[name]:
            row["audit/F_originals"] = originals[name]["audit/F"]
            row["audit/F_sd"] = float(np.std(originals[name]["audit/F"], ddof=1))
        row.update(certificate_check(row, cfg, n))
        rows[name] = row
    holm_record = holm_rows(cfg, rows)
    metrics = Catalogue.of(build_audits(cfg).values(), method_classes)
    present = {key for row in rows.values() for key in row}
    ordered = [key for key in metrics.by_name if key in present] + sorted(present - set(metrics.by_name))
    arrays = {name: {key: np.concatenate([r["_arrays"][name][key] for r in runs]) for key in first["_arrays"][name]}
              for name in first["_arrays"]}
    pairwise = first["pairwise"]
    if pairwise and "skipped" not in pairwise:
        pairwise = {**pairwise, "original": 0}
    return {
        **{key: v for key, v in first.items() if key not in ("methods", "metrics", "holm", "_arrays", "pairwise")},
        "n_originals": k,
        "methods": rows,
        "originals": originals,
        "metrics": {key: metrics.get(key).as_dict() for key in ordered},
        "pairwise": pairwise,
        **({"holm": holm_record} if holm_record else {}),
        "_arrays": arrays,
    }


def method_vs_method(cfg, labels, retrained: ModelOutputs, outputs: dict[str, ModelOutputs],
                     reference_of: dict[str, str]) -> dict | None:
    """Which methods this N tells apart: permutation tests of F_A − F_B over every pair audited
    against the retrained models (Holm-adjusted), and the groups no test separates."""
    competition = (cfg.audit or {}).get("competition")
    skip = set(cfg.get("pairwise_skip") or ())
    names = [m for m in outputs if reference_of[m] == RETRAIN and m not in skip]
    if competition is None or competition.get("n_permutations", 1) == 0 or len(names) < 2:
        return None
    if len(names) > int(cfg.get("pairwise_max_methods", 6)):
        # Holm over k(k-1)/2 pairs needs ~k²/2α permutations per pair to reject at all
        return {"skipped": f"{len(names)} methods = {len(names) * (len(names) - 1) // 2} pairs; the tests run "
                           f"for at most pairwise_max_methods={cfg.get('pairwise_max_methods', 6)} methods"}
    conf = {m: logit_scaled_confidence(outputs[m].forget, labels) for m in names}
    tests = pairwise_tests(logit_scaled_confidence(retrained.forget, labels), conf, seed=int(competition.seed),
                           delta=float(competition.delta), alpha=ALPHA)
    return {
        "methods": list(tests.names), "F": tests.F.tolist(), "p_adjusted": tests.adjusted.tolist(),
        "alpha": ALPHA, "n_permutations": int(tests.n_run.max()), "groups": [list(g) for g in tests.groups(ALPHA)],
    }


def certificate_check(row: dict[str, Any], cfg, n: int) -> dict[str, Any]:
    """A certified method's ε against the audit's lower bound: violated only when the bound
    exceeds the certificate; not testable when no outcome at this N could exceed it; else
    consistent, with the power this N had against a violation of twice the certificate."""
    bound = (cfg.audit or {}).get("lower_bound")
    if "cert/epsilon" not in row or "audit/eps_lb" not in row or bound is None:
        return {}
    v = certificate_verdict(
        row["audit/eps_lb"], row["audit/eps_lb_max"], row["cert/epsilon"], n,
        delta=float(bound.delta), level=float(bound.level), rule_fraction=float(bound.rule_fraction),
    )
    return {"cert/verdict": v.label, "cert/power": v.power,
            **({"cert/n_needed": float(v.n_needed)} if v.n_needed is not None else {})}
