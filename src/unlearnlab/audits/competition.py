"""The official NeurIPS 2023 unlearning-challenge ε audit, exact and fast.

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
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from unlearnlab.audits.base import AuditInput
from unlearnlab.metrics import Metric

EPSILON_CAP = 50.0
RULES_PER_UNIT = 100
BUFFER = 2.0
N_LEFT = int(np.ceil(2 * BUFFER * RULES_PER_UNIT))  # left ends per right end: 400
BLOCK = 20  # window rules per pruning block along the left ends
_BLOCK_ENDS = np.r_[np.arange(0, N_LEFT - 1, BLOCK), N_LEFT - 1]
SUPER = 5  # blocks per super-block (first pruning pass)
_SUPER_ENDS = _BLOCK_ENDS[::SUPER]


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


def _threshold_max(xs, cum_pos, n, table) -> float:
    """Best single-threshold rule: predict pos iff conf ≥ t."""
    # Official builds this grid with torch.linspace in float32; float64 here.
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
        """Max ε over all windows, or `floor` if none beats it; skips blocks bounded by it.

        Along a row l grows, so fn grows and fp shrinks: a run of left ends has fn ≥ fn at its
        first and fp ≥ fp at its last. Pruned in two passes: super-blocks of SUPER blocks, then
        the blocks inside the super-blocks that survive, then single rules."""
        rows = np.arange(len(self.starts))[:, None]
        tp, fp = self.counts(rows, _SUPER_ENDS[None, :])
        floor = max(floor, float(self.table[self.n - tp, fp].max()))
        row, sup = np.nonzero(bound[self.n - tp[:, :-1], fp[:, 1:]] > floor)
        if len(row) == 0:
            return floor
        ends = sup[:, None] * SUPER + np.arange(SUPER + 1)  # indices into _BLOCK_ENDS
        tp, fp = self.counts(row[:, None], _BLOCK_ENDS[ends])
        floor = max(floor, float(self.table[self.n - tp, fp].max()))
        keep, block = np.nonzero(bound[self.n - tp[:, :-1], fp[:, 1:]] > floor)
        if len(keep) == 0:
            return floor
        j = np.minimum(_BLOCK_ENDS[ends[keep, block]][:, None] + np.arange(1, BLOCK), N_LEFT - 1)
        tp, fp = self.counts(row[keep][:, None], j)
        return max(floor, float(self.table[self.n - tp, fp].max()))


def _example_epsilon(retrain, unlearn, table, bound, max_epsilon: float | None = None,
                     retrain_is_pos: bool | None = None) -> float:
    """ε_s of one forget example from its two samples of n confidences.

    With ``max_epsilon`` (F's cut-off ceil(ln(N−1))), only F's points are needed: 2^−⌊ε/0.5⌋
    below the cut-off, 0 at or above it. The window search then stops at the cut-off and skips
    every block that cannot reach the next half-unit, so the value returned lies in the same
    half-unit (same points) as the exact ε, but may be below it."""
    n = len(retrain)
    if retrain_is_pos is None:
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
    floor = best
    if max_epsilon is not None:
        if best >= max_epsilon:
            return min(EPSILON_CAP, best)
        # only a window reaching the next half-unit changes the points
        floor = max(best, 0.5 * (np.floor(max(best, 0.0) / 0.5) + 1) - 1e-9)
    narrow = pos
    if pos_range >= neg_range:  # window rules call the narrower sample pos (equal: swap)
        narrow, cum_pos = neg, np.arange(2 * n + 1) - cum_pos
    best = _Windows(xs, cum_pos, narrow, n, table).best(floor, bound)
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
    retrain_is_pos = np.median(retrain, axis=0) > np.median(unlearn, axis=0)  # ties: unlearned is pos
    retrain, unlearn = np.ascontiguousarray(retrain.T), np.ascontiguousarray(unlearn.T)
    return np.array([
        _example_epsilon(r, u, table, bound, None, p) for r, u, p in zip(retrain, unlearn, retrain_is_pos)
    ])


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
    n = retrain.shape[0]
    table = _epsilon_table(n, delta)
    bound = _suffix_max(table)
    max_epsilon = float(np.ceil(np.log(n - 1)))
    retrain_is_pos = np.median(retrain, axis=0) > np.median(unlearn, axis=0)  # ties: unlearned is pos
    retrain, unlearn = np.ascontiguousarray(retrain.T), np.ascontiguousarray(unlearn.T)
    eps = np.array([
        _example_epsilon(r, u, table, bound, max_epsilon, p) for r, u, p in zip(retrain, unlearn, retrain_is_pos)
    ])
    return float(_points(eps, n).mean())


# --------------------------------------------------------------------------------------------
# Is F distinguishable from what exchangeable models score? (permutation tests)

N_PERMUTATIONS = 49  # p-value resolution 1/50; ~0.05 CPU s per F at N = 16, 144 examples: ~2.5 s per method
NULL_BAND = (0.05, 0.95)


def _split_f(pooled: np.ndarray, perm: np.ndarray, n: int, delta: float) -> float:
    return quality(pooled[perm[:n]], pooled[perm[n:]], delta)


@dataclass(frozen=True)
class PermutationTest:
    """F of the observed labelling and F under K random relabellings of the 2N pooled models.

    Under H0 (unlearned and retrained models are exchangeable) every relabelling is as likely as
    the observed one, so F_null is F's distribution at this N for a perfect method, with no extra
    training: the 5–95% band is what a perfect method scores here, the p-value how unusual the
    observed F is among them. Small F = distinguishable, so the test is one-sided.
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
    F = quality(retrain, unlearn, delta)
    pooled = np.concatenate([retrain, unlearn])
    rng = np.random.default_rng(seed)
    null = np.array([_split_f(pooled, rng.permutation(2 * n), n, delta) for _ in range(k)])
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
    F_a, F_b = quality(retrain, a, delta), quality(retrain, b, delta)
    observed = abs(F_a - F_b)
    pooled = np.concatenate([a, b])
    rng = np.random.default_rng(seed)
    exceed = 0
    for run in range(1, k + 1):
        perm = rng.permutation(2 * n)
        d = quality(retrain, pooled[perm[:n]], delta) - quality(retrain, pooled[perm[n:]], delta)
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
               "examples; 0–1, higher is better; a perfect method scores inside audit/F_null_lo–hi",
               goal="max", headline=True),
        Metric("audit/F_null_lo", "5% quantile of F when unlearned and retrained models are exchangeable "
               "(random relabellings of the 2N models): the low end of what a perfect method scores at this N",
               headline=True),
        Metric("audit/F_null_hi", "95% quantile of F under exchangeability: the high end of what a perfect "
               "method scores at this N", headline=True),
        Metric("audit/p_value", "permutation p-value of H0 'unlearned and retrained models are exchangeable' "
               "(small F = distinguishable); < 0.05: told apart from retraining at this N; resolution "
               "1/(n_permutations+1); a large p-value is no proof of equivalence", goal="max", headline=True),
        Metric("audit/score", "competition score F × (RA_U/RA_R) × (TA_U/TA_R); higher is better",
               goal="max", headline=True),
        Metric("audit/eps_mean", "mean per-example ε of the competition audit (capped at 50); lower is better, "
               "but ≈ 1.4–1.6 even for a perfect method at every N (a maximum over ~10^5 rules)",
               goal="min", group="Competition ε"),
        Metric("audit/eps", "per-example ε of the competition audit (forget examples)", array=True),
    )

    def __init__(self, delta: float = 1e-5, n_permutations: int = N_PERMUTATIONS, seed: int = 0):
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
            out.update({"audit/p_value": test.p_value, "audit/F_null_lo": lo, "audit/F_null_hi": hi})
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
