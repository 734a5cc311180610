"""The study's method-vs-method tests: which pairs it runs, and that it says when it skips them."""

from __future__ import annotations

import numpy as np
from omegaconf import OmegaConf

from unlearnlab.audits.base import ModelOutputs
from unlearnlab.auditing import method_vs_method
from unlearnlab.tables import pairwise_rows, pairwise_summary

N, EXAMPLES, CLASSES = 8, 40, 10


def outputs(rng, shift: float) -> ModelOutputs:
    """Logits whose true-class logit sits `shift` above the rest, plus per-model noise."""
    logits = rng.normal(0, 1, (N, EXAMPLES, CLASSES))
    logits[:, np.arange(EXAMPLES), 0] += shift + rng.normal(0, 0.5, (N, 1))
    empty = np.zeros((N, 0, CLASSES))
    return ModelOutputs(logits, empty, empty)


def config(**extra):
    return OmegaConf.create({"audit": {"competition": {"n_permutations": 19, "seed": 0, "delta": 1e-5}},
                             "pairwise_skip": ["identity"], **extra})


LABELS = np.zeros(EXAMPLES, dtype=int)


def test_pairs_exclude_the_skipped_control_and_tell_a_shift_apart():
    rng = np.random.default_rng(0)
    methods = {"identity": outputs(rng, 9.0), "same": outputs(rng, 2.0), "shifted": outputs(rng, 6.0)}
    pw = method_vs_method(config(), LABELS, outputs(rng, 2.0), methods, dict.fromkeys(methods, "retrain"))
    assert pw["methods"] == ["same", "shifted"]  # identity is skipped
    assert pw["p_adjusted"][0][1] < 0.05  # a 4-logit shift at N = 8 is told apart
    assert pw["groups"] == [["same"], ["shifted"]] or pw["groups"] == [["shifted"], ["same"]]
    results = {"n_models": N, "pairwise": pw}
    assert [r["method"] for r in pairwise_rows(results)] == ["same", "shifted"]
    assert pairwise_summary(results).startswith("Every pair of same, shifted is told apart at N = 8")


def test_too_many_methods_are_skipped_with_the_reason():
    rng = np.random.default_rng(1)
    methods = {f"m{i}": outputs(rng, 2.0) for i in range(4)}
    pw = method_vs_method(config(pairwise_max_methods=3), LABELS, outputs(rng, 2.0), methods, dict.fromkeys(methods, "retrain"))
    assert pw == {"skipped": "4 methods = 6 pairs; the tests run for at most pairwise_max_methods=3 methods"}
    results = {"n_models": N, "pairwise": pw}
    assert pairwise_rows(results) == []
    assert pairwise_summary(results) == f"Method-vs-method tests skipped: {pw['skipped']}."


def test_no_competition_audit_no_pairwise_tests():
    rng = np.random.default_rng(2)
    methods = {"a": outputs(rng, 2.0), "b": outputs(rng, 3.0)}
    assert method_vs_method(OmegaConf.create({"audit": {"lower_bound": {}}}), LABELS, outputs(rng, 2.0), methods,
                            dict.fromkeys(methods, "retrain")) is None
