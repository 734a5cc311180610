"""The official NeurIPS 2023 unlearning-challenge ε audit, exact and fast.

Follows google-deepmind/unlearning_evaluation, metric.py (`compute_logit_scaled_confidence`,
`_get_epsilons`, `_get_single_threshold_rates`, `_get_double_threshold_rates`,
`compute_forget_score_from_confs`) rule for rule. The official code scores every one of the
~10^5 decision rules of a forget example against every model; at the competition scale
(5,000 examples × (512 + 512) models) that is ~10^12 comparisons. Here a rule's ε is a lookup
in a table indexed by its (false-negative, false-positive) counts, the counts come from
binary search in the sorted samples, and blocks of window rules whose ε provably cannot
beat the best rule found so far are skipped (branch and bound over right ends × left ends):
the same maximum, in seconds on a CPU. Every step runs on a batch of examples at once (numpy;
batches in threads, one per core the job owns), and each example's confidences are sorted once
for all the relabellings of a permutation test.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from unlearnlab.audits.base import AuditInput
from unlearnlab.cores import job_cores
from unlearnlab.metrics import Metric

EPSILON_CAP = 50.0
RULES_PER_UNIT = 100
BUFFER = 2.0
N_LEFT = int(np.ceil(2 * BUFFER * RULES_PER_UNIT))  # left ends per right end: 400
# The window search's blocks, coarse to fine: (right ends, left ends) per block. Every level's
# blocks that may still beat the best rule found are split into the next level's; the last
# level is single rules.
LEVELS = ((32, 100), (16, 50), (8, 25), (4, 12), (2, 6), (1, 3), (1, 1))


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


def forget_confidences(inp: AuditInput) -> tuple[np.ndarray, np.ndarray]:
    """(reference, unlearned) logit-scaled confidences on the forget set: what the ε audits read."""
    y = inp.labels["forget"]
    return logit_scaled_confidence(inp.retrain.forget, y), logit_scaled_confidence(inp.unlearn.forget, y)


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


def _linspace(start: np.ndarray, stop: np.ndarray, num: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """np.linspace(start[e], stop[e], num[e]) for every e, concatenated, bit for bit as numpy
    builds it (i · step + start, the last point = stop), with each point's e."""
    num = np.maximum(num, 0)
    e = np.repeat(np.arange(len(num)), num)
    i = np.arange(len(e)) - np.repeat(np.cumsum(num) - num, num)
    step = (stop - start) / np.maximum(num - 1, 1)  # num == 1: the point is start (i = 0)
    x = i * step[e] + start[e]
    last = num > 1
    x[np.cumsum(num)[last] - 1] = stop[last]
    return x, e


def _segments(e: np.ndarray, n_groups: int) -> np.ndarray:
    """Offsets of each group's run in E (sorted group numbers): group g is E[b[g]:b[g+1]]."""
    return np.searchsorted(e, np.arange(n_groups + 1))


def _search(xs: np.ndarray, q: np.ndarray, bounds: np.ndarray, side: str) -> np.ndarray:
    """np.searchsorted(xs[g], q[bounds[g]:bounds[g+1]]) for every row g of xs, concatenated: the
    count of xs[g] below (side left) or at most (side right) each query of its run."""
    out = np.empty(len(q), dtype=np.intp)
    for g in np.flatnonzero(bounds[1:] > bounds[:-1]):
        out[bounds[g]:bounds[g + 1]] = xs[g].searchsorted(q[bounds[g]:bounds[g + 1]], side)
    return out


def _group_max(values: np.ndarray, e: np.ndarray, n_groups: int) -> np.ndarray:
    """max of VALUES (rows along axis 0, maxed over the other axes) per group E (sorted); −inf
    for a group with none."""
    values = values.reshape(len(values), -1).max(axis=1) if values.ndim > 1 else values
    out = np.full(n_groups, -np.inf)
    bounds = _segments(e, n_groups)
    some = bounds[1:] > bounds[:-1]
    if some.any():
        out[some] = np.maximum.reduceat(values, bounds[:-1][some])
    return out


def _threshold_max(xs, cum_pos, n, table) -> np.ndarray:
    """Best single-threshold rule of each example: predict pos iff conf ≥ t."""
    # Official builds this grid with torch.linspace in float32; float64 here.
    lo, hi = xs[:, 0], xs[:, -1]
    t, e = _linspace(lo, hi, np.ceil((hi - lo) * RULES_PER_UNIT).astype(np.intp))
    k = _search(xs, t, _segments(e, len(xs)), "left")
    c = cum_pos[e, k]
    return _group_max(table[c, n - (k - c)], e, len(xs))


class _Windows:
    """Window rules l ≤ conf ≤ r of a batch of examples (pos: each one's narrow sample), by row
    (one per right end of every example, example by example; `e` maps a row to its example) and
    left-end index j; cum_pos counts the narrow sample's values among xs."""

    def __init__(self, xs, cum_pos, narrow_min, narrow_max, n, table):
        self.xs, self.cum_pos, self.n, self.table = xs, cum_pos, n, table
        width = narrow_max - narrow_min
        lo, hi = narrow_min + width - BUFFER, narrow_max + BUFFER
        right, self.e = _linspace(lo, hi, np.ceil((hi - lo) * RULES_PER_UNIT).astype(np.intp))
        self.starts = right - width[self.e] - BUFFER
        self.stops = right - width[self.e] + BUFFER
        self.steps = (self.stops - self.starts) / (N_LEFT - 1)  # exactly as np.linspace
        k = _search(xs, right, _segments(self.e, len(xs)), "right")
        c = cum_pos[self.e, k]
        self.tp_right, self.fp_right = c, k - c

    def counts_below(self, rows, j):
        """How many of the narrow and of the wide sample lie below the left end of the rules
        (row, j) (rows sorted)."""
        left = j * self.steps[rows] + self.starts[rows]
        last = j == N_LEFT - 1
        left[last] = self.stops[rows[last]]  # exactly as np.linspace
        e = self.e[rows]
        k = _search(self.xs, left, _segments(e, len(self.xs)), "left")
        c = self.cum_pos[e, k]
        return c, k - c

    def value(self, rows, narrow_below, wide_below) -> np.ndarray:
        """ε of the rules (row, ·) whose left end has these counts below it; an empty window
        (l > r) holds nothing."""
        tp = np.maximum(self.tp_right[rows] - narrow_below, 0)
        fp = np.maximum(self.fp_right[rows] - wide_below, 0)
        return self.table[self.n - tp, fp]

    def best(self, floor: np.ndarray, bound: np.ndarray) -> np.ndarray:
        """Max ε over all windows of each example, or its `floor` if none beats it; skips the
        blocks of rules that cannot beat it (branch and bound).

        A block is right ends r0..r1 × left-end indices j0..j1. The left end l grows with r
        and with j, and so do the counts below it; the counts at or below r grow with r. So
        every rule of the block has tp ≤ tp_right(r1) − narrow_below(r0, j0) and fp ≥
        fp_right(r0) − wide_below(r1, j1), and ε (non-increasing in fn and fp) at most
        bound[n − that tp, that fp]: two corners bound a block. Both corners are rules, whose
        ε raises the floor. The maximum returned is that of all rules (or the floor), however
        the blocks are cut."""
        n, g = self.n, len(self.xs)
        row_start = _segments(self.e, g)
        rows = np.arange(len(self.starts))
        hr, hj = LEVELS[0]
        r0 = rows[(rows - row_start[self.e]) % hr == 0]
        r0, j0 = np.repeat(r0, -(-N_LEFT // hj)), np.tile(np.arange(0, N_LEFT, hj), len(r0))
        r1 = np.minimum(r0 + hr - 1, row_start[self.e[r0] + 1] - 1)
        j1 = np.minimum(j0 + hj - 1, N_LEFT - 1)
        for level in range(len(LEVELS)):
            narrow0, wide0 = self.counts_below(r0, j0)
            narrow1, wide1 = self.counts_below(r1, j1)
            e = self.e[r0]
            corners = np.maximum(self.value(r0, narrow0, wide0), self.value(r1, narrow1, wide1))
            floor = np.maximum(floor, _group_max(corners, e, g))
            tp = np.maximum(self.tp_right[r1] - narrow0, 0)
            fp = np.maximum(self.fp_right[r0] - wide1, 0)
            keep = (bound[n - tp, fp] > floor[e]) & ((r1 > r0) | (j1 > j0 + 1))  # else: all evaluated
            if level + 1 == len(LEVELS) or not keep.any():
                return floor
            r0, r1, j0, j1 = r0[keep], r1[keep], j0[keep], j1[keep]
            hr, hj, (sr, sj) = *LEVELS[level + 1], (hr, hj)
            # the children: blocks of the next level's size that start inside the parent
            cr = r0[:, None, None] + hr * np.arange(-(-sr // hr))[None, :, None]
            cj = j0[:, None, None] + hj * np.arange(-(-sj // hj))[None, None, :]
            cr, cj = np.broadcast_arrays(cr, cj)
            pr1, pj1 = (np.broadcast_to(x[:, None, None], cr.shape) for x in (r1, j1))
            inside = (cr <= pr1) & (cj <= pj1)
            r0, j0 = cr[inside], cj[inside]
            r1, j1 = np.minimum(r0 + hr - 1, pr1[inside]), np.minimum(j0 + hj - 1, pj1[inside])
        return floor


def _medians(xs: np.ndarray, member: np.ndarray, n: int) -> np.ndarray:
    """Each row's median of the n values of xs (sorted) where MEMBER is set, as np.median
    computes it (the middle value, or the mean of the middle two)."""
    rank = np.cumsum(member, axis=1)
    a = np.take_along_axis(xs, np.argmax(rank > (n - 1) // 2, axis=1)[:, None], 1)[:, 0]
    if n % 2:
        return a
    b = np.take_along_axis(xs, np.argmax(rank > n // 2, axis=1)[:, None], 1)[:, 0]
    return np.mean(np.stack([a, b]), axis=0)


def _extremes(xs: np.ndarray, member: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's min and max of xs (sorted) where MEMBER is set."""
    rows = np.arange(len(xs))
    first = np.argmax(member, axis=1)
    last = member.shape[1] - 1 - np.argmax(member[:, ::-1], axis=1)
    return xs[rows, first], xs[rows, last]


def _epsilons(xs, is_retrain, n, table, bound, max_epsilon: float | None = None) -> np.ndarray:
    """ε_s of a batch of examples: row e of xs holds its 2n confidences sorted, is_retrain marks
    the retrained sample's.

    With ``max_epsilon`` (F's cut-off ceil(ln(N−1))), only F's points are needed: 2^−⌊ε/0.5⌋
    below the cut-off, 0 at or above it. The window search then stops at the cut-off and skips
    every block that cannot reach the next half-unit, so the value returned lies in the same
    half-unit (same points) as the exact ε, but may be below it."""
    retrain_is_pos = _medians(xs, is_retrain, n) > _medians(xs, ~is_retrain, n)  # ties: unlearned is pos
    pos = np.where(retrain_is_pos[:, None], is_retrain, ~is_retrain)
    pos_min, pos_max = _extremes(xs, pos)
    neg_min, neg_max = _extremes(xs, ~pos)
    pos_range, neg_range = pos_max - pos_min, neg_max - neg_min
    largest, smallest = np.maximum(pos_range, neg_range), np.minimum(pos_range, neg_range)
    eps = np.full(len(xs), EPSILON_CAP)
    with np.errstate(invalid="ignore", divide="ignore"):
        active = ~(smallest / largest < 0.01)  # 0/0 is nan: goes on, as official
    xs, pos = xs[active], pos[active]
    cum_pos = np.zeros((len(xs), 2 * n + 1), dtype=np.intp)
    np.cumsum(pos, axis=1, out=cum_pos[:, 1:])
    best = _threshold_max(xs, cum_pos, n, table)
    floor = best
    windows = np.ones(len(xs), dtype=bool)
    if max_epsilon is not None:
        windows = best < max_epsilon
        # only a window reaching the next half-unit changes the points
        floor = np.maximum(best, 0.5 * (np.floor(np.maximum(best, 0.0) / 0.5) + 1) - 1e-9)
    # window rules call the narrower sample pos (equal ranges: neg)
    narrow_is_neg = (pos_range >= neg_range)[active][windows]
    cum = np.where(narrow_is_neg[:, None], np.arange(2 * n + 1) - cum_pos[windows], cum_pos[windows])
    narrow_min = np.where(narrow_is_neg, neg_min[active][windows], pos_min[active][windows])
    narrow_max = np.where(narrow_is_neg, neg_max[active][windows], pos_max[active][windows])
    # ε ≤ 0 rules change nothing (ε is clipped at 0 below): a floor of 0 prunes them
    floor = np.maximum(floor, 0.0)
    best[windows] = _Windows(xs[windows], cum, narrow_min, narrow_max, n, table).best(floor[windows], bound)
    # max with 0: official asserts when every rule is ignored (both samples one equal
    # constant, indistinguishable); ε = 0 there.
    eps[active] = np.minimum(EPSILON_CAP, np.maximum(0.0, best))
    return eps


class _SortedModels:
    """Every example's confidences over a fixed set of models, sorted once: the ε of any two
    equal groups of these models then needs no sort (a rule's counts are counts of sets, so
    they do not depend on how ties are ordered). The permutation tests relabel the same models
    K times; one sort serves them all."""

    BATCH = 256  # examples at a time: the window search's arrays stay in cache-sized pieces

    def __init__(self, conf: np.ndarray, n: int, delta: float):
        values = np.ascontiguousarray(np.asarray(conf).T)  # (n_examples, n_models)
        self.order = np.argsort(values, axis=1, kind="stable")
        self.xs = np.take_along_axis(values, self.order, 1)
        self.n = n
        self.table = _epsilon_table(n, delta)
        self.bound = _suffix_max(self.table)
        # batches run in threads (numpy releases the GIL in its loops), one per core the job owns
        self.threads = min(job_cores(), -(-len(self.xs) // self.BATCH))

    def epsilons(self, first, second, cut_off: bool = False) -> np.ndarray:
        """ε_s per example of the models FIRST (the retrained side) against SECOND (n indices
        each); with cut_off, only exact up to F's points (see ``_epsilons``)."""
        n, m = self.n, self.xs.shape[1]
        is_first, used = np.zeros(m, dtype=bool), np.zeros(m, dtype=bool)
        is_first[first], used[first], used[second] = True, True, True
        if is_first.sum() != n or used.sum() != 2 * n:
            raise ValueError(f"need two disjoint groups of {n} models")
        max_epsilon = _max_epsilon(n) if cut_off else None
        out = np.empty(len(self.xs))

        def batch(s: int) -> None:
            order = self.order[s:s + self.BATCH]
            xs, f = self.xs[s:s + self.BATCH], is_first[order]
            if not used.all():
                u = used[order]
                xs, f = xs[u].reshape(len(xs), 2 * n), f[u].reshape(len(xs), 2 * n)
            out[s:s + self.BATCH] = _epsilons(xs, f, n, self.table, self.bound, max_epsilon)

        starts = range(0, len(self.xs), self.BATCH)
        if self.threads > 1:
            with ThreadPoolExecutor(self.threads) as pool:
                list(pool.map(batch, starts))
        else:
            for s in starts:
                batch(s)
        return out

    def quality(self, first, second) -> float:
        """F of FIRST (retrained side) against SECOND, as ``quality``."""
        return float(_points(self.epsilons(first, second, cut_off=True), self.n).mean())


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


def _max_epsilon(n: int) -> float:
    return float(np.ceil(np.log(n - 1)))


def per_example_epsilon(
    retrain_conf: np.ndarray, unlearn_conf: np.ndarray, delta: float = 1e-5
) -> np.ndarray:
    """ε_s per forget example (capped at 50): how well the best of the official decision
    rules tells the retrained sample from the unlearned one. Inputs (n_models, n_examples)."""
    retrain, unlearn = _checked(retrain_conf, unlearn_conf)
    n = len(retrain)
    return _SortedModels(np.concatenate([retrain, unlearn]), n, delta).epsilons(np.arange(n), np.arange(n, 2 * n))


def _points(eps: np.ndarray, n_models: int) -> np.ndarray:
    max_epsilon = np.ceil(np.log(n_models - 1))
    return np.where(eps < max_epsilon, 2.0 ** -np.floor(eps / 0.5), 0.0)


def forgetting_quality(
    retrain_conf: np.ndarray, unlearn_conf: np.ndarray, delta: float = 1e-5
) -> tuple[float, np.ndarray]:
    """(F, ε): F = mean over examples of 2^−⌊ε/0.5⌋, 0 from ceil(ln(N−1)) on, where N
    models can resolve no larger ε."""
    eps = per_example_epsilon(retrain_conf, unlearn_conf, delta)
    n_models = np.shape(unlearn_conf)[0]  # official: the unlearned side's count
    return float(_points(eps, n_models).mean()), eps


def quality(retrain_conf: np.ndarray, unlearn_conf: np.ndarray, delta: float = 1e-5) -> float:
    """F alone, equal to ``forgetting_quality``'s, several times faster: each example's rule
    search stops once its points are known (the permutation tests compute F thousands of times)."""
    retrain, unlearn = _checked(retrain_conf, unlearn_conf)
    n = len(retrain)
    return _SortedModels(np.concatenate([retrain, unlearn]), n, delta).quality(np.arange(n), np.arange(n, 2 * n))


# --------------------------------------------------------------------------------------------
# Is F distinguishable from what exchangeable models score? (permutation tests)

N_PERMUTATIONS = 49  # p-value resolution 1/50
NULL_BAND = (0.05, 0.95)


@dataclass(frozen=True)
class PermutationTest:
    """F of the observed labelling and F under K random relabellings of the 2N pooled models.

    Under H0 (unlearned and retrained models are exchangeable) every relabelling is as likely as
    the observed one, so F_null is F's distribution under H0 for these 2N models, with no extra
    training, and the p-value says how unusual the observed F is among them. The pool holds this
    method's own models, so the band moves with the method (an identity method's band is wider
    than the retrain control's): it is this test's null, not what a perfect method scores — that
    is the retrain control's F. Small F = distinguishable, so the test is one-sided.
    """

    F: float
    F_null: np.ndarray  # (K,)

    @property
    def n_permutations(self) -> int:
        return int(len(self.F_null))

    @property
    def p_value(self) -> float:
        """(1 + #{F_null ≤ F}) / (K + 1): exact (valid at every K) under H0; ties count against."""
        return float((1 + np.sum(self.F_null <= self.F)) / (self.n_permutations + 1))

    @property
    def resolution(self) -> float:
        """The smallest p-value K permutations can show: 1 / (K + 1)."""
        return 1.0 / (self.n_permutations + 1)

    def band(self, lo: float = NULL_BAND[0], hi: float = NULL_BAND[1]) -> tuple[float, float]:
        """Quantiles of F under H0 (default 5% and 95%)."""
        q = np.quantile(self.F_null, [lo, hi])
        return float(q[0]), float(q[1])

    def band_error(self, lo: float = NULL_BAND[0], hi: float = NULL_BAND[1]) -> float:
        """Monte-Carlo standard error of the band's ends (the larger of the two), distribution-free:
        the rank of a q-quantile among K draws varies by sqrt(K q (1 − q)), so half the spread of
        the order statistics that far either side of its rank."""
        x, k = np.sort(self.F_null), self.n_permutations

        def error(q: float) -> float:
            rank, sd = q * (k - 1), np.sqrt(k * q * (1 - q))
            a, b = int(np.clip(np.floor(rank - sd), 0, k - 1)), int(np.clip(np.ceil(rank + sd), 0, k - 1))
            return float(x[b] - x[a]) / 2

        return max(error(lo), error(hi))


def _check_permutations(n_permutations: int) -> int:
    if int(n_permutations) < 1:
        raise ValueError(f"n_permutations={n_permutations} must be ≥ 1 (the p-value's resolution is 1/(K+1))")
    return int(n_permutations)


def permutation_test(
    retrain_conf: np.ndarray, unlearn_conf: np.ndarray, n_permutations: int = N_PERMUTATIONS,
    seed: int = 0, delta: float = 1e-5,
) -> PermutationTest:
    """F and its null distribution from K random splits of the pooled 2N models into two groups
    of N (the models are the units: every example of a model moves with it)."""
    retrain, unlearn = _checked(retrain_conf, unlearn_conf)
    k = _check_permutations(n_permutations)
    n = len(retrain)
    pooled = _SortedModels(np.concatenate([retrain, unlearn]), n, delta)  # sorted once for all K + 1
    F = pooled.quality(np.arange(n), np.arange(n, 2 * n))
    rng = np.random.default_rng(seed)
    perms = [rng.permutation(2 * n) for _ in range(k)]
    null = np.array([pooled.quality(perm[:n], perm[n:]) for perm in perms])
    return PermutationTest(F, null)


def indistinguishability_test(
    retrain_conf: np.ndarray, unlearn_conf: np.ndarray, n_permutations: int = N_PERMUTATIONS,
    seed: int = 0, delta: float = 1e-5,
) -> tuple[float, float]:
    """(F, p-value) of H0 "unlearned and retrained models are exchangeable"; inputs as
    ``forgetting_quality``. p = (1 + #{F_null ≤ F}) / (K + 1); see ``permutation_test`` for the
    null band."""
    test = permutation_test(retrain_conf, unlearn_conf, n_permutations, seed, delta)
    return test.F, test.p_value


# --------------------------------------------------------------------------------------------
# Method against method: are A and B exchangeable (against the same retrained models)?

PAIR_STOP_AFTER = 10  # Besag–Clifford: stop a pair's permutations after this many exceedances


def pair_test(
    retrain_conf: np.ndarray, a_conf: np.ndarray, b_conf: np.ndarray, n_permutations: int,
    seed: int = 0, delta: float = 1e-5, stop_after: int | None = PAIR_STOP_AFTER,
) -> tuple[float, float, int]:
    """(F_A − F_B, two-sided p-value, permutations run) of H0 "A's and B's unlearned models are
    exchangeable", permuting the A/B labels of the 2N unlearned models; the retrained models
    stay fixed. The null of F_A − F_B is symmetric (a swap negates it), hence |·|.

    Sequential Monte Carlo p-value (Besag & Clifford 1991): stop after ``stop_after``
    exceedances h at permutation l, p = h / l; else p = (1 + #exceedances) / (K + 1). Valid
    either way; pairs that are plainly indistinguishable cost ~h / p permutations instead of K.
    """
    retrain, a = _checked(retrain_conf, a_conf)
    _, b = _checked(retrain_conf, b_conf)
    k = _check_permutations(n_permutations)
    n = len(a)
    models = _SortedModels(np.concatenate([retrain, a, b]), n, delta)  # sorted once for every F
    ref = np.arange(n)
    F_a, F_b = models.quality(ref, n + np.arange(n)), models.quality(ref, 2 * n + np.arange(n))
    observed = abs(F_a - F_b)
    rng = np.random.default_rng(seed)
    exceed = 0
    for run in range(1, k + 1):
        perm = n + rng.permutation(2 * n)  # A and B's models, relabelled
        d = models.quality(ref, perm[:n]) - models.quality(ref, perm[n:])
        exceed += abs(d) >= observed - 1e-12  # ties (F is a mean of powers of 2) count against
        if stop_after is not None and exceed >= stop_after:
            return F_a - F_b, exceed / run, run
    return F_a - F_b, (1 + exceed) / (k + 1), k


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment of a symmetric matrix of pairwise p-values (each unordered pair
    once; the diagonal stays 1). Controls the family-wise error rate over all pairs at any
    dependence between the tests."""
    p = np.asarray(p_values, dtype=float)
    iu = np.triu_indices(len(p), 1)
    raw = p[iu]
    order = np.argsort(raw, kind="stable")
    m = len(raw)
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * raw[order]))
    out = np.ones_like(p)
    out[iu] = adjusted
    out[iu[::-1]] = adjusted
    return out


def permutations_for(n_pairs: int, alpha: float = 0.05) -> int:
    """The smallest K at which Holm over n_pairs can still reject at alpha: 1/(K+1) ≤ alpha/n_pairs."""
    return max(N_PERMUTATIONS, int(np.ceil(n_pairs / alpha)) - 1)


@dataclass(frozen=True)
class PairwiseTests:
    """Every pair of methods tested against the same retrained models."""

    names: tuple[str, ...]
    F: np.ndarray  # (k,) each method's F
    p_values: np.ndarray  # (k, k) raw two-sided p-values, symmetric, diagonal 1
    n_run: np.ndarray  # (k, k) permutations run per pair (sequential stopping)

    @property
    def adjusted(self) -> np.ndarray:
        """Holm-adjusted p-values (family: all pairs)."""
        return holm(self.p_values)

    def groups(self, alpha: float = 0.05) -> list[tuple[str, ...]]:
        """Groups of methods not told apart at family-wise level alpha (Holm): the maximal sets
        in which no pair is rejected. A method may sit in several groups (the relation is not
        transitive), as in a compact letter display; ordered by the group's best F."""
        return indistinguishable_groups(self.names, self.adjusted, alpha, self.F)


def indistinguishable_groups(
    names, adjusted_p: np.ndarray, alpha: float = 0.05, F: np.ndarray | None = None
) -> list[tuple[str, ...]]:
    """Maximal cliques of the graph "pair not rejected at alpha" over adjusted p-values; each
    group's names sorted by F (highest first, when given), groups by their best member."""
    import networkx as nx

    names = list(names)
    F = np.zeros(len(names)) if F is None else np.asarray(F, dtype=float)
    graph = nx.Graph()
    graph.add_nodes_from(range(len(names)))
    p = np.asarray(adjusted_p)
    graph.add_edges_from((i, j) for i in range(len(names)) for j in range(i + 1, len(names)) if p[i, j] > alpha)
    cliques = [sorted(c, key=lambda i: (-F[i], i)) for c in nx.find_cliques(graph)]
    cliques.sort(key=lambda c: (-F[c[0]], c[0], len(c)))
    return [tuple(names[i] for i in c) for c in cliques]


def pairwise_tests(
    retrain_conf: np.ndarray, unlearn_confs: dict[str, np.ndarray], n_permutations: int | None = None,
    seed: int = 0, delta: float = 1e-5, alpha: float = 0.05, stop_after: int | None = PAIR_STOP_AFTER,
) -> PairwiseTests:
    """Method against method: pair_test for every pair of {name: (N, n_examples) confidences}
    (same retrained models). n_permutations None: ``permutations_for`` the number of pairs, so
    that Holm at alpha can reject. Pair (i, j) uses seed + a pair index: reproducible."""
    names = tuple(unlearn_confs)
    if len(names) < 2:
        raise ValueError(f"method-vs-method tests need ≥ 2 methods, got {list(names)}")
    k = len(names)
    n_pairs = k * (k - 1) // 2
    K = permutations_for(n_pairs, alpha) if n_permutations is None else _check_permutations(n_permutations)
    retrain = np.asarray(retrain_conf, dtype=np.float64)
    F = np.array([quality(retrain, unlearn_confs[m], delta) for m in names])
    p, runs = np.ones((k, k)), np.zeros((k, k), dtype=int)
    pair = 0
    for i in range(k):
        for j in range(i + 1, k):
            _, p[i, j], runs[i, j] = pair_test(
                retrain, unlearn_confs[names[i]], unlearn_confs[names[j]], K, seed + pair, delta, stop_after
            )
            p[j, i], runs[j, i] = p[i, j], runs[i, j]
            pair += 1
    return PairwiseTests(names, F, p, runs)


SCORE_READS = ("retain/acc", "test/acc")  # the accuracies audit/score discounts F by


def final_score(F: float, ra_u: float, ra_r: float, ta_u: float, ta_r: float) -> float:
    """Forgetting quality discounted by the utility lost relative to retraining."""
    return float(F * (ra_u / ra_r) * (ta_u / ta_r))


class CompetitionAudit:
    """The challenge's ε audit of the unlearned models against the retrained ones, with the
    permutation test of "unlearned and retrained are exchangeable" (its p-value and F's null band)."""

    name = "competition"
    # F, its band and p-value read the forget logits; audit/score also needs both sides' retain/acc
    # and test/acc (SCORE_READS), and is left out where the models have no retain accuracy
    reads = frozenset({"forget"})
    metrics: ClassVar[tuple[Metric, ...]] = (
        Metric("audit/F", "forgetting quality of the competition ε audit, mean of 2^−⌊ε/0.5⌋ over forget "
               "examples; 0–1, higher is better; what a perfect method scores is the retrain control's F",
               goal="max", headline=True),
        Metric("audit/F_null_lo", "5% quantile of F over random relabellings of this method's 2N models (its own "
               "and the retrained ones): the permutation null of this method's test, which moves with the method; "
               "printed to the digits audit/F_null_se allows", headline=True, error="audit/F_null_se"),
        Metric("audit/F_null_hi", "95% quantile of F over those relabellings (this method's permutation null)",
               headline=True, error="audit/F_null_se"),
        Metric("audit/F_null_se", "Monte-Carlo standard error of the null band's ends from K relabellings "
               "(n_permutations): more relabellings, more digits", group="Competition ε"),
        Metric("audit/p_value", "permutation p-value of H0 'unlearned and retrained models are exchangeable' "
               "(small F = distinguishable); < 0.05: told apart from retraining at this N, this method alone "
               "(audit/p_value_holm: over the table); resolution 1/(n_permutations+1); a large p-value is no "
               "proof of equivalence; no direction to optimise", headline=True),
        Metric("audit/score", "competition score F × (RA_U/RA_R) × (TA_U/TA_R); higher is better",
               goal="max", headline=True),
        Metric("audit/eps_mean", "mean per-example ε of the competition audit (capped at 50); lower is better, "
               "but ≈ 1.4–1.6 even for a perfect method at every N (a maximum over ~10^5 rules)",
               goal="min", group="Competition ε"),
        Metric("audit/eps", "per-example ε of the competition audit (forget examples)", array=True),
    )

    def __init__(self, delta: float = 1e-5, n_permutations: int | None = N_PERMUTATIONS, seed: int = 0):
        n_permutations = N_PERMUTATIONS if n_permutations is None else n_permutations  # None: the study sizes it
        if int(n_permutations) < 0:
            raise ValueError(f"audit.competition.n_permutations={n_permutations} must be ≥ 0 (0: no p-value)")
        self.delta, self.n_permutations, self.seed = delta, int(n_permutations), int(seed)

    def __call__(self, inp: AuditInput) -> dict[str, Any]:
        retrain, unlearn = forget_confidences(inp)
        F, eps = forgetting_quality(retrain, unlearn, self.delta)
        u, r = inp.unlearn.metrics, inp.retrain.metrics
        out: dict[str, Any] = {"audit/F": F}
        if all(k in m for m in (u, r) for k in SCORE_READS):  # logits from elsewhere may lack retain
            out["audit/score"] = final_score(
                F,
                np.mean(u["retain/acc"]),
                np.mean(r["retain/acc"]),
                np.mean(u["test/acc"]),
                np.mean(r["test/acc"]),
            )
        out["audit/eps_mean"] = float(eps.mean())
        if self.n_permutations:
            test = permutation_test(retrain, unlearn, self.n_permutations, self.seed, self.delta)
            lo, hi = test.band()
            out.update({"audit/p_value": test.p_value, "audit/F_null_lo": lo, "audit/F_null_hi": hi,
                        "audit/F_null_se": test.band_error()})
        out["audit/eps"] = eps
        return out


def benchmark(n_examples: int = 5000, n_models: int = 512, seed: int = 0) -> float:
    """Seconds for forgetting_quality at a given scale (official: 5,000 × (512 + 512))."""
    rng = np.random.default_rng(seed)
    retrain = rng.standard_normal((n_models, n_examples))
    unlearn = rng.standard_normal((n_models, n_examples))
    start = time.perf_counter()
    forgetting_quality(retrain, unlearn)
    return time.perf_counter() - start
