"""The example plugin's own tests: the contract, through unlearnlab's test kit, and what CF-k does."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("example_forget", reason="the example plugin is not installed: pip install -e tests/example_plugin")
testing = pytest.importorskip("unlearnlab.testing")


def test_cf_k_keeps_unlearnlab_s_contract(tmp_path):
    # composes and binds, reads only retain, trains in train mode, same seed → same weights, runs under debug=tiny
    testing.check_method("example_cf_k", tmp_path)


def test_cf_k_trains_only_the_last_k_modules_with_parameters():
    original = testing.original_state("example_cf_k")
    run = testing.run_method("example_cf_k", overrides=["methods.example_cf_k.epochs=1"])
    changed = {k for k in original if k.endswith(("weight", "bias")) and not torch.equal(run.state[k], original[k])}
    # small_cnn: k = 3 → the last conv, its BatchNorm and the classifier
    assert changed == {"features.7.weight", "features.8.weight", "features.8.bias", "classifier.weight",
                       "classifier.bias"}
