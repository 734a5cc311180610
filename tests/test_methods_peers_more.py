"""The peers' remaining methods (SPECS §4, issue #22): ssd, lfssd, fisher, wfisher, unsir, cf_k,
eu_k, srl — what each one does, measured: which weights change and by how much, what it trains
on. (Every method config is also run by the generic contract tests and tests/test_schedules.py.)

The closed-form methods are checked against formulas computed here independently, on sets small
enough that each fits in one batch (so a batch gradient is the set's gradient)."""

from __future__ import annotations

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from conftest import make_trainer, method_config

from unlearnlab.data import StudyData
from unlearnlab.data.loader import normalise
from unlearnlab.methods.base import MethodData
from unlearnlab.models.small_cnn import SmallCNN


def subset(data, forget: int, retain: int, val: int = 32) -> StudyData:
    """`data` with its first `forget` / `retain` / `val` examples of those parts."""
    parts = dict(data.parts)
    for part, n in (("forget", forget), ("retain", retain), ("val", val)):
        parts[part] = (parts[part][0][:n], parts[part][1][:n])
    return StudyData(data.source, data.split, data.device, parts)


@pytest.fixture(scope="module")
def small(digits_data):
    return subset(digits_data, forget=24, retain=96)


def build(name, data, state_dict, seed=0, **overrides):
    from unlearnlab.cells import method_class
    from unlearnlab.registry import instantiate

    cfg = {k: v for k, v in method_config(name, **overrides).items() if k != "name"}
    cls = method_class(cfg, name)
    L.seed_everything(seed, verbose=False)
    model = SmallCNN(1, 10, 8, width=16)
    model.load_state_dict(state_dict)
    return instantiate(cfg, model=model, data=MethodData(data, cls.reads, seed, name))


def no_trainer(**kw):
    raise AssertionError("a closed-form method built a Trainer")


def tensors(data, part):
    x, y = data.parts[part]
    return normalise(x, data.mean, data.std), y


def original(state_dict, train: bool = False) -> SmallCNN:
    """The original model, rebuilt to compute by hand what a method should have (eval mode unless TRAIN)."""
    model = SmallCNN(1, 10, 8, width=16)
    model.load_state_dict(state_dict)
    return model.train(train)


def batch_grads(model, loss) -> dict[str, torch.Tensor]:
    names, params = zip(*model.named_parameters())
    return dict(zip(names, torch.autograd.grad(loss, params)))


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal up to float32 summation order (the method sums a batch in its own shuffled order)."""
    return torch.allclose(a, b, rtol=1e-3, atol=1e-5 * float(b.abs().max()) + 1e-12)


# -- SSD / LFSSD --------------------------------------------------------------------------------
def test_ssd_dampens_exactly_where_forget_importance_dominates(small, trained_small_cnn):
    """I_f = (∇ mean CE on forget)² (one batch); θ ← θ·min(λ I_D/I_f, 1) where I_f > α·I_D, the
    rest and every buffer unchanged, no Trainer."""
    m = build("ssd", small, trained_small_cnn, selection_weighting=1.0, dampening_constant=0.5)
    m.run(no_trainer)
    reference = original(trained_small_cnn)
    x, y = tensors(small, "forget")
    i_f = {n: g.pow(2) for n, g in batch_grads(reference, F.cross_entropy(reference(x), y)).items()}
    xr, yr = tensors(small, "retain")  # retain + forget: 120 examples, one batch of 128
    i_d = {n: g.pow(2) for n, g in
           batch_grads(reference, F.cross_entropy(reference(torch.cat([xr, x])), torch.cat([yr, y]))).items()}
    after = m.model.state_dict()
    selected = 0
    for n, p0 in reference.named_parameters():
        assert close(m.importance["forget"][n], i_f[n]), n
        assert close(m.importance["full"][n], i_d[n]), n
        i_d[n] = m.importance["full"][n]  # the selection is exact on the method's own numbers
        sel = i_f[n] > 1.0 * i_d[n]
        factor = torch.where(sel, (0.5 * i_d[n] / i_f[n]).clamp(max=1.0), torch.ones_like(p0))
        assert torch.allclose(after[n], p0.detach() * factor, rtol=1e-4, atol=1e-7), n
        assert torch.equal(m.dampened[n], sel.cpu()), n
        selected += int(sel.sum())
    assert selected > 0
    for n, b in reference.named_buffers():
        assert torch.equal(after[n], b), n


def test_ssd_at_its_source_alpha_dampens_less(small, trained_small_cnn):
    """α = 10 (the source's) selects a subset of what α = 1 selects."""
    strict = build("ssd", small, trained_small_cnn)
    strict.run(no_trainer)
    loose = build("ssd", small, trained_small_cnn, selection_weighting=1.0)
    loose.run(no_trainer)
    n_strict = sum(int(v.sum()) for v in strict.dampened.values())
    n_loose = sum(int(v.sum()) for v in loose.dampened.values())
    assert n_strict < n_loose
    assert all(bool((strict.dampened[n] <= loose.dampened[n]).all()) for n in strict.dampened)


def test_lfssd_reads_no_labels_and_uses_the_output_norm(small, trained_small_cnn):
    """I_f = |∇ mean ‖f(x)‖²| on forget (one batch); relabelling every example changes nothing."""
    m = build("lfssd", small, trained_small_cnn, selection_weighting=1.0)
    m.run(no_trainer)
    reference = original(trained_small_cnn)
    x, _ = tensors(small, "forget")
    grads = batch_grads(reference, reference(x).pow(2).sum(1).mean())
    for n, g in grads.items():
        assert close(m.importance["forget"][n], g.abs()), n
    assert sum(int(v.sum()) for v in m.dampened.values()) > 0
    parts = {k: (v[0], (v[1] + 3) % 10) for k, v in small.parts.items()}
    relabelled = build("lfssd", StudyData(small.source, small.split, small.device, parts), trained_small_cnn,
                       selection_weighting=1.0)
    relabelled.run(no_trainer)
    for k, v in m.model.state_dict().items():
        assert torch.equal(v, relabelled.model.state_dict()[k]), k


# -- Fisher forgetting / WoodFisher influence ---------------------------------------------------
def test_fisher_adds_noise_scaled_by_the_inverse_retain_fisher(small, trained_small_cnn):
    """One retain batch: F(classifier.bias) = Σ_c mean p(c)·(mean_i (p_i − e_c))² (the CE
    gradient of a bias, written out); var = α·min(1/(F + 1e-8), 1e2)·10 there; every weight
    moves by sqrt(var)·z with z standard normal; rows of a matrix share one variance."""
    m = build("fisher", small, trained_small_cnn, alpha=1e-6, batch_size=128)
    m.run(no_trainer)
    reference = original(trained_small_cnn)
    x, _ = tensors(small, "retain")
    with torch.no_grad():
        p = F.softmax(reference(x), dim=1)
    eye = torch.eye(10)
    fisher_bias = sum(p[:, c].mean() * (p - eye[c]).mean(0).pow(2) for c in range(10))
    assert torch.allclose(m.fisher["classifier.bias"], fisher_bias, rtol=1e-4, atol=1e-12)
    var_bias = 1e-6 * (1 / (fisher_bias + 1e-8)).clamp(max=1e3).clamp(max=1e2) * 10
    assert torch.allclose(m.variance["classifier.bias"], var_bias, rtol=1e-5)
    z = torch.cat([((m.model.state_dict()[n] - p0.detach()) / m.variance[n].sqrt()).flatten()
                   for n, p0 in reference.named_parameters()])
    assert abs(float(z.mean())) < 0.05 and abs(float(z.std()) - 1) < 0.05  # ~17k draws
    w = m.variance["features.3.weight"]
    assert torch.equal(w, w[:, :1].expand_as(w))
    for n, b in reference.named_buffers():
        assert torch.equal(m.model.state_dict()[n], b), n


def test_fisher_noise_grows_as_the_square_root_of_alpha(small, trained_small_cnn):
    """The same cell seed draws the same z: four times α moves every weight twice as far."""
    runs = [build("fisher", small, trained_small_cnn, alpha=a) for a in (1e-6, 4e-6)]
    for m in runs:
        m.run(no_trainer)
    for n, p0 in trained_small_cnn.items():
        if n in dict(runs[0].model.named_parameters()):
            d1, d4 = runs[0].model.state_dict()[n] - p0, runs[1].model.state_dict()[n] - p0
            assert torch.allclose(d4, 2 * d1, rtol=1e-4, atol=1e-7), n


def test_wfisher_steps_along_the_forget_minus_retain_gradient(small, trained_small_cnn):
    """With one retain example the WoodFisher loop leaves k = v, so θ_new − θ = α·v with
    v = n_f/(n_f + 1)·(mean forget gradient − retain gradient)."""
    data = subset(small, forget=24, retain=1)
    m = build("wfisher", data, trained_small_cnn, alpha=0.5)
    m.run(no_trainer)
    reference = original(trained_small_cnn)
    xf, yf = tensors(data, "forget")
    xr, yr = tensors(data, "retain")
    g_f = batch_grads(reference, F.cross_entropy(reference(xf), yf))
    g_r = batch_grads(reference, F.cross_entropy(reference(xr), yr))
    for n, p0 in reference.named_parameters():
        v = 24 / 25 * (g_f[n] - g_r[n])
        assert torch.allclose(m.model.state_dict()[n] - p0.detach(), 0.5 * v, rtol=1e-3, atol=1e-7), n
    assert m.examples_used == 1


def test_wfisher_reads_n_plus_two_retain_examples(small, trained_small_cnn):
    m = build("wfisher", small, trained_small_cnn, n_samples=5)
    m.run(no_trainer)
    assert m.examples_used == 7  # the source returns once idx > N


# -- UNSIR ------------------------------------------------------------------------------------
def test_unsir_learns_error_maximising_noise_per_forgotten_class_and_never_reads_forget_images(
        digits_data, trained_small_cnn):
    x, y = digits_data.parts["forget"]
    two = torch.nonzero(y < 2).flatten()[:12]
    data = subset(digits_data, forget=0, retain=96)
    data.parts["forget"] = (x[two], y[two])
    runs = []
    for images in (x[two], torch.zeros_like(x[two])):  # the forget images, then blank ones
        data.parts["forget"] = (images, y[two])
        m = build("unsir", data, trained_small_cnn, batch_size=16, noise_steps=10, noise_copies=2)
        m.run(lambda **kw: make_trainer(**kw, limit_train_batches=3))
        runs.append(m)
    m = runs[0]
    assert sorted(m.noise) == [0, 1]  # one noise batch per class the forget labels name
    reference = original(trained_small_cnn, train=True)
    for c, noise in m.noise.items():
        start = torch.randn(noise.shape, generator=torch.Generator().manual_seed(0))
        labels = torch.full((len(noise),), c)
        with torch.no_grad():
            assert F.cross_entropy(reference(noise), labels) > F.cross_entropy(reference(start), labels)
    xi, yi = m._sets["impair"]
    assert len(yi) == 2 * 2 * 16 + 96 and int((yi[: 2 * 2 * 16] < 2).sum()) == 64
    assert torch.equal(m._sets["repair"][1], tensors(data, "retain")[1])  # ≤ 1,000 per class: all 96
    for k, v in runs[0].model.state_dict().items():
        assert torch.equal(v, runs[1].model.state_dict()[k]), k  # forget images never read


# -- CF-k / EU-k ------------------------------------------------------------------------------
def _changed(model, state) -> set[str]:
    return {n for n, p in model.named_parameters() if not torch.equal(p.detach(), state[n])}


def test_cf_k_trains_only_the_last_block_and_the_classifier(small, trained_small_cnn):
    m = build("cf_k", small, trained_small_cnn, epochs=2)
    m.run(lambda **kw: make_trainer(**kw, limit_train_batches=2))
    assert m.trainable == ["features.7", "features.8", "classifier"]  # conv + its BatchNorm, then the head
    trained = {"features.7.weight", "features.8.weight", "features.8.bias", "classifier.weight", "classifier.bias"}
    assert _changed(m.model, trained_small_cnn) == trained
    assert all(p.requires_grad for p in m.model.parameters())  # unfrozen again after the fit


def test_cf_k_takes_a_resnets_last_stage(digits_data):
    from unlearnlab.methods.helpers import last_blocks
    from unlearnlab.models.resnet import resnet18_cifar

    blocks = last_blocks(resnet18_cifar(3, 10, 32), 2)
    assert [[n for n, _ in b] for b in blocks] == [["layer3"], ["layer4"]]


def test_eu_k_reinitialises_them_as_a_fresh_model_then_retrains_them(small, trained_small_cnn):
    from unlearnlab.methods.helpers import fresh_init

    seen = {}

    class AtStart(L.Callback):
        def on_train_start(self, trainer, pl_module):
            seen.update({k: v.clone() for k, v in pl_module.model.state_dict().items()})

    m = build("eu_k", small, trained_small_cnn, epochs=1)
    m.run(lambda **kw: make_trainer(**kw, limit_train_batches=2, callbacks=[AtStart()]))
    fresh = SmallCNN(1, 10, 8, width=16)
    fresh_init(fresh, {"_target_": "unlearnlab.models.small_cnn.SmallCNN", "width": 16}, (1, 8, 8), 10, 0)
    reset = ("features.7.", "features.8.", "classifier.")
    for k, v in seen.items():  # at the fit's start: the reset modules fresh (buffers too), the rest the original's
        assert torch.equal(v, fresh.state_dict()[k] if k.startswith(reset) else trained_small_cnn[k]), k
    assert _changed(m.model, trained_small_cnn) == {n for n, _ in m.model.named_parameters() if n.startswith(reset)}


# -- SRL --------------------------------------------------------------------------------------
def _match(rows: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """For each row, the index of the first equal example in `reference`."""
    return (rows[:, None] == reference[None]).flatten(2).all(-1).float().argmax(1)


def test_srl_mixes_forget_with_fresh_random_labels_into_retain_batches(small, trained_small_cnn):
    m = build("srl", small, trained_small_cnn, batch_size=32)
    loader = m.train_dataloader()
    xf, yf = tensors(small, "forget")
    xr, yr = tensors(small, "retain")
    per_epoch = []
    for _ in range(40):
        batches = list(loader)
        x, y, is_forget = (torch.cat(t) for t in zip(*batches))
        assert len(y) == 24 + 96 and int(is_forget.sum()) == 24
        assert any(0 < int(b[2].sum()) < len(b[2]) for b in batches)  # forget and retain share batches
        assert torch.equal(y[~is_forget], yr[_match(x[~is_forget], xr)])  # retain keeps its labels
        labels = torch.empty_like(yf)
        labels[_match(x[is_forget], xf)] = y[is_forget]
        per_epoch.append(labels)
    kept = float((torch.stack(per_epoch) == yf).float().mean())
    assert abs(kept - 0.1) < 0.04  # uniform over all 10 classes: ~1/10 keep their own label
    assert len({tuple(labels.tolist()) for labels in per_epoch}) == 40  # fresh labels every epoch
    m.run(lambda **kw: make_trainer(**kw, limit_train_batches=2))
    assert _changed(m.model, trained_small_cnn)


# -- issue 22's fixes to earlier methods, measured ----------------------------------------------
def test_salun_computes_its_mask_on_the_augmented_forget_loader(small, trained_small_cnn):
    """salun_cifar10 (crop + flip): the mask is the top |g| of the gradient summed over the same
    augmented, shuffled forget batches the loader yields — not over the plain images."""
    from unlearnlab.data.loader import Augment

    m = build("salun_cifar10", small, trained_small_cnn, batch_size=16)
    mask = m.saliency_mask()
    model = SmallCNN(1, 10, 8, width=16)
    model.load_state_dict(trained_small_cnn)
    model.eval()
    for xb, yb in small.batches("forget", 16, True, m.data.seed + 2, Augment(4, True)):
        F.cross_entropy(model(xb), yb).backward()
    g = torch.cat([p.grad.abs().flatten() for p in model.parameters()])
    got = torch.cat([mask[n].flatten() for n, _ in model.named_parameters()])
    assert got.float().mean() == pytest.approx(0.5, abs=1e-3)
    assert g[got].min() >= g[~got].max() * (1 - 1e-5)
    plain = build("salun", small, trained_small_cnn, batch_size=16).saliency_mask()
    assert not all(torch.equal(mask[n], plain[n]) for n in mask)


def test_kl_uniform_adversarial_scales_its_retain_lr_by_the_batch_as_the_source():
    from unlearnlab.errors import ConfigError
    from unlearnlab.methods.kl_uniform_adversarial import KLUniformAdversarial

    for batch in (64, 256):
        assert KLUniformAdversarial(SmallCNN(1, 10, 8), None, batch_size=batch).optim.lr == pytest.approx(1e-3 * batch / 64)
    with pytest.raises(ConfigError, match="retain_lr"):
        KLUniformAdversarial(SmallCNN(1, 10, 8), None, lr=0.004)


def test_reset_noise_digits_adds_noise_on_small_cnn(small, trained_small_cnn):
    """By the source's ratio, 2 of small_cnn's 5 non-BatchNorm tensors train per selective epoch,
    so tensors not trained before do get noise in epochs 1–4 (with 9, none ever did)."""
    from unlearnlab.methods.reset_noise import batchnorm_parameters

    m = build("reset_noise_digits", small, trained_small_cnn)
    m.run(lambda **kw: make_trainer(**kw, limit_train_batches=1))
    bn = batchnorm_parameters(m.model)
    assert [len(set(t) - bn) for t in m.trainable[:5]] == [2] * 5
    assert sum(len(n) for n in m.noised[1:5]) > 0 and all(len(n) <= 1 for n in m.noised)
    nine = build("reset_noise_digits", small, trained_small_cnn, n_tensors=9, fine_lrs="[1e-3]", epochs=3)
    nine.run(lambda **kw: make_trainer(**kw, limit_train_batches=1))
    assert nine.noised == [[], [], []]


def test_cyclic_reinit_mse_digits_reinitialises_one_layer_per_cycle(small, trained_small_cnn):
    m = build("cyclic_reinit_mse_digits", small, trained_small_cnn, cycle_epochs="[0,0,0]")
    m.run(no_trainer)
    assert [len(c) for c in m.reinit_layers] == [1, 1, 1]
