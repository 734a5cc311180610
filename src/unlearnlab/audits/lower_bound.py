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

The statistic is a diagonal linear discriminant of one vector per model, its weights fitted
leave-one-out on the rule half, so that the threshold is chosen on honest scores. Several vectors
may compete (``STATISTICS``): the forget set's logit-scaled confidences, its full logit vectors,
and the released weights themselves where the audit has them (the certificate is a statement
about the weights); the one whose rule-half scores give the largest bound wins. Any choice made
on the rule half keeps the bound valid; these only aim to make it large.

What it can show is capped by the count half: with every count model classified correctly the
bound is ``max_epsilon_lower_bound`` (≈ 0.54 with 8 count models per side, N = 16; ≈ 2.8 with
64, N = 128). A bound of 0 means "nothing proved", not "ε = 0".

How likely a bound was to show a leak: ``detection_power`` — for an auditor who knows the
mechanism, every held-out model is classified with the pure-DP trade-off's symmetric error
FPR = FNR = 1/(1 + e^ε), the counts are binomial, and the chance that the bound exceeds a
certificate is summed exactly over them. ``models_for_power`` is the N per side that reaches a
given power.
"""


from __future__ import annotations

from functools import lru_cache
from typing import Any, ClassVar, Mapping, NamedTuple

import numpy as np
from scipy.stats import beta, binom

from unlearnlab.audits.base import AuditInput
from unlearnlab.audits.competition import forget_confidences
from unlearnlab.metrics import Metric

VAR_FLOOR = 1e-6  # × the mean variance: keeps the discriminant finite where one side's models agree exactly
# The vectors of a released model a rule may be chosen from, in order of preference on ties.
STATISTICS = ("confidences", "logits", "weights")
POWER_FACTOR = 2.0  # cert/power: the chance of "violated" when the true ε is this many times the certificate
POWER_TARGET = 0.8  # cert/n_needed: the N per side at which that chance reaches this


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


def count_models(n_models: int, rule_fraction: float = 0.5) -> int:
    """Held-out (count) models per side of a bound over n_models per side."""
    return n_models - _halves(n_models, rule_fraction)


def max_epsilon_lower_bound(
    n_models: int, delta: float = 1e-5, level: float = 0.95, rule_fraction: float = 0.5
) -> float:
    """The largest bound N models per side can ever show: every count model classified
    correctly (FP = FN = 0). Below this a certificate cannot be contradicted at this N."""
    _check(delta, level, rule_fraction)
    if n_models < 3:
        return 0.0
    n_count = count_models(n_models, rule_fraction)
    return float(_bound(0, 0, n_count, n_count, delta, level))


def models_needed(epsilon: float, delta: float = 1e-5, level: float = 0.95, rule_fraction: float = 0.5,
                  limit: int = 1 << 20) -> int | None:
    """The smallest N per side whose ``max_epsilon_lower_bound`` exceeds epsilon (None past limit):
    where a certificate becomes testable at all (with power near 0 there: see models_for_power)."""
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


# -- power: how likely the bound was to show a violation ------------------------------------------
def symmetric_error(true_eps: float) -> float:
    """FPR = FNR = 1/(1 + e^ε): the best symmetric test of a pure ε-DP pair (the corner of its
    trade-off curve FPR + e^ε FNR ≥ 1, FNR + e^ε FPR ≥ 1)."""
    return float(1.0 / (1.0 + np.exp(true_eps)))


def gaussian_epsilon(mu: float, delta: float) -> float:
    """ε(δ) of a Gaussian mechanism whose two outputs are μ noise standard deviations apart (μ-GDP):
    the ε solving δ = Φ(−ε/μ + μ/2) − e^ε Φ(−ε/μ − μ/2) (0 when even ε = 0 meets δ)."""
    from scipy.optimize import brentq
    from scipy.stats import norm

    if mu <= 0:
        return 0.0

    def excess(eps: float) -> float:
        return float(norm.cdf(-eps / mu + mu / 2) - np.exp(eps + norm.logcdf(-eps / mu - mu / 2)) - delta)

    if excess(0.0) <= 0:
        return 0.0
    hi = 1.0
    while excess(hi) > 0:
        hi *= 2
    return float(brentq(excess, 0.0, hi, xtol=1e-12))


def gaussian_error(mu: float) -> float:
    """Φ(−μ/2): the best symmetric test's FPR = FNR between two Gaussians μ standard deviations apart."""
    from scipy.stats import norm

    return float(norm.cdf(-mu / 2))


def detection_power(true_eps: float, threshold: float, n_models: int, delta: float = 1e-5, level: float = 0.95,
                    rule_fraction: float = 0.5) -> float:
    """P[ε_lb > threshold] for N = n_models per side when the mechanism's true ε is true_eps and the
    auditor knows it: each of the count half's models is misclassified independently with
    probability symmetric_error(true_eps) (the pure-DP trade-off; see power_at_error)."""
    return power_at_error(symmetric_error(true_eps), threshold, n_models, delta, level, rule_fraction)


def power_at_error(error: float, threshold: float, n_models: int, delta: float = 1e-5, level: float = 0.95,
                   rule_fraction: float = 0.5) -> float:
    """P[ε_lb > threshold] when each held-out model is misclassified with probability `error`:
    FP and FN ~ Binomial(count, error), the bound the split-half Clopper–Pearson one above.
    Exact: summed over every (FP, FN). A Gaussian mechanism has error gaussian_error(μ), far above
    symmetric_error of its ε(δ): the same ε is much harder to see on few models.

    ε_lb > c iff FNR⁺ < (1 − δ − FPR⁺)e^−c or FNR⁺ < 1 − δ − FPR⁺e^c, and FNR⁺ grows with FN, so
    for each FP the FN that show a violation are 0 .. g(FP) − 1."""
    _check(delta, level, rule_fraction)
    if n_models < 4 or not np.isfinite(threshold):
        return 0.0
    n = count_models(n_models, rule_fraction)
    p = float(error)
    k = np.arange(n + 1)
    upper = clopper_pearson_upper(k, n, (1 - level) / 2)  # non-decreasing in k
    c = float(threshold)
    with np.errstate(over="ignore"):
        limit = np.maximum((1 - delta - upper) * np.exp(-c), 1 - delta - upper * np.exp(c))
    g = np.searchsorted(upper, limit, side="left")  # #{FN : FNR⁺(FN) < limit(FP)}
    below = np.where(g > 0, binom.cdf(g - 1, n, p), 0.0)
    return float(np.clip(np.sum(binom.pmf(k, n, p) * below), 0.0, 1.0))


SCAN_UP_TO = 1024  # models_for_power scans every N up to here; beyond, bisection


@lru_cache(maxsize=256)
def models_for_power(threshold: float, true_eps: float, power: float = POWER_TARGET, delta: float = 1e-5,
                     level: float = 0.95, rule_fraction: float = 0.5, limit: int = 1 << 16) -> int | None:
    """The smallest N per side at which detection_power(true_eps, threshold, N) reaches `power`
    (None past limit). The power is not monotone in N (Clopper–Pearson is discrete: e.g. a 2×
    violation of ε = 1 reaches 80% at N = 89 and dips below it at 92), so every N is tried up to
    SCAN_UP_TO; past it, doubling and bisection find an N that reaches it whose N − 1 does not."""
    def enough(n: int) -> bool:
        return detection_power(true_eps, threshold, n, delta, level, rule_fraction) >= power

    if max_epsilon_lower_bound(limit, delta, level, rule_fraction) <= threshold:
        return None  # no N up to limit can show it at all
    for n in range(4, min(SCAN_UP_TO, limit) + 1):
        if enough(n):
            return n
    lo, hi = SCAN_UP_TO, 2 * SCAN_UP_TO  # lo does not reach it
    while not enough(hi):
        lo, hi = hi, hi * 2
        if hi > limit:
            return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if enough(mid) else (mid, hi)
    return hi


# -- the bound --------------------------------------------------------------------------------------
def _variance(rule_u: np.ndarray, rule_r: np.ndarray) -> np.ndarray:
    var = np.concatenate([rule_u - rule_u.mean(0), rule_r - rule_r.mean(0)]).var(0)
    mean = float(var.mean())
    return var + (VAR_FLOOR * mean if mean > 0 else 1.0)


def _loo_scores(rule_u: np.ndarray, rule_r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Diagonal-LDA scores of the rule models, each scored by weights fitted without it."""
    var = _variance(rule_u, rule_r)

    def loo(own: np.ndarray, other_mean: np.ndarray, sign: float) -> np.ndarray:
        n = len(own)
        own_mean = (own.sum(0) - own) / (n - 1)  # row i: mean without model i
        diff = sign * (own_mean - other_mean)  # unlearned minus retrained
        mid = (own_mean + other_mean) / 2
        return np.sum((own - mid) * diff / var, axis=1)

    return loo(rule_u, rule_r.mean(0), 1.0), loo(rule_r, rule_u.mean(0), -1.0)


def _best_threshold(score_u, score_r, n_count_u, n_count_r, delta, level) -> tuple[float, float]:
    """(t, projected bound): the threshold t ("unlearned" iff score ≥ t) whose rule-half error
    rates, projected onto the count half's sizes, give the largest bound."""
    cuts = np.unique(np.concatenate([score_u, score_r]))
    t = np.r_[cuts, np.inf]
    fnr = (score_u[None, :] < t[:, None]).mean(1)
    fpr = (score_r[None, :] >= t[:, None]).mean(1)
    projected = _bound(np.round(fpr * n_count_r), np.round(fnr * n_count_u), n_count_r, n_count_u, delta, level)
    i = int(np.argmax(projected))  # first of the best: the lowest such threshold
    if i == 0:
        return float(t[0]), float(projected[0])
    return (float((t[i - 1] + t[i]) / 2) if np.isfinite(t[i]) else float(np.inf)), float(projected[i])


def _separation(score_u: np.ndarray, score_r: np.ndarray) -> float:
    """Standardised gap of the rule half's LOO scores: breaks ties between statistics that
    separate the rule half equally well (the larger gap is the safer bet on new models)."""
    spread = np.sqrt((score_u.var() + score_r.var()) / 2)
    gap = score_u.mean() - score_r.mean()
    return float(gap / spread) if spread > 0 else (np.inf if gap > 0 else 0.0)


Statistics = Mapping[str, np.ndarray]


def _as_statistics(x: np.ndarray | Statistics) -> dict[str, np.ndarray]:
    if isinstance(x, Mapping):
        return {k: np.asarray(v, dtype=np.float64).reshape(len(v), -1) for k, v in x.items()}
    return {STATISTICS[0]: np.asarray(x, dtype=np.float64)}


def _checked(retrain: dict[str, np.ndarray], unlearn: dict[str, np.ndarray]) -> None:
    if not retrain or set(retrain) != set(unlearn):
        raise ValueError(f"both sides need the same statistics, got {sorted(retrain)} and {sorted(unlearn)}")
    for name in retrain:
        r, u = retrain[name], unlearn[name]
        if r.ndim != 2 or u.ndim != 2 or r.shape[1] != u.shape[1]:
            raise ValueError(
                f"{name} must be (n_models, n_values) with the same n_values on both sides, got {r.shape} and "
                f"{u.shape}"
            )
        if not (np.isfinite(r).all() and np.isfinite(u).all()):
            raise ValueError(f"{name} must be finite (confidences: compute them with logit_scaled_confidence)")
    n_r, n_u = {len(v) for v in retrain.values()}, {len(v) for v in unlearn.values()}
    if len(n_r) != 1 or len(n_u) != 1:
        raise ValueError("every statistic must have one row per model (the same models on each side)")
    if min(*n_r, *n_u) < 4:
        raise ValueError(
            f"need ≥ 4 models per side (rule and count halves), got {n_r.pop()} and {n_u.pop()}; set n_models ≥ 4"
        )


def lower_bound_details(
    retrain: np.ndarray | Statistics, unlearn: np.ndarray | Statistics, delta: float = 1e-5, level: float = 0.95,
    seed: int = 0, rule_fraction: float = 0.5,
) -> dict[str, Any]:
    """The bound with its ingredients: eps_lb, eps_lb_max, the winning statistic, threshold, fp / fn
    counts and the count half's sizes.

    retrain / unlearn: (n_models, n_values) arrays (one vector per model, e.g. forget confidences),
    or {name: array} with the same names on both sides, of which the rule half chooses one (the
    largest projected bound, then the larger standardised gap, then the order given)."""
    _check(delta, level, rule_fraction)
    retrain_s, unlearn_s = _as_statistics(retrain), _as_statistics(unlearn)
    _checked(retrain_s, unlearn_s)
    n_r, n_u = len(next(iter(retrain_s.values()))), len(next(iter(unlearn_s.values())))
    rng = np.random.default_rng(seed)
    pu, pr = rng.permutation(n_u), rng.permutation(n_r)
    ku, kr = _halves(n_u, rule_fraction), _halves(n_r, rule_fraction)
    n_count_u, n_count_r = n_u - ku, n_r - kr
    best: tuple[float, float, int] | None = None
    chosen, threshold = "", 0.0
    for order, name in enumerate(retrain_s):
        rule_u, rule_r = unlearn_s[name][pu[:ku]], retrain_s[name][pr[:kr]]
        score_u, score_r = _loo_scores(rule_u, rule_r)
        t, projected = _best_threshold(score_u, score_r, n_count_u, n_count_r, delta, level)
        rank = (projected, _separation(score_u, score_r), -order)
        if best is None or rank > best:
            best, chosen, threshold = rank, name, t
    # the chosen rule, refitted on the whole rule half, applied once to the count half
    u, r = unlearn_s[chosen], retrain_s[chosen]
    rule_u, count_u, rule_r, count_r = u[pu[:ku]], u[pu[ku:]], r[pr[:kr]], r[pr[kr:]]
    mu_u, mu_r = rule_u.mean(0), rule_r.mean(0)
    w, mid = (mu_u - mu_r) / _variance(rule_u, rule_r), (mu_u + mu_r) / 2
    fn = int(np.sum((count_u - mid) @ w < threshold))
    fp = int(np.sum((count_r - mid) @ w >= threshold))
    eps = float(_bound(fp, fn, len(count_r), len(count_u), delta, level))
    most = float(_bound(0, 0, len(count_r), len(count_u), delta, level))
    return {"eps_lb": eps, "eps_lb_max": most, "statistic": chosen, "threshold": threshold,
            "false_positives": float(fp), "false_negatives": float(fn), "count_retrain": float(len(count_r)),
            "count_unlearn": float(len(count_u))}


def epsilon_lower_bound(
    retrain: np.ndarray | Statistics, unlearn: np.ndarray | Statistics, delta: float = 1e-5, level: float = 0.95,
    seed: int = 0,
) -> float:
    """ε_lb: with probability ≥ level (over the models), the unlearning mechanism that produced
    `unlearn` is not (ε, δ)-unlearning for any ε < ε_lb with respect to the mechanism that
    produced `retrain`. Inputs (n_models, n_values), one row per model (e.g. forget confidences),
    or {statistic: array} to let the rule half choose among several."""
    return lower_bound_details(retrain, unlearn, delta, level, seed)["eps_lb"]


# -- certificates ------------------------------------------------------------------------------------
NOT_TESTABLE = "not testable at this N"
VIOLATED = "violated"
CONSISTENT = "consistent"


class Verdict(NamedTuple):
    """A certificate against the bound: the verdict, its label with the power (what tables show),
    the power against POWER_FACTOR × the certificate, and the N per side for POWER_TARGET of it."""

    verdict: str
    label: str
    power: float
    n_needed: int | None


def percent(p: float) -> str:
    """A probability as a percentage to two significant digits (0.00067 → '0.067%')."""
    if p <= 0:
        return "0%"
    if p >= 1:
        return "100%"
    return f"{float(f'{100 * p:.2g}'):g}%"


def certificate_verdict(
    eps_lb: float, eps_lb_max: float, cert_eps: float, n_models: int, *, delta: float = 1e-5,
    level: float = 0.95, rule_fraction: float = 0.5, factor: float = POWER_FACTOR, target: float = POWER_TARGET,
) -> Verdict:
    """A certified ε against the audit's lower bound.

    "violated": eps_lb > cert_eps, the certificate is contradicted at the bound's confidence.
    "not testable at this N": eps_lb_max ≤ cert_eps, no outcome at this N could contradict it.
    "consistent": testable and not contradicted — which does not prove the certificate: `power`
    says how likely this N was to say "violated" had the true ε been `factor` × the certificate
    (for an auditor who knows the mechanism: detection_power), `n_needed` the N per side at
    which that reaches `target`. delta / level / rule_fraction: those of the bound.
    """
    if not np.isfinite(cert_eps):
        return Verdict(NOT_TESTABLE, NOT_TESTABLE, 0.0, None)
    power = detection_power(factor * cert_eps, cert_eps, n_models, delta, level, rule_fraction)
    needed = models_for_power(float(cert_eps), float(factor * cert_eps), target, delta, level, rule_fraction)
    against = f"against {factor:g}×"
    if eps_lb > cert_eps:
        return Verdict(VIOLATED, VIOLATED, power, needed)
    if eps_lb_max <= cert_eps:
        return Verdict(NOT_TESTABLE, f"{NOT_TESTABLE} (power 0 {against})", 0.0, needed)
    return Verdict(CONSISTENT, f"{CONSISTENT} (power {percent(power)} {against})", power, needed)


# -- the audit ---------------------------------------------------------------------------------------
def model_statistics(inp: AuditInput, names: tuple[str, ...] = STATISTICS) -> tuple[dict, dict]:
    """(reference, unlearned) {statistic: (n_models, n_values)} of the named statistics these
    models have: confidences (forget-set logit-scaled confidences), logits (the forget set's full
    logit vectors), weights (the released weights, where ModelOutputs carries them)."""
    retrain, unlearn = {}, {}
    for name in names:
        if name == "confidences":
            retrain[name], unlearn[name] = forget_confidences(inp)
        elif name == "logits":
            retrain[name], unlearn[name] = (o.forget.reshape(o.n_models, -1) for o in (inp.retrain, inp.unlearn))
        elif name == "weights":
            if inp.retrain.weights is not None and inp.unlearn.weights is not None:
                retrain[name], unlearn[name] = inp.retrain.weights, inp.unlearn.weights
        else:
            raise ValueError(f"unknown statistic {name!r}; choose from {list(STATISTICS)}")
    return retrain, unlearn


class LowerBoundAudit:
    """ε lower bound (DP auditing, held-out models) of the unlearned against the retrained models."""

    name = "lower_bound"
    reads: ClassVar[frozenset[str]] = frozenset({"forget"})  # the logit parts it reads (audits/base.py Audit)
    metrics: ClassVar[tuple[Metric, ...]] = (
        Metric("audit/eps_lb", "ε lower bound, valid with 95% confidence (DP auditing: a rule chosen on half the "
               "models, its errors counted on the other half, Clopper–Pearson); 0 = nothing proved; ideal 0; "
               "a bound, not an estimate: no direction to optimise", group="ε lower bound", headline=True),
        Metric("audit/eps_lb_max", "the largest ε lower bound this N can show (every held-out model classified "
               "correctly); a certificate below it can be tested, one above it cannot", group="ε lower bound"),
        Metric("audit/eps_lb_statistic", "the statistic of each released model the rule half chose for the bound: "
               "confidences (forget-set confidences), logits (forget-set logit vectors) or weights (the released "
               "weights, small models only)", group="ε lower bound"),
    )

    def __init__(self, delta: float = 1e-5, level: float = 0.95, seed: int = 0, rule_fraction: float = 0.5,
                 statistics: tuple[str, ...] | list[str] = STATISTICS, weights_max_params: int = 10_000):
        _check(delta, level, rule_fraction)
        unknown = [s for s in statistics if s not in STATISTICS]
        if unknown or not statistics:
            raise ValueError(f"statistics={list(statistics)}: choose one or more of {list(STATISTICS)}")
        self.delta, self.level, self.seed, self.rule_fraction = float(delta), float(level), int(seed), rule_fraction
        self.statistics = tuple(str(s) for s in statistics)
        self.weights_max_params = int(weights_max_params)  # read by the study: which models carry their weights

    def __call__(self, inp: AuditInput) -> dict[str, Any]:
        if min(inp.retrain.n_models, inp.unlearn.n_models) < 4:  # no held-out half: nothing can be proved
            return {"audit/eps_lb": 0.0, "audit/eps_lb_max": 0.0}
        out = lower_bound_details(
            *model_statistics(inp, self.statistics), self.delta, self.level, self.seed, self.rule_fraction,
        )
        return {"audit/eps_lb": out["eps_lb"], "audit/eps_lb_max": out["eps_lb_max"],
                "audit/eps_lb_statistic": out["statistic"]}
