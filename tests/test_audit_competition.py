"""The competition ε audit against a slow reference written straight from SPECS §1 / metric.py."""

from __future__ import annotations

import math

import numpy as np
import pytest

from unlearnlab.audits.base import AuditInput, ModelOutputs
from unlearnlab.audits.competition import (
    CompetitionAudit,
    final_score,
    forgetting_quality,
    logit_scaled_confidence,
    per_example_epsilon,
)


def _rule_eps(fnr, fpr, delta=1e-5):
    """ε of one rule from its error rates, or None when the rule is ignored."""
    if fnr == 0 and fpr == 0:
        return math.inf
    if fnr == 0 or fpr == 0:
        return None
    terms = [
        math.log(1 - delta - fpr) - math.log(fnr) if 1 - delta - fpr > 0 else None,
        math.log(1 - delta - fnr) - math.log(fpr) if 1 - delta - fnr > 0 else None,
    ]
    terms = [t for t in terms if t is not None]
    return max(0.0, *terms) if terms else None


def _rates(pred_pos_of_pos, pred_pos_of_neg):
    """(FNR, FPR) of each rule: one row of predictions per rule."""
    fnr = np.mean(~pred_pos_of_pos, axis=-1).tolist()
    fpr = np.mean(pred_pos_of_neg, axis=-1).tolist()
    return set(zip(fnr, fpr))


def _reference_example(retrain, unlearn, delta=1e-5):
    """Every rule on its own (rules with equal rates share one ε, so each pair is scored once)."""
    pos, neg = (retrain, unlearn) if np.median(retrain) > np.median(unlearn) else (unlearn, retrain)
    pos_range, neg_range = np.ptp(pos), np.ptp(neg)
    with np.errstate(invalid="ignore", divide="ignore"):
        if min(pos_range, neg_range) / max(pos_range, neg_range) < 0.01:
            return 50.0
    lo, hi = min(pos.min(), neg.min()), max(pos.max(), neg.max())
    t = np.linspace(lo, hi, math.ceil((hi - lo) * 100))[:, None]
    rates = _rates(pos >= t, neg >= t)
    if pos_range >= neg_range:
        pos, neg = neg, pos
    width = np.ptp(pos)
    r_lo, r_hi = pos.min() + width - 2, pos.max() + 2
    for r in np.linspace(r_lo, r_hi, math.ceil((r_hi - r_lo) * 100)):
        left = np.linspace(r - width - 2, r - width + 2, 400)[:, None]
        rates |= _rates((left <= pos) & (pos <= r), (left <= neg) & (neg <= r))
    eps = [_rule_eps(fnr, fpr, delta) for fnr, fpr in rates]
    return min(50.0, max([0.0, *(e for e in eps if e is not None)]))


def _reference_eps(retrain, unlearn, delta=1e-5):
    return np.array([_reference_example(r, u, delta) for r, u in zip(retrain.T, unlearn.T)])


def _reference_quality(eps, n_models):
    cap = math.ceil(math.log(n_models - 1))
    return float(np.mean([2.0 ** -math.floor(e / 0.5) if e < cap else 0.0 for e in eps]))


def _random_case(seed):
    """Small samples with ties, equal ranges and both kinds of separation."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(8, 21))
    retrain = rng.normal(size=(n, 6))
    unlearn = rng.normal(rng.uniform(-1.5, 1.5, 6), rng.uniform(0.3, 2.0, 6), size=(n, 6))
    unlearn[:, 1] = retrain[::-1, 1] + 0.7  # equal ranges
    retrain[: n // 2, 2] = retrain[0, 2]  # ties inside a sample
    unlearn[:, 3] = np.round(unlearn[:, 3], 1)  # ties across the samples
    retrain[:, 3] = np.round(retrain[:, 3], 1)
    unlearn[:, 4] = retrain[:, 4]  # identical samples, tied medians
    unlearn[:, 5] = 0.3 * retrain[:, 5] + 0.2  # a narrow sample: l > r windows occur
    return retrain, unlearn


@pytest.mark.parametrize("seed", range(5))
def test_matches_reference(seed):
    retrain, unlearn = _random_case(seed)
    F, eps = forgetting_quality(retrain, unlearn)
    expected = _reference_eps(retrain, unlearn)
    np.testing.assert_allclose(eps, expected, rtol=0, atol=1e-12)
    assert F == pytest.approx(_reference_quality(expected, retrain.shape[0]), abs=1e-15)


def test_matches_reference_on_rounded_large_samples():
    """Many ties on a coarse grid at a realistic N exercise the block pruning."""
    rng = np.random.default_rng(7)
    retrain = np.round(rng.normal(size=(64, 3)), 1)
    unlearn = np.round(rng.normal(0.3, 1.2, size=(64, 3)), 1)
    np.testing.assert_allclose(
        per_example_epsilon(retrain, unlearn), _reference_eps(retrain, unlearn), rtol=0, atol=1e-12
    )


def _grid(lo, hi):
    return np.linspace(lo, hi, math.ceil((hi - lo) * 100))


def _windows(narrow):
    """Right ends and, per right end, left ends of the window rules, built as the reference does."""
    width = np.ptp(narrow)
    rights = _grid(narrow.min() + width - 2, narrow.max() + 2)
    return rights, np.stack([np.linspace(r - width - 2, r - width + 2, 400) for r in rights])


def _spread(rng, lo, hi, n=8):
    return np.r_[lo, np.sort(rng.uniform(lo, hi, n - 2)), hi]


def _hinge_right(rng):
    """The wide sample starts exactly on the first right end past the narrow one: a window
    would separate the two only if conf ≤ r excluded r, so ε stays finite."""
    while True:
        narrow = _spread(rng, lo := rng.uniform(-1, 1), lo + rng.uniform(1.0, 1.5))
        rights, _ = _windows(narrow)
        z = rights[rights > narrow.max()].min()
        wide = _spread(rng, z, z + rng.uniform(2.5, 3.5))
        t = _grid(narrow.min(), wide.max())
        if narrow.max() not in rights and not np.any((t > narrow.max()) & (t <= z)):
            return narrow, wide


def _hinge_left(rng):
    """Only windows whose left end equals the narrow sample's minimum separate (l ≤ conf);
    the wide sample ends one ulp below it."""
    while True:
        narrow = _spread(rng, lo := rng.uniform(-1, 1), lo + rng.uniform(1.0, 1.5))
        rights, lefts = _windows(narrow)
        z = np.nextafter(lo, -np.inf)
        wide = _spread(rng, z - rng.uniform(2.5, 3.5), z)
        thresholds = _grid(wide.min(), narrow.max())
        if lo in lefts[rights >= narrow.max()] and lo not in thresholds:
            return narrow, wide


def _hinge_threshold(rng):
    """Only the threshold equal to the upper sample's minimum separates (conf ≥ t): the
    extremes fix the grid, the lower (narrower) sample ends one ulp below that threshold."""
    while True:
        bottom, top = rng.uniform(-3, -2), rng.uniform(2, 3)
        t = _grid(bottom, top)
        lo = t[np.abs(t - rng.uniform(-0.5, 0.5)).argmin()]
        z = np.nextafter(lo, -np.inf)
        upper, lower = _spread(rng, lo, top), _spread(rng, bottom, z)
        if np.ptp(lower) < np.ptp(upper) and z not in _windows(lower)[0]:
            return upper, lower


@pytest.mark.parametrize(
    "build, capped", [(_hinge_right, False), (_hinge_left, True), (_hinge_threshold, True)]
)
def test_rule_boundaries_are_inclusive_as_official(build, capped):
    """≥ t, ≤ r and l ≤ conf decide perfect separation here: a count off by one flips ε."""
    pairs = [build(np.random.default_rng(seed)) for seed in range(2)]
    retrain = np.stack([pairs[0][0], pairs[1][1]], axis=1)  # each side plays both roles
    unlearn = np.stack([pairs[0][1], pairs[1][0]], axis=1)
    eps = per_example_epsilon(retrain, unlearn)
    np.testing.assert_array_equal(eps, _reference_eps(retrain, unlearn))
    assert np.all((eps == 50.0) == capped)


def test_tied_medians_make_the_unlearned_sample_pos():
    """Same median, different spread: which sample is pos changes the threshold rules' ε."""
    rng = np.random.default_rng(0)
    retrain = rng.normal(size=(15, 20))
    unlearn = rng.normal(size=(15, 20)) * rng.uniform(0.3, 3, 20)
    unlearn = (unlearn - np.median(unlearn, axis=0) + np.median(retrain, axis=0))[:, 9:13]
    retrain = retrain[:, 9:13]
    assert np.array_equal(np.median(retrain, axis=0), np.median(unlearn, axis=0))
    expected = _reference_eps(retrain, unlearn)
    assert not np.array_equal(expected, _reference_eps(unlearn, retrain))
    np.testing.assert_allclose(per_example_epsilon(retrain, unlearn), expected, rtol=0, atol=1e-12)


def test_disjoint_samples_hit_the_cap():
    rng = np.random.default_rng(0)
    retrain = rng.normal(size=(20, 5))
    unlearn = retrain + 100.0 + np.ptp(retrain)
    eps = per_example_epsilon(retrain, unlearn)
    np.testing.assert_array_equal(eps, 50.0)
    assert forgetting_quality(retrain, unlearn)[0] == 0.0


def test_peaky_sample_hits_the_cap():
    rng = np.random.default_rng(1)
    retrain = rng.normal(size=(20, 3))
    unlearn = 0.001 * rng.normal(size=(20, 3))  # range ratio well below 0.01
    np.testing.assert_array_equal(per_example_epsilon(retrain, unlearn), 50.0)


def test_identical_distributions_give_the_published_quality():
    rng = np.random.default_rng(2)
    F, eps = forgetting_quality(rng.normal(size=(512, 200)), rng.normal(size=(512, 200)))
    assert 0.15 < F < 0.3
    assert eps.shape == (200,)


def test_three_sd_shift_is_caught():
    rng = np.random.default_rng(3)
    F, _ = forgetting_quality(rng.normal(size=(512, 100)), rng.normal(3.0, 1.0, size=(512, 100)))
    assert F < 0.02


def test_logit_scaled_confidence_by_hand():
    labels = np.array([0, 0, 2])
    logits = np.array([[0.0, 0.0, -np.inf], [np.log(3), 0.0, -np.inf], [1.0, 2.0, 3.0]])
    conf = logit_scaled_confidence(logits, labels)
    p = np.exp([1.0, 2.0, 3.0]) / np.exp([1.0, 2.0, 3.0]).sum()
    np.testing.assert_allclose(conf, [0.0, np.log(3), np.log(p[2] / (p[0] + p[1]))], atol=1e-12)
    two_class = logit_scaled_confidence(np.array([[0.0, 0.0], [np.log(3), 0.0]]), np.array([0, 1]))
    np.testing.assert_allclose(two_class, [0.0, -np.log(3)], atol=1e-12)


def test_logit_scaled_confidence_broadcasts_over_models():
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(3, 5, 4)).astype(np.float32)
    labels = rng.integers(0, 4, 5)
    stacked = logit_scaled_confidence(logits, labels)
    assert stacked.shape == (3, 5) and stacked.dtype == np.float64
    np.testing.assert_array_equal(stacked[1], logit_scaled_confidence(logits[1], labels))


def test_logit_scaled_confidence_saturates_instead_of_overflowing():
    conf = logit_scaled_confidence(np.array([[1000.0, 0.0], [0.0, 1000.0]]), np.array([0, 0]))
    np.testing.assert_allclose(conf, [-np.log(1e-45), np.log(1e-45)], rtol=1e-12)


def test_final_score_arithmetic():
    assert final_score(0.2, 0.9, 1.0, 0.8, 0.5) == pytest.approx(0.2 * 0.9 * 1.6)


@pytest.mark.parametrize(
    "retrain_shape, unlearn_shape",
    [((4, 3, 1), (4, 3, 1)), ((4, 3), (4, 2)), ((1, 3), (1, 3)), ((4, 3), (5, 3)), ((4,), (4,))],
)
def test_bad_shapes_raise(retrain_shape, unlearn_shape):
    with pytest.raises(ValueError):
        forgetting_quality(np.zeros(retrain_shape), np.ones(unlearn_shape))


def test_competition_audit_on_a_tiny_input():
    rng = np.random.default_rng(5)
    n_models, n_forget, n_classes = 10, 4, 3
    labels = {
        "forget": rng.integers(0, n_classes, n_forget),
        "test": np.zeros(2, int),
        "retain": np.zeros(2, int),
    }

    def outputs(shift, retain_acc, test_acc):
        return ModelOutputs(
            forget=rng.normal(size=(n_models, n_forget, n_classes)) + shift,
            test=np.zeros((n_models, 2, n_classes)),
            retain=np.zeros((n_models, 2, n_classes)),
            metrics={
                "retain/acc": np.full(n_models, retain_acc),
                "test/acc": np.full(n_models, test_acc),
            },
        )

    inp = AuditInput(labels=labels, retrain=outputs(0.0, 1.0, 0.8), unlearn=outputs(0.0, 0.9, 0.6))
    out = CompetitionAudit(delta=1e-5)(inp)
    conf_r = logit_scaled_confidence(inp.retrain.forget, labels["forget"])
    conf_u = logit_scaled_confidence(inp.unlearn.forget, labels["forget"])
    expected = _reference_eps(conf_r, conf_u)
    np.testing.assert_allclose(out["audit/eps"], expected, rtol=0, atol=1e-12)
    F = _reference_quality(expected, n_models)
    assert out["audit/F"] == pytest.approx(F)
    assert out["audit/score"] == pytest.approx(F * 0.9 * 0.75)
    assert out["audit/eps_mean"] == pytest.approx(expected.mean())
    assert CompetitionAudit.name == "competition"
