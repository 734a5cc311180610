"""Known answers for the membership / likelihood audits beyond the official ε."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom

from unlearnlab.audits import mia_kit, mia_svc
from unlearnlab.audits._features import cross_entropy, true_class_prob
from unlearnlab.audits.competition import logit_scaled_confidence
from unlearnlab.audits.base import AuditInput, ModelOutputs
from unlearnlab.audits.mia_kit import KitMIAAudit, kit_mia_accuracy
from unlearnlab.audits.mia_svc import SVCMIAAudit, mia_efficacy
from unlearnlab.audits.one_run import OneRunAudit, eps_lower_bound, max_eps_lower_bound, one_run_audit
from unlearnlab.audits.ulira import ULiRAAudit, ulira


def conf_pair(shift: float, n_models: int = 64, n_forget: int = 50, seed: int = 0):
    """Retrained / unlearned confidences: per-example means shared, unlearned moved by shift."""
    rng = np.random.default_rng(seed)
    mu = rng.normal(0, 3, n_forget)
    retrain = mu + rng.normal(0, 1, (n_models, n_forget))
    unlearn = mu + shift + rng.normal(0, 1, (n_models, n_forget))
    return retrain, unlearn


# features ---------------------------------------------------------------------------------


def test_features_match_definitions_and_accept_model_axis():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 5, (3, 7, 4)).astype(np.float32)
    labels = rng.integers(0, 4, 7)
    p = np.exp(logits.astype(np.float64))
    p /= p.sum(-1, keepdims=True)
    p_y = p[:, np.arange(7), labels]
    np.testing.assert_allclose(true_class_prob(logits, labels), p_y, rtol=1e-12)
    np.testing.assert_allclose(cross_entropy(logits, labels), -np.log(p_y), rtol=1e-9)
    np.testing.assert_allclose(
        logit_scaled_confidence(logits, labels), np.log(p_y) - np.log(1 - p_y), rtol=1e-6, atol=1e-6
    )
    np.testing.assert_allclose(cross_entropy(logits[1], labels), -np.log(p_y[1]), rtol=1e-9)


def test_features_stay_finite_for_saturated_logits():
    logits = np.array([[1000.0, 0.0, 0.0], [0.0, 1000.0, 0.0]])
    labels = np.array([0, 0])
    assert np.isfinite(cross_entropy(logits, labels)).all()
    assert cross_entropy(logits, labels)[1] == pytest.approx(1000.0)
    conf = logit_scaled_confidence(logits, labels)
    assert conf[0] == pytest.approx(np.log(1.0) - np.log(2 * np.exp(-1000.0) + 1e-45))
    assert conf[1] == pytest.approx(np.log(1e-45) - np.log(1.0))


# kit MIA ----------------------------------------------------------------------------------


def test_kit_mia_chance_on_identical_losses_and_one_on_separated():
    rng = np.random.default_rng(0)
    same = kit_mia_accuracy(rng.exponential(1, 3000), rng.exponential(1, 1000))
    assert abs(same - 0.5) < 0.05
    apart = kit_mia_accuracy(rng.uniform(0, 0.1, 3000), rng.uniform(1, 2, 1000))
    assert apart == pytest.approx(1.0)


def test_kit_mia_balances_classes_when_test_is_larger():
    """digits: 144 forget vs 180 test losses; unbalanced, chance would be 180/324 ≈ 0.556."""
    rng = np.random.default_rng(1)
    accs = [kit_mia_accuracy(rng.exponential(1, 144), rng.exponential(1, 180), random_state=s) for s in range(20)]
    assert abs(np.mean(accs) - 0.5) < 0.03


def test_kit_mia_uses_the_kits_sklearn_settings(monkeypatch):
    seen = {}
    real_split, real_cvs = mia_kit.StratifiedShuffleSplit, mia_kit.cross_val_score

    def split(**kw):
        seen["split"] = kw
        return real_split(**kw)

    def cvs(estimator, x, y, **kw):
        seen.update(estimator=estimator, x=x, y=y, scoring=kw["scoring"])
        return real_cvs(estimator, x, y, **kw)

    monkeypatch.setattr(mia_kit, "StratifiedShuffleSplit", split)
    monkeypatch.setattr(mia_kit, "cross_val_score", cvs)
    forget, test = np.arange(300.0), np.arange(100.0) + 0.5
    kit_mia_accuracy(forget, test)
    assert seen["split"] == {"n_splits": 10, "random_state": 0}
    assert type(seen["estimator"]).__name__ == "LogisticRegression"
    assert seen["estimator"].get_params() == type(seen["estimator"])().get_params()
    assert seen["scoring"] == "accuracy"
    # forget subsampled (without replacement) to the test size; members are 1
    assert seen["x"].shape == (200, 1) and seen["y"].sum() == 100
    members = seen["x"][seen["y"] == 1, 0]
    assert len(set(members)) == 100 and set(members) <= set(forget)
    np.testing.assert_array_equal(seen["x"][seen["y"] == 0, 0], test)
    # fewer forget than test losses: the test losses are cut to the forget size
    kit_mia_accuracy(test, forget)
    assert seen["x"].shape == (200, 1) and seen["y"].sum() == 100
    assert set(seen["x"][seen["y"] == 0, 0]) <= set(forget) and len(set(seen["x"][seen["y"] == 0, 0])) == 100


# SVC MIA-efficacy -------------------------------------------------------------------------


def test_mia_efficacy_known_answers():
    rng = np.random.default_rng(0)
    retain, test = rng.uniform(0.9, 1.0, 800), rng.uniform(0.0, 0.6, 400)
    assert mia_efficacy(retain, test, rng.uniform(0.0, 0.6, 300)) > 0.95
    assert mia_efficacy(retain, test, rng.uniform(0.9, 1.0, 300)) < 0.05


def test_mia_efficacy_uses_salun_svc_on_first_test_size_retain(monkeypatch):
    seen = {}

    class Spy(mia_svc.SVC):
        def fit(self, x, y):
            seen.update(params=self.get_params(), x=x, y=y)
            return super().fit(x, y)

    monkeypatch.setattr(mia_svc, "SVC", Spy)
    retain, test = np.linspace(0.5, 1.0, 50), np.linspace(0.0, 0.4, 20)
    mia_efficacy(retain, test, test)
    assert (seen["params"]["C"], seen["params"]["gamma"], seen["params"]["kernel"]) == (
        3, "auto", "rbf")
    np.testing.assert_array_equal(seen["x"][:20, 0], retain[:20])
    np.testing.assert_array_equal(seen["y"], np.r_[np.ones(20), np.zeros(20)])


# U-LiRA -----------------------------------------------------------------------------------


def test_ulira_chance_on_identical_distributions():
    out = ulira(*conf_pair(0.0))
    # 32 targets per side x 50 examples; per-example Gaussians fitted on 32 shadows
    assert abs(out["acc"] - 0.5) < 0.05
    assert abs(out["auc"] - 0.5) < 0.05
    assert out["tpr@1%"] < 0.1 and out["tpr@0.1%"] <= out["tpr@1%"]


def test_ulira_near_one_when_well_separated():
    out = ulira(*conf_pair(6.0))
    assert out["acc"] > 0.98 and out["auc"] > 0.99
    assert out["tpr@1%"] > 0.9
    model = ulira(*conf_pair(1.0), per_example=False)  # 50 examples of evidence per model
    assert model["acc"] == 1.0 and model["auc"] == 1.0


def test_ulira_is_seeded_and_needs_shadows():
    a, b = ulira(*conf_pair(0.5), seed=3), ulira(*conf_pair(0.5), seed=3)
    assert a == b
    with pytest.raises(ValueError):
        ulira(*conf_pair(1.0, n_models=3))


# one-run ε lower bound --------------------------------------------------------------------


def test_eps_lower_bound_by_hand_and_against_scipy():
    # all 10 guesses right: q^10 = 0.05 -> q = 0.05 ** 0.1, eps = log(q / (1 - q)) ≈ 1.0519
    q = 0.05 ** 0.1
    assert eps_lower_bound(10, 10) == pytest.approx(math.log(q / (1 - q)), abs=1e-6)
    assert eps_lower_bound(10, 10) == pytest.approx(1.0519, abs=1e-4)
    eps = eps_lower_bound(200, 160)
    beta = binom.sf(159, 200, math.exp(eps) / (1 + math.exp(eps)))
    assert beta == pytest.approx(0.05, abs=1e-6)
    assert eps_lower_bound(100, 50) == 0.0 and eps_lower_bound(0, 0) == 0.0
    assert eps_lower_bound(10, 10, p_value=0.01) < eps_lower_bound(10, 10)


def test_eps_lower_bound_monotone_in_v():
    bounds = [eps_lower_bound(100, v) for v in range(0, 101)]
    assert np.all(np.diff(bounds) >= 0)
    assert bounds[58] == 0.0 and bounds[70] > 0.0  # P[Binom(100, .5) >= 59] ≈ 0.044
    assert np.all(np.diff(bounds[60:]) > 0)


def test_one_run_small_when_identical_large_when_separated():
    same = one_run_audit(*conf_pair(0.0))
    assert same["eps_lower_bound"] < 0.5
    apart = one_run_audit(*conf_pair(3.0))
    # 64 held-out models, guesses on the 32 most confident, all right -> ≈ 2.32
    assert (apart["guesses"], apart["correct"]) == (32, 32)
    assert apart["eps_lower_bound"] > 2
    assert apart["eps_max"] == pytest.approx(apart["eps_lower_bound"])  # all right: the maximum


def test_one_run_maximum_and_vacuous_below_five_guesses():
    assert max_eps_lower_bound(4) == 0.0  # 0.5^4 > 0.05: nothing provable
    assert max_eps_lower_bound(5) > 0 and max_eps_lower_bound(8) == pytest.approx(0.789, abs=1e-3)
    r, u = conf_pair(3.0)
    out = one_run_audit(r[:4], u[:4])  # 2 + 2 targets, 2 guesses
    assert out["eps_max"] == 0.0 and out["eps_lower_bound"] == 0.0


# registry classes on logits ---------------------------------------------------------------


def tiny_input(memorised: float) -> AuditInput:
    """8+8 models, 3 classes; unlearned models are more confident on forget by `memorised`."""
    rng = np.random.default_rng(1)
    labels = {"forget": rng.integers(0, 3, 40), "test": rng.integers(0, 3, 30),
              "retain": rng.integers(0, 3, 30)}

    def outputs(boost_forget: float) -> ModelOutputs:
        parts = {}
        for part, y in labels.items():
            logits = rng.normal(0, 1, (8, len(y), 3))
            logits[:, np.arange(len(y)), y] += 1.0 + (boost_forget if part == "forget" else 0.0)
            logits[:, np.arange(len(y)), y] += 3.0 if part == "retain" else 0.0
            parts[part] = logits.astype(np.float32)
        return ModelOutputs(**parts)

    return AuditInput(labels=labels, retrain=outputs(0.0), unlearn=outputs(memorised))


@pytest.mark.parametrize(
    "audit, keys",
    [
        (KitMIAAudit(), {"audit/mia_acc", "audit/mia_acc_retrain", "audit/mia_chance"}),
        (SVCMIAAudit(), {"audit/mia_efficacy", "audit/mia_efficacy_retrain"}),
        (ULiRAAudit(), {"audit/ulira_acc", "audit/ulira_auc", "audit/ulira_tpr@1%",
                        "audit/ulira_tpr@0.1%"}),
        (OneRunAudit(), {"audit/eps_lower_bound", "audit/one_run_guesses",
                         "audit/one_run_correct", "audit/one_run_eps_max"}),
    ],
)
def test_registry_classes_return_python_floats(audit, keys):
    out = audit(tiny_input(memorised=4.0))
    assert set(out) == keys
    assert all(type(v) is float for v in out.values())
    assert isinstance(audit.name, str)


def test_registry_classes_see_memorisation():
    leaky = tiny_input(memorised=4.0)
    kit = KitMIAAudit()(leaky)
    assert kit["audit/mia_acc"] > kit["audit/mia_acc_retrain"] + 0.2
    svc = SVCMIAAudit()(leaky)
    assert svc["audit/mia_efficacy"] < svc["audit/mia_efficacy_retrain"] - 0.3
    assert ULiRAAudit()(leaky)["audit/ulira_acc"] > 0.9
    run = OneRunAudit()(leaky)
    assert run["audit/one_run_correct"] == run["audit/one_run_guesses"] == 4.0
    clean = ULiRAAudit()(tiny_input(memorised=0.0))
    assert abs(clean["audit/ulira_auc"] - 0.5) < 0.15


def test_every_returned_metric_is_declared():
    from unlearnlab.audits.competition import CompetitionAudit
    from unlearnlab.audits.lower_bound import LowerBoundAudit

    inp = tiny_input(memorised=4.0)
    accs = {"retain/acc": np.ones(8), "test/acc": np.ones(8)}
    inp = AuditInput(inp.labels, ModelOutputs(inp.retrain.forget, inp.retrain.test, inp.retrain.retain, accs),
                     ModelOutputs(inp.unlearn.forget, inp.unlearn.test, inp.unlearn.retain, accs))
    for audit in (KitMIAAudit(), SVCMIAAudit(), ULiRAAudit(), OneRunAudit(), CompetitionAudit(n_permutations=9),
                  LowerBoundAudit()):
        declared = {m.name: m for m in audit.metrics}
        out = audit(inp)
        assert set(out) == set(declared), type(audit).__name__
        for name, value in out.items():
            assert declared[name].array == (np.ndim(value) > 0), name
            assert declared[name].help and declared[name].group
