"""A valid lower bound on the ε of (ε, δ)-unlearning, from held-out models (DP auditing:
Jagielski, Ullman, Oprea 2020; Nasr, Song, Thakurta, Papernot, Carlini 2021).

If U is (ε, δ)-unlearning, every test T that says "unlearned" has FPR + e^ε FNR ≥ 1 − δ and
FNR + e^ε FPR ≥ 1 − δ (the hypothesis-testing view of the definition, §0). So upper confidence
bounds FPR⁺, FNR⁺ on a fixed test's error rates prove
ε ≥ max(0, log((1 − δ − FPR⁺)/FNR⁺), log((1 − δ − FNR⁺)/FPR⁺)).

The recipe: each side's models are split at random into a *rule* half and a *count* half. On the
rule half a model-level statistic and its threshold are chosen; on the count half the errors of
that fixed rule are counted and bounded by Clopper–Pearson at level (1 − level)/2 each, so the
bound holds with probability ≥ level (union bound). The trials are models, which are independent;
the examples of one model are not, so they enter only through one score per model.

The statistic is a diagonal linear discriminant of the forget set's confidences, its weights fitted
leave-one-out on the rule half, so that the threshold is chosen on honest scores. Any choice
made on the rule half keeps the bound valid; this one only aims to make it large.

What it can show is capped by the count half: with every count model classified correctly the
bound is ``max_epsilon_lower_bound`` (≈ 0.54 with 8 count models per side, N = 16; ≈ 2.8 with
64, N = 128). A bound of 0 means "nothing proved", not "ε = 0".
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from scipy.stats import beta

from unlearnlab.audits.base import AuditInput
from unlearnlab.audits.competition import forget_confidences
from unlearnlab.metrics import Metric

VAR_FLOOR = 1e-6  # keeps the discriminant finite when one side's models agree exactly


def _check(delta: float, level: float, rule_fraction: float) -> None:
    if not 0 <= delta < 1:
        raise ValueError(f"delta={delta} must lie in [0, 1)")
    if not 0 < level < 1:
        raise ValueError(f"level={level} must lie in (0, 1), e.g. 0.95")
    if not 0 < rule_fraction < 1:
        raise ValueError(f"rule_fraction={rule_fraction} must lie in (0, 1), e.g. 0.5")


def clopper_pearson_upper(errors: np.ndarray | int, n: int, alpha: float) -> np.ndarray:
    """One-sided (1 − alpha) Clopper–Pearson upper bound on a rate from `errors` out of n."""
    errors = np.asarray(errors)
    return np.where(errors >= n, 1.0, beta.ppf(1 - alpha, errors + 1, np.maximum(n - errors, 1)))


def epsilon_from_rates(fpr_upper, fnr_upper, delta: float) -> np.ndarray:
    """max(0, log((1−δ−FPR⁺)/FNR⁺), log((1−δ−FNR⁺)/FPR⁺)) elementwise (0 where undefined)."""
    fpr, fnr = np.asarray(fpr_upper, float), np.asarray(fnr_upper, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.log(1 - delta - fpr) - np.log(fnr)
        b = np.log(1 - delta - fnr) - np.log(fpr)
    return np.maximum(0.0, np.nan_to_num(np.fmax(a, b), nan=0.0, neginf=0.0))


def _bound(fp, fn, n_neg: int, n_pos: int, delta: float, level: float) -> np.ndarray:
    alpha = (1 - level) / 2
    return epsilon_from_rates(
        clopper_pearson_upper(fp, n_neg, alpha), clopper_pearson_upper(fn, n_pos, alpha), delta
    )


def _halves(n: int, rule_fraction: float) -> int:
    n_rule = int(round(rule_fraction * n))
    return min(max(n_rule, 2), n - 1)


def max_epsilon_lower_bound(
    n_models: int, delta: float = 1e-5, level: float = 0.95, rule_fraction: float = 0.5
) -> float:
    """The largest bound N models per side can ever show: every count model classified
    correctly (FP = FN = 0). Below this a certificate cannot be contradicted at this N."""
    _check(delta, level, rule_fraction)
    if n_models < 3:
        return 0.0
    n_count = n_models - _halves(n_models, rule_fraction)
    return float(_bound(0, 0, n_count, n_count, delta, level))


def models_needed(epsilon: float, delta: float = 1e-5, level: float = 0.95, rule_fraction: float = 0.5,
                  limit: int = 1 << 20) -> int | None:
    """The smallest N per side whose ``max_epsilon_lower_bound`` exceeds epsilon (None past limit)."""
    if max_epsilon_lower_bound(limit, delta, level, rule_fraction) <= epsilon:
        return None
    lo, hi = 3, limit  # the maximum grows with N: bisect on it
    while lo < hi:
        mid = (lo + hi) // 2
        if max_epsilon_lower_bound(mid, delta, level, rule_fraction) > epsilon:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _loo_scores(rule_u: np.ndarray, rule_r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Diagonal-LDA scores of the rule models, each scored by weights fitted without it."""
    var = np.concatenate([rule_u - rule_u.mean(0), rule_r - rule_r.mean(0)]).var(0) + VAR_FLOOR

    def loo(own: np.ndarray, other_mean: np.ndarray, sign: float) -> np.ndarray:
        n = len(own)
        own_mean = (own.sum(0) - own) / (n - 1)  # row i: mean without model i
        diff = sign * (own_mean - other_mean)  # unlearned minus retrained
        mid = (own_mean + other_mean) / 2
        return np.sum((own - mid) * diff / var, axis=1)

    return loo(rule_u, rule_r.mean(0), 1.0), loo(rule_r, rule_u.mean(0), -1.0)


def _best_threshold(score_u, score_r, n_count_u, n_count_r, delta, level) -> float:
    """The threshold t ("unlearned" iff score ≥ t) whose rule-half error rates, projected onto
    the count half's sizes, give the largest bound."""
    cuts = np.unique(np.concatenate([score_u, score_r]))
    t = np.r_[cuts, np.inf]
    fnr = (score_u[None, :] < t[:, None]).mean(1)
    fpr = (score_r[None, :] >= t[:, None]).mean(1)
    projected = _bound(np.round(fpr * n_count_r), np.round(fnr * n_count_u), n_count_r, n_count_u, delta, level)
    i = int(np.argmax(projected))  # first of the best: the lowest such threshold
    if i == 0:
        return float(t[0])
    return float((t[i - 1] + t[i]) / 2) if np.isfinite(t[i]) else float(np.inf)


def lower_bound_details(
    retrain_conf: np.ndarray, unlearn_conf: np.ndarray, delta: float = 1e-5, level: float = 0.95,
    seed: int = 0, rule_fraction: float = 0.5,
) -> dict[str, float]:
    """The bound with its ingredients: eps_lb, eps_lb_max, threshold, fp / fn counts and the
    count half's sizes."""
    _check(delta, level, rule_fraction)
    retrain = np.asarray(retrain_conf, dtype=np.float64)
    unlearn = np.asarray(unlearn_conf, dtype=np.float64)
    if retrain.ndim != 2 or unlearn.ndim != 2 or retrain.shape[1] != unlearn.shape[1]:
        raise ValueError(
            f"confidences must be (n_models, n_examples) on the same examples, got {retrain.shape} and "
            f"{unlearn.shape}"
        )
    if min(len(retrain), len(unlearn)) < 4:
        raise ValueError(
            f"need ≥ 4 models per side (rule and count halves), got {len(retrain)} and {len(unlearn)}; "
            "set n_models ≥ 4"
        )
    if not (np.isfinite(retrain).all() and np.isfinite(unlearn).all()):
        raise ValueError("confidences must be finite; compute them with logit_scaled_confidence")
    rng = np.random.default_rng(seed)
    pu, pr = rng.permutation(len(unlearn)), rng.permutation(len(retrain))
    ku, kr = _halves(len(unlearn), rule_fraction), _halves(len(retrain), rule_fraction)
    rule_u, count_u = unlearn[pu[:ku]], unlearn[pu[ku:]]
    rule_r, count_r = retrain[pr[:kr]], retrain[pr[kr:]]
    score_u, score_r = _loo_scores(rule_u, rule_r)
    t = _best_threshold(score_u, score_r, len(count_u), len(count_r), delta, level)
    # the rule, refitted on the whole rule half, applied once to the count half
    var = np.concatenate([rule_u - rule_u.mean(0), rule_r - rule_r.mean(0)]).var(0) + VAR_FLOOR
    mu_u, mu_r = rule_u.mean(0), rule_r.mean(0)
    w, mid = (mu_u - mu_r) / var, (mu_u + mu_r) / 2
    fn = int(np.sum((count_u - mid) @ w < t))
    fp = int(np.sum((count_r - mid) @ w >= t))
    eps = float(_bound(fp, fn, len(count_r), len(count_u), delta, level))
    best = float(_bound(0, 0, len(count_r), len(count_u), delta, level))
    return {"eps_lb": eps, "eps_lb_max": best, "threshold": t, "false_positives": float(fp),
            "false_negatives": float(fn), "count_retrain": float(len(count_r)), "count_unlearn": float(len(count_u))}


def epsilon_lower_bound(
    retrain_conf: np.ndarray, unlearn_conf: np.ndarray, delta: float = 1e-5, level: float = 0.95, seed: int = 0,
) -> float:
    """ε_lb: with probability ≥ level (over the models), the unlearning mechanism that produced
    unlearn_conf is not (ε, δ)-unlearning for any ε < ε_lb with respect to the mechanism that
    produced retrain_conf. Inputs (n_models, n_examples) confidences, one row per model."""
    return lower_bound_details(retrain_conf, unlearn_conf, delta, level, seed)["eps_lb"]


NOT_TESTABLE = "not testable at this N"


def certificate_verdict(
    eps_lb: float, eps_lb_max: float, cert_eps: float, n_models: int, *, delta: float = 1e-5,
    level: float = 0.95, rule_fraction: float = 0.5,
) -> tuple[str, int | None]:
    """(verdict, n_needed) for a certified ε against the audit's lower bound.

    "violated": eps_lb > cert_eps, the certificate is contradicted at the bound's confidence.
    "not testable at this N": eps_lb_max ≤ cert_eps, no outcome at this N could contradict it;
    n_needed = the N per side whose eps_lb_max exceeds cert_eps (None if none up to 2^20).
    "consistent": testable and not contradicted (which does not prove the certificate).
    delta / level / rule_fraction must be those the bound was computed with.
    """
    if not np.isfinite(cert_eps):
        return NOT_TESTABLE, None
    if eps_lb > cert_eps:
        return "violated", None
    if eps_lb_max <= cert_eps:
        needed = models_needed(cert_eps, delta, level, rule_fraction)
        return NOT_TESTABLE, (None if needed is None else max(needed, n_models + 1))
    return "consistent", None


class LowerBoundAudit:
    """ε lower bound (DP auditing, held-out models) of the unlearned against the retrained models."""

    name = "lower_bound"
    reads: ClassVar[frozenset[str]] = frozenset({"forget"})  # the logit parts it reads (audits/base.py Audit)
    metrics: ClassVar[tuple[Metric, ...]] = (
        Metric("audit/eps_lb", "ε lower bound, valid with 95% confidence (DP auditing: a rule chosen on half the "
               "models, its errors counted on the other half, Clopper–Pearson); 0 = nothing proved; ideal 0",
               group="ε lower bound", goal="min", headline=True),
        Metric("audit/eps_lb_max", "the largest ε lower bound this N can show (every held-out model classified "
               "correctly); a certificate below it can be tested, one above it cannot", group="ε lower bound"),
    )

    def __init__(self, delta: float = 1e-5, level: float = 0.95, seed: int = 0, rule_fraction: float = 0.5):
        _check(delta, level, rule_fraction)
        self.delta, self.level, self.seed, self.rule_fraction = float(delta), float(level), int(seed), rule_fraction

    def __call__(self, inp: AuditInput) -> dict[str, Any]:
        if min(inp.retrain.n_models, inp.unlearn.n_models) < 4:  # no held-out half: nothing can be proved
            return {"audit/eps_lb": 0.0, "audit/eps_lb_max": 0.0}
        out = lower_bound_details(
            *forget_confidences(inp), self.delta, self.level, self.seed, self.rule_fraction,
        )
        return {"audit/eps_lb": out["eps_lb"], "audit/eps_lb_max": out["eps_lb_max"]}
