"""The peer methods (SPECS §4): neggrad, random_label, l1_sparse, salun, scrub, bad_teacher,
boundary_shrink — each does what its paper says, measured. The contract every method keeps (runs
through the Trainer, bit-reproducible, never sees test data, train mode) is checked for every
installed method by tests/test_methods_contract.py, which finds them by itself."""

from __future__ import annotations

import functools
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from conftest import make_trainer, method_config

from unlearnlab.methods.base import MethodData
from unlearnlab.models.small_cnn import SmallCNN

# The runs two behaviour tests below measure (1 epoch, at most LIMIT batches per fit): enough steps
# to move the weights. These are those tests' own settings, not a list of methods.
BEHAVIOUR_RUNS = {
    "neggrad": {"epochs": 1, "batch_size": 64, "lr": 0.05},
    "salun": {"epochs": 1, "batch_size": 64},
}
LIMIT = 3


def model_from(state_dict) -> SmallCNN:
    model = SmallCNN(1, 10, 8, width=16)
    model.load_state_dict(state_dict)
    return model.eval()


@torch.no_grad()
def accuracy(model, data, part: str) -> float:
    x, y = data.parts[part]
    from unlearnlab.data.loader import normalise

    logits = model.eval()(normalise(x, data.mean, data.std))
    return float((logits.argmax(1) == y).float().mean())


@torch.no_grad()
def forget_ce(model, data) -> float:
    from unlearnlab.data.loader import normalise

    x, y = data.parts["forget"]
    return float(F.cross_entropy(model.eval()(normalise(x, data.mean, data.std)), y))


@functools.lru_cache(maxsize=None)
def _config(name: str, overrides: tuple) -> dict:
    return method_config(name, **dict(overrides))  # composing with Hydra costs ~1 s here


def build(name, digits_data, state_dict, seed=0, reads=None, **overrides):
    """The method as the framework builds it, not run (optionally with another `reads`)."""
    from unlearnlab.cells import method_class
    from unlearnlab.registry import instantiate

    cfg = {k: v for k, v in _config(name, tuple(sorted(overrides.items()))).items() if k != "name"}
    L.seed_everything(seed, verbose=False)
    cls = method_class(cfg, name)
    allowed = cls.reads if reads is None else frozenset(reads)
    return instantiate(cfg, model=model_from(state_dict).train(), data=MethodData(digits_data, allowed, seed, name))


def limited(limit: int = LIMIT):
    """conftest's make_trainer, capped at `limit` batches per epoch (the shared CPU is slow)."""
    return lambda **kw: make_trainer(**kw, limit_train_batches=limit)


def run_limited(name, digits_data, state_dict, seed=0, limit=LIMIT, **overrides):
    method = build(name, digits_data, state_dict, seed, **overrides)
    method.run(limited(limit))
    return method


@pytest.fixture(scope="module")
def runs(digits_data, trained_small_cnn):
    """The runs the behaviour tests below measure, seed 0."""
    return {name: run_limited(name, digits_data, trained_small_cnn, 0, **cfg) for name, cfg in BEHAVIOUR_RUNS.items()}


# -- each peer's own behaviour ---------------------------------------------------------------
def test_neggrad_raises_forget_ce(runs, digits_data, trained_small_cnn):
    before = forget_ce(model_from(trained_small_cnn), digits_data)
    after = forget_ce(runs["neggrad"].model, digits_data)
    assert after > before + 0.05, (before, after)


def test_random_label_lowers_forget_accuracy(digits_data, trained_small_cnn):
    before = accuracy(model_from(trained_small_cnn), digits_data, "forget")
    # 2 batches of 64 per epoch = the whole forget set (it comes first), relabelled each epoch
    method = run_limited("random_label", digits_data, trained_small_cnn, 0, limit=2, epochs=3, batch_size=64, lr=0.05)
    after = accuracy(method.model, digits_data, "forget")
    assert after < before - 0.05, (before, after)


def test_l1_sparse_shrinks_l1_norm_vs_finetune(digits_data, trained_small_cnn):
    from unlearnlab.methods.l1_sparse import l1_norm

    common = {"epochs": 1, "batch_size": 64, "lr": 0.01, "limit": 4}
    plain = run_limited("l1_sparse", digits_data, trained_small_cnn, 0, alpha=0.0, **common)
    sparse = run_limited("l1_sparse", digits_data, trained_small_cnn, 0, alpha=0.05, **common)
    ft = run_limited("finetune", digits_data, trained_small_cnn, 0, scheduler="none", **common)
    with torch.no_grad():
        n_plain, n_sparse, n_ft = (float(l1_norm(m.model)) for m in (plain, sparse, ft))
    assert n_plain == pytest.approx(n_ft, rel=1e-6)  # α = 0 is plain finetune, step for step
    assert n_sparse < 0.99 * n_ft, (n_sparse, n_ft)


def test_salun_moves_only_masked_weights(runs, trained_small_cnn):
    method = runs["salun"]
    total = sum(m.numel() for m in method.mask.values())
    kept = sum(int(m.sum()) for m in method.mask.values())
    assert kept / total == pytest.approx(method.mask_fraction, abs=1.0 / total + 1e-9)
    moved_in_mask = 0
    for name, p in method.model.named_parameters():
        m, orig = method.mask[name], trained_small_cnn[name]
        assert torch.equal(p.detach()[~m], orig[~m]), f"{name}: a masked-out weight moved"
        moved_in_mask += int((p.detach()[m] != orig[m]).sum())
    assert moved_in_mask > 0.5 * kept  # the masked weights did train


def test_salun_mask_is_the_top_forget_gradients(digits_data, trained_small_cnn):
    method = build("salun", digits_data, trained_small_cnn, mask_fraction=0.2)
    mask = method.saliency_mask()
    x, y = digits_data.parts["forget"]
    from unlearnlab.data.loader import normalise

    model = model_from(trained_small_cnn)
    F.cross_entropy(model(normalise(x, digits_data.mean, digits_data.std)), y, reduction="sum").backward()
    g = torch.cat([p.grad.abs().flatten() for p in model.parameters()])
    m = torch.cat([mask[n].flatten() for n, _ in model.named_parameters()])
    assert m.float().mean() == pytest.approx(0.2, abs=1e-3)
    assert g[m].min() >= g[~m].max() * (1 - 1e-5)


def test_scrub_max_step_raises_forget_kl(digits_data, trained_small_cnn):
    from unlearnlab.methods.helpers import kl_student_teacher
    from unlearnlab.data.loader import normalise

    method = build("scrub", digits_data, trained_small_cnn, epochs=1, msteps=1, forget_batch_size=32, lr=0.01)
    x = normalise(digits_data.parts["forget"][0], digits_data.mean, digits_data.std)

    def kl() -> float:
        with torch.no_grad():
            was = method.model.training
            out = float(kl_student_teacher(method.model.eval()(x), method.teacher()(x), method.temperature))
            method.model.train(was)
            return out

    before = kl()
    method.fit_phase(limited(2), "max", 0)
    after_max = kl()
    assert before < 1e-6 < after_max, (before, after_max)
    assert method.phase == "max"
    method.fit_phase(limited(2), "min", 0)  # the same optimizer carries on into the min phase
    assert method.configure_optimizers() is method._optim


def test_bad_teacher_moves_forget_outputs_toward_random_teacher(digits_data, trained_small_cnn):
    from unlearnlab.data.loader import normalise

    method = run_limited("bad_teacher", digits_data, trained_small_cnn, 0, limit=4, epochs=2, batch_size=64, lr=1e-3)
    x = normalise(digits_data.parts["forget"][0], digits_data.mean, digits_data.std)

    def kl_to_bad(model) -> float:
        with torch.no_grad():
            p_bad = F.softmax(method.teacher("bad")(x), 1)
            return float(F.kl_div(F.log_softmax(model.eval()(x), 1), p_bad, reduction="batchmean"))

    before, after = kl_to_bad(model_from(trained_small_cnn)), kl_to_bad(method.model)
    assert after < 0.8 * before, (before, after)


def test_boundary_shrink_labels_are_the_probe_argmax_and_failed_attacks_keep_the_true_label(digits_data, trained_small_cnn):
    """TY-LEE-KR boundary_shrink(): label = argmax of the frozen probe on the FGSM input, so where
    the attack fails the true label stays; batch 64 as its main.py."""
    from unlearnlab.data.loader import normalise
    from unlearnlab.methods.helpers import fgsm

    assert _config("boundary_shrink", ())["batch_size"] == 64
    method = run_limited("boundary_shrink", digits_data, trained_small_cnn, 0, limit=2, epochs=3, batch_size=64, lr=0.05)
    x, y = digits_data.parts["forget"]
    x = normalise(x, digits_data.mean, digits_data.std)
    probe = model_from(trained_small_cnn)
    expected = probe(fgsm(probe, x, y, 0.1, digits_data.mean, digits_data.std)).argmax(1)
    assert torch.equal(method.adv_labels, expected)
    kept = float((method.adv_labels == y).float().mean())
    assert 0.0 < kept < 1.0  # some attacks fail (label kept), some succeed
    assert float(method.flip_rate) == pytest.approx(1 - kept)
    before = accuracy(model_from(trained_small_cnn), digits_data, "forget")
    after = accuracy(method.model, digits_data, "forget")
    assert after < before - 0.1, (before, after)


def test_random_labels_are_uniform_over_all_classes_as_salun(digits_data):
    from unlearnlab.methods.helpers import generator, random_labels

    y = torch.zeros(20_000, dtype=torch.long)
    same = float((random_labels(y, 10, generator(0)) == y).float().mean())
    assert same == pytest.approx(0.1, abs=0.01)  # torch.randint(0, C) as RL.py: ~1/C keep the true label
    assert not bool((random_labels(y, 10, generator(0), exclude_true=True) == y).any())
    assert _config("random_label", ())["exclude_true"] is False


def test_scrub_runs_the_batch_sizes_its_notebook_loaders_use():
    cfg = _config("scrub", ())
    assert (cfg["forget_batch_size"], cfg["batch_size"]) == (512, 256)


def test_neggrad_plus_defaults_are_the_scrub_repository_s(digits_data, trained_small_cnn):
    cfg = _config("neggrad_plus", ())
    assert {k: cfg[k] for k in ("optimizer", "lr", "momentum", "weight_decay", "scheduler", "epochs", "batch_size",
                                "forget_batch_size", "alpha", "l2_to_original")} == {
        "optimizer": "sgd", "lr": 0.01, "momentum": 0.0, "weight_decay": 0.0, "scheduler": "none", "epochs": 10,
        "batch_size": 128, "forget_batch_size": 64, "alpha": 0.95, "l2_to_original": 0.1}
    method = run_limited("neggrad_plus", digits_data, trained_small_cnn, 0, limit=3, epochs=1)
    moved = sum(float(((p.detach() - p0) ** 2).sum()) for p, p0 in zip(method.model.parameters(), method._theta0))
    assert moved > 0 and float(method.l2_penalty()) == pytest.approx(moved, rel=1e-5)


@pytest.mark.parametrize("name", ["retrain", "bad_teacher"])
def test_fresh_networks_start_as_the_reference_retrained_models_do(name, digits_data, trained_small_cnn):
    """The retrain control and bad_teacher's incompetent teacher are built as cells.py builds the
    reference retrained models: L.seed_everything(seed), then build_model(model config)."""
    from unlearnlab.models import build_model

    method = build(name, digits_data, trained_small_cnn, seed=5, epochs=0)
    net, seed = (method.model, 5) if name == "retrain" else (method.teacher("bad"), 6)
    L.seed_everything(seed, verbose=False)
    reference = build_model({"name": "small_cnn", "_target_": "unlearnlab.models.small_cnn.SmallCNN", "width": 16},
                            digits_data.input_shape, 10)
    for k, v in reference.state_dict().items():
        assert torch.equal(net.state_dict()[k], v), k


def test_fresh_init_follows_the_model_s_own_scheme_on_resnet18(digits_data):
    """On torchvision's ResNet the constructor's init (kaiming-normal fan_out convs) differs from
    reset_parameters(): the fresh network must carry the constructor's."""
    from unlearnlab.methods.helpers import fresh_init
    from unlearnlab.models import build_model

    arch = {"name": "resnet18", "_target_": "unlearnlab.models.resnet.resnet18"}
    L.seed_everything(3, verbose=False)
    reference = build_model(arch, (3, 32, 32), 10)
    net = build_model(arch, (3, 32, 32), 10)
    fresh_init(net, arch, (3, 32, 32), 10, 3)
    for k, v in reference.state_dict().items():
        assert torch.equal(net.state_dict()[k], v), k
    w = net.layer1[0].conv1.weight
    assert float(w.std()) == pytest.approx((2 / (64 * 9)) ** 0.5, rel=0.1)  # kaiming-normal, fan_out


def test_digits_presets_exist_for_the_methods_that_need_them():
    """The peers whose source settings fail on digits have a NAME_digits preset (the README's table)."""
    for name in ["bad_teacher", "boundary_shrink", "neggrad", "neggrad_plus", "scrub"]:
        assert (Path(__file__).resolve().parents[1] / "conf" / "method" / f"{name}_digits.yaml").exists(), name


@pytest.mark.parametrize("name", ["salun", "l1_sparse", "random_label", "neggrad"])
def test_cifar10_presets_unlearn_on_crop_and_flip(name):
    """SalUn / Unlearn-Sparse keep the CIFAR train transform (RandomCrop(32, 4) + flip) on the
    sets they unlearn on; NAME_cifar10 does the same, the rest is NAME's."""
    base, preset = method_config(name), method_config(f"{name}_cifar10")
    assert (preset["crop_padding"], preset["flip"]) == (4, True)
    assert {k: v for k, v in preset.items() if k not in ("name", "crop_padding", "flip")} == \
        {k: v for k, v in base.items() if k not in ("name", "crop_padding", "flip")}
