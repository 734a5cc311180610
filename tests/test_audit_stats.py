"""The audit's statistics (SPECS §5) on synthetic studies with known answers: the permutation
test's type-I error and power, method-vs-method tests and their grouping, and the ε lower bound's
validity (null, known-ε mechanisms) and resolution."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import brentq
from scipy.stats import norm

from unlearnlab.audits.competition import (
    PermutationTest, forgetting_quality, holm, indistinguishability_test, indistinguishable_groups, pair_test,
    pairwise_tests, permutation_test, permutations_for, quality,
)
from unlearnlab.audits.lower_bound import (
    certificate_verdict, epsilon_lower_bound, lower_bound_details, max_epsilon_lower_bound, models_needed,
)


def _study(rng, n, n_examples, shift=0.0, model_sd=0.5, example_sd=1.0):
    """Confidences of n retrained and n unlearned models: per-example means, a random effect per
    model (models differ as a whole), example noise; the unlearned side shifted by `shift` sd."""
    base = rng.normal(0, 2, n_examples)

    def side(s):
        return base + s + model_sd * rng.standard_normal((n, 1)) + example_sd * rng.standard_normal((n, n_examples))

    return side(0.0), side(shift)


# ---------------------------------------------------------------------------------- permutation


def test_quality_equals_forgetting_quality_exactly():
    rng = np.random.default_rng(0)
    for n in (3, 5, 8, 16, 40):
        for shift in (0.0, 0.4, 1.5, 4.0):
            r, u = _study(rng, n, 25, shift, model_sd=rng.uniform(0, 1), example_sd=rng.uniform(0.2, 2))
            if shift == 1.5:
                r, u = np.round(r, 1), np.round(u, 1)  # ties
            assert quality(r, u) == forgetting_quality(r, u)[0]


def test_p_value_resolution_and_band_by_hand():
    t = PermutationTest(F=0.1, F_null=np.array([0.05, 0.1, 0.2, 0.3]))
    assert t.p_value == pytest.approx(3 / 5)  # 1 + #{0.05, 0.1 ≤ 0.1}, ties count against
    assert t.resolution == pytest.approx(1 / 5)
    assert t.band(0.0, 1.0) == (0.05, 0.3)
    lo, hi = PermutationTest(0.0, np.linspace(0, 1, 101)).band()
    assert (lo, hi) == pytest.approx((0.05, 0.95))


def test_type_one_error_under_exchangeable_models():
    """H0 true (same distribution): rejected at 5% in ≤ 3 of 30 studies (expected 1.5)."""
    rng = np.random.default_rng(1)
    p = [indistinguishability_test(*_study(rng, 8, 20), n_permutations=19, seed=s)[1] for s in range(30)]
    assert min(p) >= 1 / 20  # the resolution
    rejected = sum(x <= 0.05 for x in p)
    assert rejected <= 3
    assert 0.35 < float(np.mean(p)) < 0.65  # p is uniform-ish under H0


def test_power_against_a_whole_model_shift():
    """A 1.5-sd shift at N = 8, 20 examples: 11 of 12 studies at the smallest p-value 1/(K+1);
    a 1-sd shift is caught less often at this N."""
    def p_values(shift):
        rng = np.random.default_rng(2)
        return np.array([
            indistinguishability_test(*_study(rng, 8, 20, shift=shift), n_permutations=19, seed=s)[1]
            for s in range(12)
        ])

    assert np.sum(p_values(1.5) <= 0.05) == 11
    assert np.sum(p_values(1.0) <= 0.05) == 6


def test_identical_unlearned_models_are_rejected_and_band_covers_the_control():
    rng = np.random.default_rng(3)
    r, u = _study(rng, 8, 20)
    same = np.repeat(u[:1], 8, axis=0)  # identity: N copies of one model
    test = permutation_test(r, same, n_permutations=19, seed=0)
    assert test.F == 0.0 and test.p_value == pytest.approx(0.05)
    control = permutation_test(r, u, n_permutations=39, seed=0)
    lo, hi = control.band()
    assert lo <= control.F <= hi
    assert 0.05 < lo < hi < 0.6


def test_permutation_test_is_seeded_and_checks_k():
    rng = np.random.default_rng(4)
    r, u = _study(rng, 6, 10)
    a, b = permutation_test(r, u, 9, seed=3), permutation_test(r, u, 9, seed=3)
    np.testing.assert_array_equal(a.F_null, b.F_null)
    with pytest.raises(ValueError, match="n_permutations"):
        permutation_test(r, u, 0)


# ------------------------------------------------------------------------------ method vs method


def test_holm_by_hand():
    p = np.ones((3, 3))
    p[0, 1] = p[1, 0] = 0.01
    p[0, 2] = p[2, 0] = 0.04
    p[1, 2] = p[2, 1] = 0.03
    adj = holm(p)
    # sorted 0.01, 0.03, 0.04 -> 3*0.01, 2*0.03, max(0.06, 1*0.04)
    assert adj[0, 1] == pytest.approx(0.03) and adj[1, 2] == pytest.approx(0.06)
    assert adj[0, 2] == pytest.approx(0.06) and adj[2, 0] == adj[0, 2]
    assert np.all(np.diag(adj) == 1)


def test_groups_are_maximal_cliques_ordered_by_f():
    names = ("a", "b", "c", "d")
    p = np.ones((4, 4))
    for i, j in ((0, 2), (0, 3), (1, 3)):  # rejected pairs: a-c, a-d, b-d
        p[i, j] = p[j, i] = 0.001
    groups = indistinguishable_groups(names, p, 0.05, F=np.array([0.3, 0.2, 0.1, 0.05]))
    assert groups == [("a", "b"), ("b", "c"), ("c", "d")]


def test_pair_test_same_and_different_methods():
    rng = np.random.default_rng(5)
    r, a = _study(rng, 8, 20)
    b = a[::-1]  # the same models in another order: exchangeable
    d, p, runs = pair_test(r, a, b, 39, seed=0)
    assert d == 0.0 and p == 1.0 and runs == 10  # every permutation ties: stops after 10
    far = a + 3.0
    d, p, runs = pair_test(r, a, far, 39, seed=0)
    assert d > 0 and p == pytest.approx(1 / 40) and runs == 39


def test_pairwise_tests_find_two_groups():
    rng = np.random.default_rng(6)
    base = rng.normal(0, 2, 20)
    side = lambda s: base + s + 0.5 * rng.standard_normal((8, 1)) + rng.standard_normal((8, 20))  # noqa: E731
    confs = {"good": side(0.0), "good2": side(0.0), "bad": side(2.5)}
    assert permutations_for(3) == 59 and permutations_for(10) == 199  # 1/(K+1) ≤ 0.05 / pairs
    res = pairwise_tests(side(0.0), confs, n_permutations=79, seed=0)
    assert res.names == ("good", "good2", "bad")
    assert res.p_values[0, 2] == pytest.approx(1 / 80) and res.p_values[1, 2] == pytest.approx(1 / 80)
    assert res.p_values[0, 1] > 0.2
    assert res.groups(0.05) == [("good", "good2"), ("bad",)] or res.groups(0.05) == [("good2", "good"), ("bad",)]
    assert res.n_run[0, 1] < 79  # the indistinguishable pair stopped early


# ------------------------------------------------------------------------------- ε lower bound


def _true_eps(mu, delta=1e-5):
    """ε(δ) of N(0,1) vs N(μ,1): δ(ε) = Φ(−ε/μ + μ/2) − e^ε Φ(−ε/μ − μ/2)."""
    return brentq(lambda e: norm.cdf(-e / mu + mu / 2) - math.exp(e) * norm.cdf(-e / mu - mu / 2) - delta, 0, 100)


def _gaussian_mechanism(rng, n, mu, n_examples=30):
    """Whole-model Gaussian shift: the unlearned side is moved by μ along a direction of
    Mahalanobis norm 1 (noise iid N(0,1) per example), so the mechanism's ε(δ) is _true_eps(μ)."""
    base = rng.normal(0, 2, n_examples)
    r = base + rng.standard_normal((n, n_examples))
    u = base + rng.standard_normal((n, n_examples)) + mu / math.sqrt(n_examples)
    return r, u


def test_true_eps_of_the_gaussian_mechanism_matches_specs():
    assert [round(_true_eps(m), 2) for m in (0.5, 1, 2, 3)] == [1.99, 4.38, 10.0, 16.68]


def test_max_bound_by_hand():
    # 8 count models per side, no error: Clopper–Pearson upper 1 − 0.025^(1/8)
    u = 1 - 0.025 ** (1 / 8)
    assert max_epsilon_lower_bound(16) == pytest.approx(math.log((1 - 1e-5 - u) / u))
    assert max_epsilon_lower_bound(16) == pytest.approx(0.535, abs=1e-3)
    assert max_epsilon_lower_bound(8) == 0.0  # 4 count models per side can prove nothing
    assert max_epsilon_lower_bound(128) == pytest.approx(2.825, abs=1e-3)
    assert models_needed(0.5) == 16 and models_needed(1.0) == 24
    assert max_epsilon_lower_bound(models_needed(2.6)) > 2.6 >= max_epsilon_lower_bound(models_needed(2.6) - 1)


def test_bound_is_zero_under_the_null():
    """Exchangeable models: the bound is 0 in ≥ 95% of studies (here: all 100)."""
    rng = np.random.default_rng(7)
    bounds = [epsilon_lower_bound(*_study(rng, 32, 30), seed=s) for s in range(100)]
    assert np.mean(np.array(bounds) == 0) >= 0.95


@pytest.mark.parametrize("mu", [0.5, 1.0])
def test_bound_rarely_exceeds_the_true_epsilon(mu):
    rng = np.random.default_rng(8)
    true = _true_eps(mu)
    bounds = np.array([epsilon_lower_bound(*_gaussian_mechanism(rng, 128, mu), seed=s) for s in range(60)])
    assert np.mean(bounds > true) <= 0.05
    assert bounds.max() <= max_epsilon_lower_bound(128)


def test_bound_is_valid_and_tight_on_randomised_response():
    """A model-level coin with pure ε = 1 (P[flag] = e/(1+e) unlearned, 1/(1+e) retrained): with
    1,000 models per side the bound gets close to ε, yet exceeds it in ≤ 5% of studies."""
    rng = np.random.default_rng(9)
    q = math.e / (1 + math.e)
    true = math.log((q - 1e-5) / (1 - q))  # ε(δ) of randomised response, just below 1

    def study(n=1000, n_examples=5):
        flag_u, flag_r = rng.random(n) < q, rng.random(n) < 1 - q
        noise = lambda: 0.1 * rng.standard_normal((n, n_examples))  # noqa: E731
        return flag_r[:, None] + noise(), flag_u[:, None] + noise()

    bounds = np.array([epsilon_lower_bound(*study(), seed=s) for s in range(40)])
    assert np.mean(bounds > true) <= 0.05
    assert 0.6 < np.median(bounds) < true


def test_large_shift_and_hundreds_of_models_reach_two():
    rng = np.random.default_rng(10)
    bounds = [epsilon_lower_bound(*_gaussian_mechanism(rng, 256, 3.0), seed=s) for s in range(5)]
    assert min(bounds) >= 2.0
    assert max(bounds) <= max_epsilon_lower_bound(256) == pytest.approx(3.532, abs=1e-3)


def test_identical_unlearned_models_reach_the_maximum():
    rng = np.random.default_rng(11)
    r, u = _study(rng, 16, 20)
    out = lower_bound_details(r, np.repeat(u[:1], 16, axis=0))
    assert out["false_positives"] == 0 and out["false_negatives"] == 0
    assert out["eps_lb"] == out["eps_lb_max"] == pytest.approx(max_epsilon_lower_bound(16))


def test_bad_input_says_what_to_fix():
    with pytest.raises(ValueError, match="n_models ≥ 4"):
        epsilon_lower_bound(np.zeros((3, 5)), np.zeros((3, 5)))
    with pytest.raises(ValueError, match="level"):
        epsilon_lower_bound(np.zeros((8, 5)), np.zeros((8, 5)), level=95)


# --------------------------------------------------------------------------------- certificates


def test_certificate_verdicts():
    """The verdict, and beside every one the power against twice the certificate and the N for
    80% of it (their numbers are checked independently in test_audit_power.py)."""
    violated = certificate_verdict(0.9, 2.1, 0.5, 64)
    assert violated.verdict == violated.label == "violated" and violated.n_needed == 240
    consistent = certificate_verdict(0.3, 2.1, 0.5, 64)
    assert consistent.verdict == "consistent" and 0 < consistent.power < 0.5
    assert consistent.label == f"consistent (power {round(100 * consistent.power)}% against 2×)"
    untestable = certificate_verdict(0.0, max_epsilon_lower_bound(16), 1.0, 16)
    assert untestable.verdict == "not testable at this N" and untestable.power == 0.0
    assert untestable.label == "not testable at this N (power 0 against 2×)"
    assert models_needed(1.0) == 24 < untestable.n_needed == 89  # testable at all vs found 4 times in 5
    assert certificate_verdict(0.0, 0.54, math.inf, 16)[:2] == ("not testable at this N",) * 2


def test_lower_bound_audit_below_four_models_proves_nothing_and_says_so():
    """With fewer than 4 models per side there is no held-out half: the audit reports 0 and a
    maximum of 0 (the library function refuses instead), so small studies still run."""
    from unlearnlab.audits.base import AuditInput, ModelOutputs
    from unlearnlab.audits.lower_bound import LowerBoundAudit

    rng = np.random.default_rng(0)
    logits = lambda shift: rng.normal(shift, 1, (2, 30, 10))  # noqa: E731
    labels = {"forget": rng.integers(0, 10, 30), "test": np.zeros(0, int), "retain": np.zeros(0, int)}
    empty = np.zeros((2, 0, 10))
    inp = AuditInput(labels, ModelOutputs(logits(0), empty, empty), ModelOutputs(logits(5), empty, empty))
    assert LowerBoundAudit()(inp) == {"audit/eps_lb": 0.0, "audit/eps_lb_max": 0.0}
    with pytest.raises(ValueError, match="≥ 4 models"):
        epsilon_lower_bound(logits(0)[:, :, 0], logits(5)[:, :, 0])
