"""The official NeurIPS 2023 unlearning-challenge ε audit (SPECS §1), exact and fast.

Follows google-deepmind/unlearning_evaluation, metric.py (`compute_logit_scaled_confidence`,
`_get_epsilons`, `_get_single_threshold_rates`, `_get_double_threshold_rates`,
`compute_forget_score_from_confs`) rule for rule. The official code scores every one of the
~10^5 decision rules of a forget example against every model; at the competition scale
(5,000 examples × (512 + 512) models) that is ~10^12 comparisons. Here a rule's ε is a lookup
in a table indexed by its (false-negative, false-positive) counts, the counts come from
binary search in the sorted samples, and blocks of window rules whose ε provably cannot
beat the best rule found so far are skipped: the same maximum, in seconds on a CPU.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from unlearnlab.audits.base import AuditInput

EPSILON_CAP = 50.0
RULES_PER_UNIT = 100
BUFFER = 2.0
N_LEFT = int(np.ceil(2 * BUFFER * RULES_PER_UNIT))  # left ends per right end: 400
BLOCK = 20  # window rules per pruning block along the left ends
_BLOCK_ENDS = np.r_[np.arange(0, N_LEFT - 1, BLOCK), N_LEFT - 1]


def logit_scaled_confidence(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """log p_y − log Σ_{j≠y} p_j: the LiRA statistic, roughly Gaussian over training seeds.

    logits (..., n_examples, C); labels (n_examples,) broadcast over the leading axes.
    """
    logits = np.asarray(logits)
    labels = np.asarray(labels)
    if labels.shape != logits.shape[-2:-1]:
        raise ValueError(
            f"labels must have shape (n_examples,) = {logits.shape[-2:-1]}, got {labels.shape}; "
            "pass one integer label per forget example"
        )
    if not np.issubdtype(logits.dtype, np.floating):
        logits = logits.astype(np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    # Official exponentiates in the logits' own dtype (float32 from a net), then goes float64.
    probs = np.exp(shifted).astype(np.float64)
    probs /= probs.sum(axis=-1, keepdims=True)
    is_label = np.arange(logits.shape[-1]) == labels[:, None]
    prob_correct = np.where(is_label, probs, 0.0).sum(axis=-1)
    prob_wrong = np.where(is_label, 0.0, probs).sum(axis=-1)
    return np.log(prob_correct + 1e-45) - np.log(prob_wrong + 1e-45)


def _epsilon_table(n: int, delta: float) -> np.ndarray:
    """ε of a rule as a function of its (false negatives, false positives) out of n models.

    Rules that are ignored (exactly one error rate zero, or both log terms undefined) are
    −inf so that they never win a maximum; perfect separation is +inf.
    """
    rate = np.arange(n + 1) / n
    fnr, fpr = rate[:, None], rate[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.log(1 - delta - fpr) - np.log(fnr)
        b = np.log(1 - delta - fnr) - np.log(fpr)
    eps = np.fmax(a, b)  # nanmax of the two, as the official code
    eps = np.where(np.isnan(eps), -np.inf, np.maximum(eps, 0.0))
    eps[0, :] = -np.inf
    eps[:, 0] = -np.inf
    eps[0, 0] = np.inf
    return eps


def _suffix_max(table: np.ndarray) -> np.ndarray:
    """bound[a, b] = max ε over fn ≥ a, fp ≥ b: an upper bound for a block of rules."""
    rev = np.maximum.accumulate(table[::-1, ::-1], axis=0)
    return np.maximum.accumulate(rev, axis=1)[::-1, ::-1]


def _threshold_max(xs, cum_pos, n, table) -> float:
    """Best single-threshold rule: predict pos iff conf ≥ t."""
    # Official builds this grid with torch.linspace in float32; float64 here (SPECS).
    thresholds = np.linspace(xs[0], xs[-1], int(np.ceil((xs[-1] - xs[0]) * RULES_PER_UNIT)))
    k = np.searchsorted(xs, thresholds, side="left")
    fn = cum_pos[k]
    fp = n - (k - cum_pos[k])
    return float(table[fn, fp].max(initial=-np.inf))


class _Windows:
    """Window rules l ≤ conf ≤ r of one example (pos: the narrow sample), by (row = right
    end, left-end index j); cum_pos counts the narrow sample's values among xs."""

    def __init__(self, xs, cum_pos, narrow, n, table):
        self.xs, self.cum_pos, self.n, self.table = xs, cum_pos, n, table
        width = narrow.max() - narrow.min()
        lo, hi = narrow.min() + width - BUFFER, narrow.max() + BUFFER
        right = np.linspace(lo, hi, int(np.ceil((hi - lo) * RULES_PER_UNIT)))
        self.starts = right - width - BUFFER
        self.stops = right - width + BUFFER
        self.steps = (self.stops - self.starts) / (N_LEFT - 1)  # exactly as np.linspace
        k = np.searchsorted(xs, right, side="right")
        self.tp_right, self.fp_right = cum_pos[k], k - cum_pos[k]

    def counts(self, rows, j):
        """(true positives, false positives); an empty window (l > r) holds nothing."""
        left = np.where(j == N_LEFT - 1, self.stops[rows], j * self.steps[rows] + self.starts[rows])
        k = np.searchsorted(self.xs, left, side="left")
        tp = np.maximum(self.tp_right[rows] - self.cum_pos[k], 0)
        fp = np.maximum(self.fp_right[rows] - (k - self.cum_pos[k]), 0)
        return tp, fp

    def best(self, floor: float, bound: np.ndarray) -> float:
        """Max ε over all windows, or `floor` if none beats it; skips blocks bounded by it."""
        rows = np.arange(len(self.starts))[:, None]
        tp, fp = self.counts(rows, _BLOCK_ENDS[None, :])
        floor = max(floor, float(self.table[self.n - tp, fp].max()))
        # Along a row l grows, so fn grows and fp shrinks: a block's fn ≥ fn at its first
        # left end and fp ≥ fp at its last.
        upper = bound[self.n - tp[:, :-1], fp[:, 1:]]
        row, block = np.nonzero(upper > floor)
        if len(row) == 0:
            return floor
        j = np.minimum(_BLOCK_ENDS[block][:, None] + np.arange(1, BLOCK), N_LEFT - 1)
        tp, fp = self.counts(row[:, None], j)
        return max(floor, float(self.table[self.n - tp, fp].max()))


def _example_epsilon(retrain, unlearn, table, bound) -> float:
    """ε_s of one forget example from its two samples of n confidences."""
    n = len(retrain)
    retrain_is_pos = np.median(retrain) > np.median(unlearn)  # ties: unlearned is pos
    pos, neg = (retrain, unlearn) if retrain_is_pos else (unlearn, retrain)
    pos_range, neg_range = pos.max() - pos.min(), neg.max() - neg.min()
    largest, smallest = max(pos_range, neg_range), min(pos_range, neg_range)
    with np.errstate(invalid="ignore", divide="ignore"):
        if np.float64(smallest) / np.float64(largest) < 0.01:  # 0/0 is nan: goes on, as official
            return EPSILON_CAP
    values = np.concatenate([pos, neg])
    order = np.argsort(values, kind="stable")
    xs = values[order]
    cum_pos = np.r_[0, np.cumsum(order < n)]
    best = _threshold_max(xs, cum_pos, n, table)
    narrow = pos
    if pos_range >= neg_range:  # window rules call the narrower sample pos (equal: swap)
        narrow, cum_pos = neg, np.arange(2 * n + 1) - cum_pos
    best = _Windows(xs, cum_pos, narrow, n, table).best(best, bound)
    # max with 0: official asserts when every rule is ignored (both samples one equal
    # constant, indistinguishable); ε = 0 there.
    return min(EPSILON_CAP, max(0.0, best))


def _checked(retrain_conf, unlearn_conf) -> tuple[np.ndarray, np.ndarray]:
    retrain = np.asarray(retrain_conf, dtype=np.float64)
    unlearn = np.asarray(unlearn_conf, dtype=np.float64)
    if retrain.ndim != 2 or unlearn.ndim != 2:
        raise ValueError(
            f"confidences must be 2-D (n_models, n_examples), got {retrain.shape} and "
            f"{unlearn.shape}; stack one row per model"
        )
    if retrain.shape != unlearn.shape:  # official pairs the sides with np.where: same N too
        raise ValueError(
            f"retrain_conf {retrain.shape} and unlearn_conf {unlearn.shape} must have the same "
            "(n_models, n_examples); pass N retrained and N unlearned models on the same forget set"
        )
    if retrain.shape[0] < 2:
        raise ValueError(
            f"need n_models ≥ 2 on each side, got {retrain.shape[0]}; train more seeds"
        )
    if not (np.isfinite(retrain).all() and np.isfinite(unlearn).all()):
        raise ValueError("confidences must be finite; compute them with logit_scaled_confidence")
    return retrain, unlearn


def per_example_epsilon(
    retrain_conf: np.ndarray, unlearn_conf: np.ndarray, delta: float = 1e-5
) -> np.ndarray:
    """ε_s per forget example (capped at 50): how well the best of the official decision
    rules tells the retrained sample from the unlearned one. Inputs (n_models, n_examples)."""
    retrain, unlearn = _checked(retrain_conf, unlearn_conf)
    table = _epsilon_table(retrain.shape[0], delta)
    bound = _suffix_max(table)
    retrain, unlearn = np.ascontiguousarray(retrain.T), np.ascontiguousarray(unlearn.T)
    return np.array([_example_epsilon(r, u, table, bound) for r, u in zip(retrain, unlearn)])


def forgetting_quality(
    retrain_conf: np.ndarray, unlearn_conf: np.ndarray, delta: float = 1e-5
) -> tuple[float, np.ndarray]:
    """(F, ε): F = mean over examples of 2^−⌊ε/0.5⌋, 0 from ceil(ln(N−1)) on, where N
    models can resolve no larger ε."""
    eps = per_example_epsilon(retrain_conf, unlearn_conf, delta)
    n_models = np.shape(unlearn_conf)[0]  # official: the unlearned side's count
    max_epsilon = np.ceil(np.log(n_models - 1))
    points = np.where(eps < max_epsilon, 2.0 ** -np.floor(eps / 0.5), 0.0)
    return float(points.mean()), eps


def final_score(F: float, ra_u: float, ra_r: float, ta_u: float, ta_r: float) -> float:
    """Forgetting quality discounted by the utility lost relative to retraining."""
    return float(F * (ra_u / ra_r) * (ta_u / ta_r))


class CompetitionAudit:
    """The challenge's ε audit of the unlearned models against the retrained ones."""

    name = "competition"

    def __init__(self, delta: float = 1e-5):
        self.delta = delta

    def __call__(self, inp: AuditInput) -> dict[str, Any]:
        labels = inp.labels["forget"]
        F, eps = forgetting_quality(
            logit_scaled_confidence(inp.retrain.forget, labels),
            logit_scaled_confidence(inp.unlearn.forget, labels),
            self.delta,
        )
        u, r = inp.unlearn.metrics, inp.retrain.metrics
        score = final_score(
            F,
            np.mean(u["retain/acc"]),
            np.mean(r["retain/acc"]),
            np.mean(u["test/acc"]),
            np.mean(r["test/acc"]),
        )
        return {
            "audit/F": F,
            "audit/score": score,
            "audit/eps_mean": float(eps.mean()),
            "audit/eps": eps,
        }


def benchmark(n_examples: int = 5000, n_models: int = 512, seed: int = 0) -> float:
    """Seconds for forgetting_quality at a given scale (official: 5,000 × (512 + 512))."""
    rng = np.random.default_rng(seed)
    retrain = rng.standard_normal((n_models, n_examples))
    unlearn = rng.standard_normal((n_models, n_examples))
    start = time.perf_counter()
    forgetting_quality(retrain, unlearn)
    return time.perf_counter() - start
