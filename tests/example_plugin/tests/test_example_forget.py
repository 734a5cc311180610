"""The example plugin's own tests: the contract, through unlearnlab's test kit, and what
omp_finetune (prune, then fine-tune) does, measured on the kit's digits study."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("example_forget", reason="the example plugin is not installed: pip install -e tests/example_plugin")
testing = pytest.importorskip("unlearnlab.testing")

CONVS = ("features.0.weight", "features.3.weight", "features.7.weight")  # small_cnn's Conv2d weights


def retain_accuracy(run) -> float:
    x, y = run.method.data.tensors("retain")
    model = run.method.model.eval()
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


@pytest.fixture(scope="module")
def original():
    return testing.original_state("omp_finetune")


@pytest.fixture(scope="module")
def run():  # the method's own settings, every batch: 10 epochs on ~1,300 retain digits (seconds)
    return testing.run_method("omp_finetune", limit_batches=None)


def test_omp_finetune_keeps_unlearnlab_s_contract(tmp_path):
    # composes and binds, reads only retain, trains in train mode, same seed → same weights, runs under debug=tiny
    testing.check_method("omp_finetune", tmp_path)


def test_the_smallest_95_percent_of_conv_weights_are_pruned_and_stay_zero(original, run):
    sizes = [original[k].numel() for k in CONVS]
    magnitudes = torch.cat([original[k].abs().flatten() for k in CONVS])
    k = round(0.95 * magnitudes.numel())
    # the mask, computed here without torch's pruning: the k smallest |w| over every conv weight at once
    pruned = torch.zeros(magnitudes.numel(), dtype=torch.bool)
    pruned[torch.argsort(magnitudes, stable=True)[:k]] = True
    after = torch.cat([run.state[name].flatten() for name in CONVS])
    assert abs(int((after == 0).sum()) - k) <= 1  # the configured sparsity, ±1 weight
    assert bool((after[pruned] == 0).all())  # pruned weights are exactly zero after 10 epochs of fine-tuning
    assert bool((after[~pruned] != 0).all())  # the kept ones are not
    assert not torch.equal(after[~pruned], torch.cat([original[n].flatten() for n in CONVS])[~pruned])  # and trained
    # the pruning is global: layers end at different sparsities (a per-layer 95% would give each the same)
    per_layer = [float(p.float().mean()) for p in pruned.split(sizes)]
    assert max(per_layer) - min(per_layer) > 0.01, per_layer


def test_the_classifier_is_not_pruned_and_nothing_of_torch_s_pruning_is_saved(original, run):
    assert not bool((run.state["classifier.weight"] == 0).any())
    assert not torch.equal(run.state["classifier.weight"], original["classifier.weight"])  # fine-tuned, not frozen
    # what the store saves: plain tensors under the model's own keys (no weight_orig / weight_mask)
    assert sorted(run.state) == sorted(original)
    assert not any(hook for m in run.method.model.modules() for hook in m._forward_pre_hooks.values())


def test_fine_tuning_recovers_the_retain_accuracy_pruning_took(original, run):
    # measured (CPU, seeds 0-2): the kit's 1-epoch original 0.51 on retain; pruned, before any
    # fine-tuning 0.10 (chance); after the 10 epochs 0.50, 0.51, 0.58
    pruned_only = testing.run_method("omp_finetune", overrides=["methods.omp_finetune.epochs=0"])
    model = testing.run_method("omp_finetune", overrides=["methods.omp_finetune.epochs=0",
                                                          "methods.omp_finetune.sparsity=0.0"])
    before = retain_accuracy(model)  # sparsity 0, no epochs: the original itself
    assert retain_accuracy(pruned_only) < 0.2
    assert retain_accuracy(run) >= max(0.4, before - 0.15), (retain_accuracy(run), before)
