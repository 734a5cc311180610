"""An empirical lower bound on ε from the auditor's guesses, after Steinke, Nasr & Jagielski
2023, "Privacy auditing with one (1) training run" (their Theorem with δ = 0): if a mechanism is
ε-DP with respect to each hidden fair coin, the number v of correct guesses among r is
stochastically dominated by Binom(r, e^ε/(1+e^ε)).

What it can show is capped by r: with every guess right the bound is ``max_eps_lower_bound(r)``
(reported as audit/one_run_eps_max; 0.79 with the 8 guesses of an N = 16 study). Below r = 5
guesses even a perfect auditor proves nothing (0.5^5 > 0.05 fails): the audit is vacuous and
says so. For a bound with a stated (ε, δ) meaning use the ``lower_bound`` audit.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np
from scipy.optimize import bisect
from scipy.special import expit
from scipy.stats import binom

from unlearnlab.audits.competition import forget_confidences
from unlearnlab.audits.base import AuditInput
from unlearnlab.audits.ulira import log_likelihood_ratio, split_halves
from unlearnlab.metrics import Metric

log = logging.getLogger(__name__)


def eps_lower_bound(r: int, v: int, p_value: float = 0.05) -> float:
    """Largest ε whose p-value β(ε) = P[Binom(r, q) ≥ v], q = e^ε/(1+e^ε), is below p_value.

    β grows with ε, so bisection finds where it crosses p_value; 0 when even ε = 0 (a fair
    coin) explains v correct guesses at that level.
    """
    def excess(eps: float) -> float:
        return binom.sf(v - 1, r, expit(eps)) - p_value

    if r == 0 or excess(0.0) >= 0:
        return 0.0
    # q = expit(50) rounds to 1 - 2e-22, where β = 1 for any v <= r.
    return float(bisect(excess, 0.0, 50.0, xtol=1e-9))


def max_eps_lower_bound(r: int, p_value: float = 0.05) -> float:
    """The largest bound r guesses can give (all correct): 0 means the audit is vacuous."""
    return eps_lower_bound(r, r, p_value)


def models_for_a_bound(guess_fraction: float = 0.5, p_value: float = 0.05) -> int:
    """The smallest n_models per side whose guesses can prove some ε > 0 (all of them right):
    targets are the n − n//2 models per side that are not shadows (ulira.split_halves)."""
    n = 4
    while max_eps_lower_bound(max(1, round(guess_fraction * 2 * (n - n // 2))), p_value) == 0.0:
        n += 1
    return n


def one_run_audit(
    retrain_conf: np.ndarray,
    unlearn_conf: np.ndarray,
    seed: int = 0,
    guess_fraction: float = 0.5,
    p_value: float = 0.05,
    min_std: float = 1e-3,
) -> dict[str, float]:
    """Guess "unlearned" or "retrained" for held-out models and turn the score into a bound.

    Protocol: each side's models are split at random into shadows and targets (seeded); per
    forget example, Gaussians are fitted on the shadows (U-LiRA); each target model's score
    is its summed log likelihood ratio over the forget set. Like Steinke et al.'s k+ / k−
    guesses, the auditor guesses only on the guess_fraction of targets with the largest |score|
    (sign → guess) and abstains on the rest; r = guesses, v = correct.

    The unit of a guess is a model, not a (model, example) pair: ε-unlearning protects the
    forget set as a whole and every example of one model shares that model's hidden bit, so
    pairs are not the independent coins the binomial bound needs (counting them would inflate
    the bound). Fixed-size sides stand in for the coin flips, as in many-run audits.
    """
    rng = np.random.default_rng(seed)
    u_shadow, u_target = split_halves(len(unlearn_conf), rng)
    r_shadow, r_target = split_halves(len(retrain_conf), rng)
    targets = np.concatenate([unlearn_conf[u_target], retrain_conf[r_target]])
    score = log_likelihood_ratio(
        unlearn_conf[u_shadow], retrain_conf[r_shadow], targets, min_std
    ).sum(axis=1)
    is_unlearned = np.r_[np.ones(len(u_target), bool), np.zeros(len(r_target), bool)]
    r = max(1, round(guess_fraction * len(score)))
    chosen = np.argsort(-np.abs(score), kind="stable")[:r]
    v = int(((score[chosen] > 0) == is_unlearned[chosen]).sum())
    return {"eps_lower_bound": eps_lower_bound(r, v, p_value), "guesses": r, "correct": v,
            "eps_max": max_eps_lower_bound(r, p_value)}


@dataclass(frozen=True)
class OneRunAudit:
    """ε lower bound from the auditor's guesses on held-out unlearned / retrained models; its
    fields are one_run_audit's options."""

    name: ClassVar[str] = "one_run"
    reads: ClassVar[frozenset[str]] = frozenset({"forget"})  # the logit parts it reads (audits/base.py Audit)
    metrics: ClassVar[tuple[Metric, ...]] = (
        Metric("audit/eps_lower_bound", "one-run empirical ε lower bound (Steinke et al. 2023, δ = 0, 95% "
               "confidence) from guesses on held-out models; ideal 0; at most audit/one_run_eps_max; a bound, "
               "not an estimate: no direction to optimise", group="One-run ε lower bound"),
        Metric("audit/one_run_eps_max", "the largest bound these guesses could show (all correct); 0: the audit "
               "is vacuous at this N", group="One-run ε lower bound"),
        Metric("audit/one_run_guesses", "number of guesses the one-run auditor made (target models)",
               group="One-run ε lower bound"),
        Metric("audit/one_run_correct", "number of those guesses that were correct", group="One-run ε lower bound"),
    )

    seed: int = 0
    guess_fraction: float = 0.5
    p_value: float = 0.05
    min_std: float = 1e-3

    def __call__(self, inp: AuditInput) -> dict[str, Any]:
        out = one_run_audit(*forget_confidences(inp), **asdict(self))
        if out["eps_max"] == 0.0:
            log.warning("one_run: %d guesses can prove no ε > 0 even if all are right (vacuous); raise n_models "
                        "(≥ %d at guess_fraction %g)", out["guesses"],
                        models_for_a_bound(self.guess_fraction, self.p_value), self.guess_fraction)
        return {
            "audit/eps_lower_bound": float(out["eps_lower_bound"]),
            "audit/one_run_eps_max": float(out["eps_max"]),
            "audit/one_run_guesses": float(out["guesses"]),
            "audit/one_run_correct": float(out["correct"]),
        }
