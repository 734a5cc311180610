"""The NeurIPS 2023 challenge entries (SPECS §4, entries 1–8) on digits, with tiny budgets.

Shared checks per method: it runs through the Trainer, changes the model, is bit-identical for
one seed (CPU), and cannot read what it did not declare (never test). Then each entry's own
mechanism, measured: what it resets, perturbs, transposes or scales.
"""

from __future__ import annotations

import math

import pytest
import torch

from conftest import run_method
from unlearnlab.errors import ConfigError
from unlearnlab.methods.base import DataAccessError, MethodData

# batch 512 keeps every fit to a handful of steps on the shared CPU
FAST = {"batch_size": 512, "epochs": 1}
METHODS = {
    "kl_uniform_adversarial": dict(FAST),
    "grad_reinit": dict(FAST),
    "prune_reinit": dict(FAST),
    "transposed_pseudo": dict(FAST),
    "reset_distill": dict(FAST, warmup_epochs=1),
    "reset_noise": dict(FAST),
    "cyclic_reinit_mse": dict(FAST, cycles=2),
}


def _class(name):
    from conftest import method_config
    from unlearnlab.cells import _method_class

    return _method_class({k: v for k, v in method_config(name).items() if k != "name"}, name)


def _changed(state, original) -> float:
    return sum(float((state[k].float() - original[k].float()).abs().sum()) for k in original)


def _build(name, digits_data, model, seed=0, **overrides):
    """Instantiate method NAME on an arbitrary model without running it."""
    from conftest import method_config
    from unlearnlab.registry import instantiate

    cfg = {k: v for k, v in method_config(name, **overrides).items() if k != "name"}
    cls = _class(name)
    return instantiate(cfg, model=model, data=MethodData(digits_data, cls.reads, seed, name))


@pytest.mark.parametrize("name", sorted(METHODS))
def test_runs_changes_and_is_deterministic(name, digits_data, trained_small_cnn):
    a = run_method(name, digits_data, trained_small_cnn, seed=3, **METHODS[name])
    assert a.trainer is not None and a.trainer.global_step > 0  # went through a Trainer fit
    state_a = a.model.state_dict()
    assert _changed(state_a, trained_small_cnn) > 0
    b = run_method(name, digits_data, trained_small_cnn, seed=3, **METHODS[name])
    for k, v in state_a.items():
        assert torch.equal(v, b.model.state_dict()[k]), f"{name}: {k} differs between two runs with one seed"


@pytest.mark.parametrize("name", sorted(METHODS))
def test_reads_are_enforced(name, digits_data, trained_small_cnn, monkeypatch):
    cls = _class(name)
    assert "test" not in cls.reads
    monkeypatch.setattr(cls, "reads", frozenset(cls.reads | {"test"}))
    with pytest.raises(ConfigError):
        cls.check_reads()
    monkeypatch.setattr(cls, "reads", frozenset())
    with pytest.raises(DataAccessError):
        run_method(name, digits_data, trained_small_cnn, seed=0, **METHODS[name])


def test_prune_reinit_resets_99_percent(digits_data, trained_small_cnn):
    from unlearnlab.methods.helpers import weight_layers

    m = run_method("prune_reinit", digits_data, trained_small_cnn, epochs=0)
    total = changed = 0
    for name, module in weight_layers(m.model):
        for pname, p in module.named_parameters(recurse=False):
            before = trained_small_cnn[f"{name}.{pname}"]
            changed += int((p.detach() != before).sum())
            total += p.numel()
    assert m.reset_fraction == pytest.approx(0.99, abs=1e-3)
    assert changed / total == pytest.approx(0.99, abs=0.005)
    # the 1% kept are the largest magnitudes
    kept = torch.cat([p.detach().flatten() for _, mod in weight_layers(m.model) for p in mod.parameters(recurse=False)
                      ]) [torch.cat([(p.detach() == trained_small_cnn[f"{n}.{pn}"]).flatten()
                                     for n, mod in weight_layers(m.model) for pn, p in mod.named_parameters(recurse=False)])]
    assert kept.abs().min() > 0.05


def test_reset_noise_changes_exactly_the_chosen_layers(digits_data, trained_small_cnn):
    m = run_method("reset_noise", digits_data, trained_small_cnn, epochs=0)
    state = m.model.state_dict()
    # the small CNN has 3 conv layers besides the classifier: fewer than 9, so all of them
    assert m.noised_layers == ["features.0", "features.3", "features.7"]
    assert m.reset_layer_name == "classifier"
    for k, v in trained_small_cnn.items():
        layer = k.rsplit(".", 1)[0]
        touched = layer in m.noised_layers or layer == "classifier"
        assert torch.equal(state[k], v) != touched, k
    # noise of std 0.04 on the conv weights, a fresh default init on the classifier
    delta = state["features.3.weight"] - trained_small_cnn["features.3.weight"]
    assert float(delta.std()) == pytest.approx(0.04, rel=0.15)
    bound = 1 / math.sqrt(state["classifier.weight"].shape[1])
    assert float(state["classifier.weight"].abs().max()) <= bound


class _Block(torch.nn.Module):
    def __init__(self, c_in, c_out):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(c_out)
        self.conv2 = torch.nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.downsample = torch.nn.Sequential(torch.nn.Conv2d(c_in, c_out, 1, bias=False), torch.nn.BatchNorm2d(c_out))

    def forward(self, x):
        return torch.relu(self.conv2(torch.relu(self.bn1(self.conv1(x)))) + self.downsample(x))


def _tiny_resnet():
    """ResNet-shaped (conv1, blocks with projection shortcuts, fc): 13 conv + 1 linear layers."""
    torch.manual_seed(0)
    layers = [torch.nn.Conv2d(1, 4, 3, padding=1)] + [_Block(4, 4) for _ in range(4)]
    return torch.nn.Sequential(*layers, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 10))


def test_reset_noise_picks_nine_layers_of_a_deeper_model(digits_data):
    model = _tiny_resnet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    m = _build("reset_noise", digits_data, model, epochs=0)
    m.run(lambda **_: pytest.fail("no fit with epochs=0"))
    assert len(m.noised_layers) == 9 and len(set(m.noised_layers)) == 9
    changed = {k.rsplit(".", 1)[0] for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == set(m.noised_layers) | {"7"}  # "7": the classifier, reset


def test_grad_reinit_reinitialises_30_percent_filters_and_scales_gradients(digits_data, trained_small_cnn):
    m = run_method("grad_reinit", digits_data, trained_small_cnn, epochs=0)
    for name, mask in m.reinit_filters.items():
        w, w0 = m.model.state_dict()[f"{name}.weight"], trained_small_cnn[f"{name}.weight"]
        assert int(mask.sum()) == round(0.3 * len(mask))
        moved = (w != w0).flatten(1).any(1)
        assert torch.equal(moved, mask), name

    def kept_movement(scale):
        r = run_method("grad_reinit", digits_data, trained_small_cnn, keep_grad_scale=scale, **FAST)
        total = 0.0
        for name, mask in r.reinit_filters.items():
            w, w0 = r.model.state_dict()[f"{name}.weight"], trained_small_cnn[f"{name}.weight"]
            total += float((w - w0)[~mask].abs().sum())
        return total

    slow, full = kept_movement(0.1), kept_movement(1.0)
    assert 0 < slow < 0.5 * full  # non-reset weights move less under the 1/10 gradient scale


def test_cyclic_reinit_mse_never_touches_classifier(digits_data, trained_small_cnn):
    m = run_method("cyclic_reinit_mse", digits_data, trained_small_cnn, epochs=0, cycles=3)
    state = m.model.state_dict()
    assert torch.equal(state["classifier.weight"], trained_small_cnn["classifier.weight"])
    assert torch.equal(state["classifier.bias"], trained_small_cnn["classifier.bias"])
    assert len(m.reinit_counts) == 3 and all("classifier" not in c for c in m.reinit_counts)
    # 10%, 20%, 30% of each eligible weight per cycle
    n = trained_small_cnn["features.3.weight"].numel()
    fractions = [c["features.3"] / n for c in m.reinit_counts]
    assert fractions == pytest.approx([0.1, 0.2, 0.3], abs=0.03)


def test_cyclic_reinit_mse_skips_projection_shortcuts(digits_data):
    model = _tiny_resnet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    m = _build("cyclic_reinit_mse", digits_data, model, epochs=0)
    m.run(lambda **_: pytest.fail("no fit with epochs=0"))
    state = model.state_dict()
    for k in before:
        if "downsample.0" in k or k.startswith("7."):
            assert torch.equal(state[k], before[k]), k
    assert not torch.equal(state["1.conv1.weight"], before["1.conv1.weight"])
    assert not torch.equal(state["0.weight"], before["0.weight"])


def test_kl_uniform_adversarial_raises_forget_entropy(digits_data, trained_small_cnn):
    from unlearnlab.methods.helpers import entropy
    from unlearnlab.models.small_cnn import SmallCNN

    x = MethodData(digits_data, frozenset({"forget"}), 0, "test").tensors("forget")[0]
    original = SmallCNN(1, 10, 8, width=16)
    original.load_state_dict(trained_small_cnn)
    with torch.no_grad():
        h0 = float(entropy(original.eval()(x)).mean())
    # epochs=0: only the KL-to-uniform phase (1 epoch over forget) runs
    m = run_method("kl_uniform_adversarial", digits_data, trained_small_cnn, epochs=0, batch_size=32, uniform_lr=0.02)
    with torch.no_grad():
        h1 = float(entropy(m.model.eval()(x)).mean())
    assert h0 + 0.1 < h1 < math.log(10)


def test_transposed_pseudo_branches(digits_data, trained_small_cnn):
    from unlearnlab.methods.transposed_pseudo import pick_branch

    branches = [pick_branch(s) for s in range(40)]
    assert branches == [pick_branch(s) for s in range(40)]  # a cell's branch is fixed by its seed
    assert 10 <= branches.count("transpose") <= 30
    m = run_method("transposed_pseudo", digits_data, trained_small_cnn, epochs=0, branch="transpose")
    state = m.model.state_dict()
    convs = [k for k in trained_small_cnn if k.startswith("features.") and trained_small_cnn[k].dim() == 4]
    assert len(convs) == 3
    for k in convs:
        assert torch.equal(state[k], trained_small_cnn[k].transpose(2, 3)), k
    p = run_method("transposed_pseudo", digits_data, trained_small_cnn, epochs=0, branch="pseudo", confidence=0.0)
    assert p.n_pseudo >= 0 and p.branch == "pseudo"


def test_reset_distill_resets_first_and_last_layer_before_warmup(digits_data, trained_small_cnn):
    seen = {}

    def make_trainer(max_epochs, phase="train"):
        seen.setdefault(phase, {k: v.clone() for k, v in m.model.state_dict().items()})
        raise _Stop

    class _Stop(Exception):
        pass

    m = _build_small("reset_distill", digits_data, trained_small_cnn)
    with pytest.raises(_Stop):
        m.run(make_trainer)
    before_warmup = seen["warmup"]
    assert m.reset_layers == ["features.0", "classifier"]
    for k, v in trained_small_cnn.items():
        reset = k.startswith("features.0.") or k.startswith("classifier.")
        assert torch.equal(before_warmup[k], v) != reset, k


def _build_small(name, digits_data, state_dict, **overrides):
    from unlearnlab.models.small_cnn import SmallCNN

    model = SmallCNN(1, 10, 8, width=16)
    model.load_state_dict(state_dict)
    return _build(name, digits_data, model, **overrides)


@pytest.mark.parametrize("preset", ["prune_reinit_digits", "reset_noise_digits", "reset_distill_digits",
                                    "transposed_pseudo_digits"])
def test_digits_presets_compose(preset):
    from conftest import method_config

    cfg = method_config(preset)
    base = method_config(preset.removesuffix("_digits"))
    assert cfg["name"] == preset and cfg["_target_"] == base["_target_"]
    assert cfg["lr"] != base["lr"]
