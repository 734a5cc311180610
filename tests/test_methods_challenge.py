"""The NeurIPS 2023 challenge entries (SPECS §4, entries 1–8) on digits, with tiny budgets.

Each entry's own mechanism, measured: what it resets, perturbs, transposes or scales. The contract
every method keeps (runs through the Trainer, changes the model, bit-identical for one seed,
reads only what it declares, never test) is checked for every installed method by
tests/test_methods_contract.py, which finds them by itself.
"""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch

from conftest import run_method
from unlearnlab.methods.base import MethodData

# batch 512 keeps every fit to a handful of steps on the shared CPU
FAST = {"batch_size": 512, "epochs": 1}


def _class(name):
    from conftest import method_config
    from unlearnlab.cells import method_class

    return method_class({k: v for k, v in method_config(name).items() if k != "name"}, name)


def _changed(state, original) -> float:
    return sum(float((state[k].float() - original[k].float()).abs().sum()) for k in original)


def _build(name, digits_data, model, seed=0, **overrides):
    """Instantiate method NAME on an arbitrary model without running it."""
    from conftest import method_config
    from unlearnlab.registry import instantiate

    cfg = {k: v for k, v in method_config(name, **overrides).items() if k != "name"}
    cls = _class(name)
    return instantiate(cfg, model=model, data=MethodData(digits_data, cls.reads, seed, name))


def test_prune_reinit_resets_99_percent_then_quantises(digits_data, trained_small_cnn):
    """KGLTop4: global L1 over conv/linear weights and biases resets 99%; the model ends with an
    fp16 round trip (every floating tensor fp16-representable)."""
    from unlearnlab.methods.helpers import weight_layers

    m = run_method("prune_reinit", digits_data, trained_small_cnn, epochs=0)
    names = [f"{n}.{pn}" for n, mod in weight_layers(m.model) for pn, _ in mod.named_parameters(recurse=False)]
    after = torch.cat([m.model.state_dict()[k].flatten() for k in names])
    before = torch.cat([trained_small_cnn[k].flatten() for k in names])
    assert m.reset_fraction == pytest.approx(0.99, abs=1e-3)
    n_keep = before.numel() - round(0.99 * before.numel())
    keep = torch.zeros(before.numel(), dtype=torch.bool)
    keep[torch.topk(before.abs(), n_keep).indices] = True
    assert torch.equal(after[keep], before[keep].half().float())  # the 1% largest |w| are kept
    assert float((after[~keep] != before[~keep].half().float()).float().mean()) > 0.99  # the rest reset
    for k, t in m.model.state_dict().items():
        if t.is_floating_point():
            assert torch.equal(t, t.half().float()), k


def test_prune_reinit_trains_fractional_epochs_as_the_source(digits_data, trained_small_cnn):
    m = run_method("prune_reinit", digits_data, trained_small_cnn, batch_size=256)
    batches = -(-digits_data.parts["retain"][1].numel() // 256)
    assert m.epochs == 4 and m.max_steps == int(batches * 3.2) + 1
    assert m.trainer.global_step == m.max_steps


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




class _Snapshots(L.Callback):
    """Per fit: the parameters at its start and end, and the optimiser's learning rate."""

    def __init__(self) -> None:
        self.fits: list[dict] = []

    def on_train_start(self, trainer, pl_module) -> None:
        self.fits.append({"start": {k: v.detach().clone() for k, v in pl_module.model.named_parameters()},
                          "lr": trainer.optimizers[0].param_groups[0]["lr"]})

    def on_train_end(self, trainer, pl_module) -> None:
        self.fits[-1]["end"] = {k: v.detach().clone() for k, v in pl_module.model.named_parameters()}


def test_reset_noise_trains_nine_tensors_plus_batchnorm_then_everything(digits_data):
    """KGLTop7: per selective epoch exactly 9 drawn non-BN tensors + every BN tensor move; noise
    (σ 0.04) on the never-trained ones among 6 of the 9 in epochs 1–4; the last 4 epochs train
    everything at [2e-4, 2e-4, 2e-4, 1e-3]; the classifier is reset first."""
    from conftest import quick_trainer

    from unlearnlab.methods.reset_noise import batchnorm_parameters

    model = _tiny_resnet()
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    m = _build("reset_noise", digits_data, model, lr=0.05)  # a large lr so that every trained tensor moves
    snaps = _Snapshots()
    m.run(lambda max_epochs, phase="train": quick_trainer(max_epochs, callbacks=[snaps], limit_train_batches=2))
    bn = batchnorm_parameters(model)
    assert len(bn) == 16 and len(before) - len(bn) == 16  # 8 BN layers; 13 conv weights, conv0 bias, fc w+b
    assert len(snaps.fits) == 9
    assert [f["lr"] for f in snaps.fits] == pytest.approx([0.05] * 5 + [2e-4, 2e-4, 2e-4, 1e-3])
    assert not torch.equal(snaps.fits[0]["start"]["7.weight"], before["7.weight"])  # classifier reset
    ever: set[str] = set()
    for e, fit in enumerate(snaps.fits):
        moved = {k for k in fit["end"] if not torch.equal(fit["end"][k], fit["start"][k])}
        assert moved == set(m.trainable[e]), e
        if e < 5:
            assert len(moved - bn) == 9 and bn <= moved, e
        else:
            assert moved == set(before), e
        if e:
            previous = snaps.fits[e - 1]["end"]
            noised = {k for k in fit["start"] if not torch.equal(fit["start"][k], previous[k])}
            assert noised == set(m.noised[e]), e
            assert e in (1, 2, 3, 4) or not noised, e
            assert noised <= (set(m.trainable[e]) - bn) - ever, e
            for k in noised:
                if fit["start"][k].numel() >= 100:
                    assert float((fit["start"][k] - previous[k]).std()) == pytest.approx(0.04, rel=0.25), k
        ever |= set(m.trainable[e])
    assert 0 < sum(len(n) for n in m.noised[1:5]) <= 4 * 6


def test_grad_reinit_reinitialises_the_30_percent_smallest_gradient_weights(digits_data, trained_small_cnn):
    """KGLTop2 (re_init_model_snip_ver2_little_grad): in every conv, exactly round(0.3·numel)
    individual weights — those with the smallest |retain grad − forget grad| — get new values."""
    m = _build_small("grad_reinit", digits_data, trained_small_cnn, epochs=0)
    m.accumulate_scores()
    grads = {n: mod.weight.grad.detach().abs().clone() for n, mod in m.model.named_modules()
             if isinstance(mod, torch.nn.Conv2d)}
    m.reinit()
    assert sorted(m.reinit_masks) == ["features.0", "features.3", "features.7"]
    for name, mask in m.reinit_masks.items():
        w, w0, g = m.model.state_dict()[f"{name}.weight"], trained_small_cnn[f"{name}.weight"], grads[name]
        assert int(mask.sum()) == round(0.3 * mask.numel())
        assert torch.equal(w != w0, mask), name  # exactly the masked weights changed
        assert float(g[mask].max()) <= float(g[~mask].min()), name  # ... and they are the smallest |g|
    assert torch.equal(m.model.state_dict()["classifier.weight"], trained_small_cnn["classifier.weight"])

    def kept_movement(scale):
        r = run_method("grad_reinit", digits_data, trained_small_cnn, keep_grad_scale=scale, **FAST)
        total = 0.0
        for name, mask in r.reinit_masks.items():
            w, w0 = r.model.state_dict()[f"{name}.weight"], trained_small_cnn[f"{name}.weight"]
            total += float((w - w0)[~mask].abs().sum())
        return total

    slow, full = kept_movement(0.1), kept_movement(1.0)
    assert 0 < slow < 0.5 * full  # non-reset weights move less under the 1/10 gradient scale


def test_grad_reinit_learning_rate_follows_linear_annealing():
    from unlearnlab.methods.grad_reinit import warmup_linear

    f = warmup_linear(5)
    assert [f(e) for e in range(5)] == pytest.approx([1 / 3, 2 / 3, 1, 2 / 3, 1 / 3])


def test_cyclic_reinit_mse_reinitialises_six_whole_layers_per_cycle(digits_data):
    """The 8th-place write-up: 6 whole layers per cycle, drawn with replacement, never the
    classifier nor projection shortcuts; cycles of 1/2/2 epochs at lr 1e-3 with σ 0.01 noise."""
    from conftest import method_config

    cfg = method_config("cyclic_reinit_mse")
    assert (cfg["cycle_epochs"], cfg["layers_per_cycle"], cfg["lr"], cfg["noise_std"]) == ([1, 2, 2], 6, 1e-3, 0.01)
    model = _tiny_resnet()
    before = {k: v.clone() for k, v in model.named_parameters()}
    m = _build("cyclic_reinit_mse", digits_data, model, cycle_epochs="[0,0,0]")
    m.run(lambda **_: pytest.fail("no fit with 0-epoch cycles"))
    assert [len(c) for c in m.reinit_layers] == [6, 6, 6]
    drawn = {n for c in m.reinit_layers for n in c}
    assert any(len(set(c)) < 6 for c in m.reinit_layers)  # drawn with replacement
    assert drawn and not any("downsample" in n or n == "7" for n in drawn)
    layers = {n for n, mod in model.named_modules() if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear))}
    for k, p in model.named_parameters():
        layer = k.rsplit(".", 1)[0]
        if layer in layers:
            assert torch.equal(p, before[k]) == (layer not in drawn), k  # whole layers, nothing else


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
