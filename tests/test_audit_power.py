"""What a verdict can say (issue 21): the power of the ε lower bound against a real leak, checked
against computations written separately here; the stronger auditor's choice among statistics
(still valid); Holm over the table; the null band's digits; the kit MIA's chance rate; the
one-run audit's smallest useful N."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
from omegaconf import OmegaConf
from scipy.stats import beta as beta_dist
from scipy.stats import binom

from unlearnlab.audits.lower_bound import (
    detection_power, epsilon_lower_bound, lower_bound_details, max_epsilon_lower_bound, models_for_power,
)

DELTA = 1e-4  # the certificates' δ (SPECS §5 states its numbers at δ = 1e-4, 95%)


def _power_by_enumeration(true_eps: float, cert: float, n_models: int, delta: float = DELTA,
                          level: float = 0.95) -> float:
    """The same power written out from its definition, pair by pair: N/2 held-out models per side
    (rule_fraction 0.5), FP and FN independent Binomial(N/2, 1/(1+e^ε)), the bound from
    Clopper–Pearson upper limits at (1 − level)/2 each and the (ε, δ) inequalities."""
    n = n_models - int(round(n_models / 2))
    p = 1 / (1 + math.exp(true_eps))
    a = (1 - level) / 2
    upper = [1.0 if k == n else float(beta_dist.ppf(1 - a, k + 1, n - k)) for k in range(n + 1)]
    pmf = [float(binom.pmf(k, n, p)) for k in range(n + 1)]
    total = 0.0
    for fp in range(n + 1):
        for fn in range(n + 1):
            bounds = [0.0]
            if 1 - delta - upper[fp] > 0:
                bounds.append(math.log(1 - delta - upper[fp]) - math.log(upper[fn]))
            if 1 - delta - upper[fn] > 0:
                bounds.append(math.log(1 - delta - upper[fn]) - math.log(upper[fp]))
            if max(bounds) > cert:
                total += pmf[fp] * pmf[fn]
    return total


@pytest.mark.parametrize("true_eps, cert, n", [(1.0, 0.5, 16), (0.5, 0.5, 16), (2.0, 1.0, 24), (2.0, 1.0, 40),
                                               (3.0, 0.5, 12), (4.0, 2.0, 30)])
def test_power_equals_exact_enumeration(true_eps, cert, n):
    assert detection_power(true_eps, cert, n, DELTA) == pytest.approx(_power_by_enumeration(true_eps, cert, n),
                                                                      rel=1e-9, abs=1e-15)


def test_power_at_the_recommended_n_is_almost_nil():
    """The issue's reading: at N = 16 a certificate of 0.5 is 'consistent' with power ~5·10⁻⁴ at
    its own ε, and under 1% against a true ε twice as large."""
    assert _power_by_enumeration(0.5, 0.5, 16) == pytest.approx(5.08e-4, rel=0.01)
    assert detection_power(1.0, 0.5, 16, DELTA) < 0.01
    assert detection_power(1.0, 0.5, 8, DELTA) == 0.0  # eps_lb_max(8) = 0: nothing can be shown


def test_models_for_power_checks_the_referees_numbers():
    """SPECS §5: ~240 models per side for a 2× violation of 0.5 at 80% power, ~90 for 1.0 (δ = 1e-4,
    95%). Every N below is tried with the enumeration above: the first N that reaches 80%."""
    def first(cert, start, stop):
        return next(n for n in range(start, stop) if _power_by_enumeration(2 * cert, cert, n) >= 0.8)

    assert models_for_power(1.0, 2.0, 0.8, DELTA) == 89 == first(1.0, 60, 100)
    assert models_for_power(0.5, 1.0, 0.8, DELTA) == 240
    assert _power_by_enumeration(1.0, 0.5, 240) >= 0.8 > max(_power_by_enumeration(1.0, 0.5, n)
                                                             for n in range(200, 240, 3))
    assert _power_by_enumeration(1.0, 0.5, 239) < 0.8
    assert models_for_power(50.0, 100.0, 0.8, DELTA) is None  # no N up to 2^16 shows ε = 50


def test_the_audit_itself_reaches_the_known_mechanism_power():
    """Monte-Carlo of the real audit on a mechanism with pure ε = 3 (randomised response on one
    model-level flag): the rule half finds the flag, so the chance that eps_lb exceeds 1 matches
    the ideal auditor's power within simulation error — and never beats it by more."""
    rng = np.random.default_rng(0)
    n, eps, cert, runs = 40, 3.0, 1.0, 300
    q = 1 / (1 + math.exp(eps))
    hits = 0
    for s in range(runs):
        flag_u, flag_r = rng.random(n) >= q, rng.random(n) < q
        jitter = lambda: 1e-3 * rng.standard_normal((n, 1))  # noqa: E731
        hits += epsilon_lower_bound(flag_r[:, None] + jitter(), flag_u[:, None] + jitter(), DELTA, seed=s) > cert
    ideal = detection_power(eps, cert, n, DELTA)
    se = math.sqrt(ideal * (1 - ideal) / runs)
    assert abs(hits / runs - ideal) < 4 * se, (hits / runs, ideal)


# ------------------------------------------------------------------ the stronger auditor, still valid


def _sides(rng, n, d, shift=0.0):
    return rng.standard_normal((n, d)), rng.standard_normal((n, d)) + shift


def test_the_rule_half_picks_the_statistic_that_carries_the_leak():
    """Confidences and logits carry nothing, the weights a shift: the weights win and prove what
    N = 32 can prove; without the weights nothing is proved."""
    rng = np.random.default_rng(1)
    conf, logits, weights = _sides(rng, 32, 20), _sides(rng, 32, 50), _sides(rng, 32, 30, shift=2.0)
    r = {"confidences": conf[0], "logits": logits[0], "weights": weights[0]}
    u = {"confidences": conf[1], "logits": logits[1], "weights": weights[1]}
    out = lower_bound_details(r, u, DELTA)
    assert out["statistic"] == "weights" and out["eps_lb"] == out["eps_lb_max"] == max_epsilon_lower_bound(32, DELTA)
    without = lower_bound_details({k: r[k] for k in ("confidences", "logits")},
                                  {k: u[k] for k in ("confidences", "logits")}, DELTA)
    assert without["statistic"] in ("confidences", "logits") and without["eps_lb"] == 0.0
    # one array is the old call: the confidences alone
    assert lower_bound_details(conf[0], conf[1], DELTA)["statistic"] == "confidences"


def test_choosing_among_statistics_keeps_the_bound_valid():
    """Exchangeable models, three candidate statistics chosen on the rule half: the bound is 0 in
    ≥ 95% of studies (here: all of them)."""
    rng = np.random.default_rng(2)
    bounds = []
    for s in range(60):
        r = {k: rng.standard_normal((16, d)) for k, d in (("confidences", 10), ("logits", 40), ("weights", 25))}
        u = {k: rng.standard_normal((16, d)) for k, d in (("confidences", 10), ("logits", 40), ("weights", 25))}
        bounds.append(lower_bound_details(r, u, DELTA, seed=s)["eps_lb"])
    assert np.mean(np.array(bounds) == 0) >= 0.95


def test_lower_bound_audit_reads_weights_only_where_the_models_carry_them():
    from unlearnlab.audits.base import AuditInput, ModelOutputs
    from unlearnlab.audits.lower_bound import LowerBoundAudit

    rng = np.random.default_rng(3)
    labels = {"forget": rng.integers(0, 10, 12), "test": np.zeros(0, int), "retain": np.zeros(0, int)}
    empty = np.zeros((16, 0, 10))

    def outputs(shift, weights):
        return ModelOutputs(rng.normal(0, 1, (16, 12, 10)), empty, empty, weights=weights)

    w_r, w_u = rng.normal(0, 1, (16, 5)), rng.normal(3, 1, (16, 5))
    out = LowerBoundAudit(delta=DELTA)(AuditInput(labels, outputs(0, w_r), outputs(0, w_u)))
    assert out["audit/eps_lb_statistic"] == "weights" and out["audit/eps_lb"] > 0.5
    out = LowerBoundAudit(delta=DELTA)(AuditInput(labels, outputs(0, None), outputs(0, None)))  # logits from files
    assert out["audit/eps_lb_statistic"] in ("confidences", "logits") and out["audit/eps_lb"] == 0.0
    with pytest.raises(ValueError, match="statistics"):
        LowerBoundAudit(statistics=["gradients"])


# ------------------------------------------------------------------------------------ multiplicity


def test_holm_on_p_values_with_a_known_answer():
    from unlearnlab.auditing import holm

    # sorted 0.005, 0.01, 0.03, 0.04 → ×4, ×3, ×2, ×1 = 0.02, 0.03, 0.06, 0.04 → running max 0.06
    got = holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.005})
    assert got == pytest.approx({"a": 0.03, "b": 0.06, "c": 0.06, "d": 0.02})
    assert holm({"x": 0.4, "y": 0.9}) == pytest.approx({"x": 0.8, "y": 0.9})
    assert holm({"x": 0.6, "y": 0.7}) == pytest.approx({"x": 1.0, "y": 1.0})  # capped at 1
    # 17 methods at K = 49: the best any of them can get is 17/50 — nothing is rejected
    assert min(holm({str(i): 1 / 50 for i in range(17)}).values()) == pytest.approx(0.34)


def test_holm_rows_adjust_over_the_configs_non_controls_with_k_sized_for_them():
    from unlearnlab.auditing import build_audits, holm_rows
    from unlearnlab.audits.competition import permutations_for

    cfg = OmegaConf.create({"controls": ["identity", "retrain"]})
    rows = {"identity": {"audit/p_value": 0.02}, "retrain": {"audit/p_value": 0.9},
            "a": {"audit/p_value": 0.01}, "b": {"audit/p_value": 0.2}, "c": {"F": 0.1}}
    record = holm_rows(cfg, rows)
    assert record == {"methods": ["a", "b"], "alpha": 0.05, "rejected": ["a"]}
    assert rows["a"]["audit/p_value_holm"] == pytest.approx(0.02) and rows["b"]["audit/p_value_holm"] == 0.2
    assert "audit/p_value_holm" not in rows["identity"] and "audit/p_value_holm" not in rows["retrain"]
    # n_permutations: null sizes K so that Holm over the family can reject; an integer is kept
    audit = OmegaConf.create({"competition": {"_target_": "unlearnlab.audits.competition.CompetitionAudit",
                                              "n_permutations": None}})
    assert build_audits(OmegaConf.create({"audit": audit}), 15)["competition"].n_permutations == 299
    assert permutations_for(15) == 299 and 15 / (299 + 1) <= 0.05
    assert build_audits(OmegaConf.create({"audit": audit}), 2)["competition"].n_permutations == 49
    audit.competition.n_permutations = 9
    assert build_audits(OmegaConf.create({"audit": audit}), 15)["competition"].n_permutations == 9


# ------------------------------------------------------------------------------- the band's digits


def test_band_is_printed_to_the_digits_its_relabellings_support():
    from unlearnlab.audits.competition import PermutationTest
    from unlearnlab.tables import fmt_with_error

    rng = np.random.default_rng(4)
    null = 0.15 + 0.02 * rng.standard_normal(100_000)
    few, many = PermutationTest(0.1, null[:49]), PermutationTest(0.1, null[:9999])
    assert 0.001 < few.band_error() < 0.02 and many.band_error() < few.band_error() / 5
    # the error tracks the real spread of the 5% quantile over repeated sets of 49 relabellings
    spread = np.std([np.quantile(null[i:i + 49], 0.05) for i in range(0, 49 * 500, 49)])
    assert few.band_error() == pytest.approx(spread, rel=0.7)
    assert fmt_with_error(0.14128, 0.006) == "0.141"
    assert fmt_with_error(0.14128, 0.012) == "0.14"
    assert fmt_with_error(0.14128, 1e-7) == "0.1413"  # never more than the tables' 4 decimals


# -------------------------------------------------------------------------------- small ones


def test_kit_mia_chance_is_what_an_attack_that_learns_nothing_scores():
    from unlearnlab.audits.mia_kit import kit_mia_accuracy, kit_mia_chance

    # digits: 144 forget, 180 test → 144 + 144 losses, held-out folds of 29: 14 of the training majority
    assert kit_mia_chance(144, 180) == pytest.approx(14 / 29)
    assert kit_mia_chance(5000, 5000) == 0.5  # CIFAR-10: folds of 1,000, even
    # constant losses leave logistic regression only the training folds' majority
    assert kit_mia_accuracy(np.ones(144), np.ones(180)) == pytest.approx(kit_mia_chance(144, 180))


def test_one_run_names_the_smallest_n_that_can_prove_anything(caplog):
    from unlearnlab.audits.base import AuditInput, ModelOutputs
    from unlearnlab.audits.one_run import OneRunAudit, models_for_a_bound, one_run_audit

    rng = np.random.default_rng(5)
    assert models_for_a_bound() == 9
    at = lambda n: one_run_audit(rng.normal(size=(n, 4)), rng.normal(size=(n, 4)) + 9)  # noqa: E731
    assert at(9)["eps_max"] > 0 == at(8)["eps_max"]
    labels = {"forget": rng.integers(0, 3, 4), "test": np.zeros(0, int), "retain": np.zeros(0, int)}
    empty = np.zeros((8, 0, 3))
    inp = AuditInput(labels, *(ModelOutputs(rng.normal(s, 1, (8, 4, 3)), empty, empty) for s in (0, 4)))
    with caplog.at_level(logging.WARNING):
        OneRunAudit()(inp)
    assert "(≥ 9 at guess_fraction 0.5)" in caplog.text
