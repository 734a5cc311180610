"""Speed features, checked for correctness (never for timing): the device data path against a
per-sample reference, augmentation bounds and seeding, the channels_last / compile switches,
fastnet, `unlearnlab task=bench` in its tiny CPU form, and (GPU only) bf16 + channels_last."""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, TensorDataset

from unlearnlab.data.loader import Augment, DeviceBatches, normalise
from unlearnlab.models import build_model, memory_format

REPO = Path(__file__).resolve().parents[1]
MEAN = torch.tensor([0.3, 0.5, 0.7]).view(1, 3, 1, 1)
STD = torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1)


def images(n: int = 37, c: int = 3, h: int = 6, w: int = 7, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct random uint8 images; label i = index i, so every output can be traced to its source."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, h, w), generator=g, dtype=torch.uint8), torch.arange(n)


def epochs(batches: DeviceBatches, k: int) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    return [[(x.clone(), y.clone()) for x, y in batches] for _ in range(k)]


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """DeviceBatches' documented stream: one generator per (seed, epoch), permutation first."""
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


# ------------------------------------------------------------------ content and order vs a reference
@pytest.mark.parametrize("drop_last", [False, True])
def test_shuffled_batches_equal_torch_dataloader_with_the_same_permutation(drop_last):
    x, y = images()
    seed, bs = 5, 8
    batches = DeviceBatches(x, y, MEAN, STD, bs, shuffle=True, seed=seed, drop_last=drop_last)
    got = epochs(batches, 3)
    reference_set = TensorDataset(normalise(x, MEAN, STD), y)
    for e, epoch in enumerate(got):
        order = torch.randperm(len(y), generator=epoch_generator(seed, e)).tolist()
        loader = DataLoader(reference_set, batch_size=bs, sampler=order, drop_last=drop_last)
        ref = list(loader)
        assert len(epoch) == len(ref) == len(batches)
        for (gx, gy), (rx, ry) in zip(epoch, ref):
            assert torch.equal(gy, ry)
            assert torch.equal(gx, rx)
    assert sum(len(b[1]) for b in got[0]) == (len(y) // bs * bs if drop_last else len(y))


def test_unshuffled_batches_are_the_data_in_order():
    x, y = images(n=20)
    ref = list(DataLoader(TensorDataset(normalise(x, MEAN, STD), y), batch_size=6, shuffle=False))
    got = list(DeviceBatches(x, y, MEAN, STD, 6, shuffle=False))
    assert len(got) == len(ref) == 4
    for (gx, gy), (rx, ry) in zip(got, ref):
        assert torch.equal(gx, rx) and torch.equal(gy, ry)


def test_augmented_batches_equal_a_per_sample_reference():
    """The batch-wise crop + flip equals torchvision's RandomCrop(pad) + flip done one image at a
    time with the offsets and coins drawn from the same generator stream."""
    x, y = images(n=29)
    seed, bs, p = 2, 8, 3
    got = epochs(DeviceBatches(x, y, MEAN, STD, bs, True, seed, Augment(p, True)), 2)
    _, _, h, w = x.shape
    for e, epoch in enumerate(got):
        gen = epoch_generator(seed, e)
        order = torch.randperm(len(y), generator=gen)
        for b, (gx, gy) in enumerate(epoch):
            idx = order[b * bs : (b + 1) * bs]
            n = len(idx)
            dy = torch.randint(0, 2 * p + 1, (n, 1), generator=gen)
            dx = torch.randint(0, 2 * p + 1, (n, 1), generator=gen)
            flip = torch.rand(n, generator=gen) < 0.5
            assert torch.equal(gy, y[idx])
            for j, i in enumerate(idx.tolist()):
                padded = F.pad(x[i], (p, p, p, p))
                img = padded[:, dy[j, 0] : dy[j, 0] + h, dx[j, 0] : dx[j, 0] + w]
                if flip[j]:
                    img = img.flip(-1)
                assert torch.equal(gx[j], normalise(img[None], MEAN, STD)[0])


# ------------------------------------------------------------------ augmentation: bounds, flips, seeds
def _raw(xb: torch.Tensor) -> torch.Tensor:
    """Undo normalisation with mean 0, std 1: back to the uint8 pixels."""
    return (xb * 255).round().to(torch.uint8)


def test_every_crop_is_a_window_of_the_padded_image():
    x, y = images(n=40, h=8, w=8)
    p = 2
    zero, one = torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1)
    offsets = set()
    for xb, yb in DeviceBatches(x, y, zero, one, 16, True, 0, Augment(p, False)):
        assert xb.shape[1:] == x.shape[1:] and xb.dtype == torch.float32
        for out, i in zip(_raw(xb), yb.tolist()):
            padded = F.pad(x[i], (p, p, p, p))
            found = [(oy, ox) for oy in range(2 * p + 1) for ox in range(2 * p + 1)
                     if torch.equal(out, padded[:, oy : oy + 8, ox : ox + 8])]
            assert found, f"sample {i}: not a window of its padded image at any offset in [0, {2 * p}]"
            offsets.update(found)
    assert len(offsets) > 5  # offsets are drawn, not fixed


def test_flip_only_mirrors():
    x, y = images(n=64, h=5, w=5)
    zero, one = torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1)
    flipped = kept = 0
    for xb, yb in DeviceBatches(x, y, zero, one, 16, True, 0, Augment(0, True)):
        for out, i in zip(_raw(xb), yb.tolist()):
            same, mirrored = torch.equal(out, x[i]), torch.equal(out, x[i].flip(-1))
            assert same or mirrored
            kept += same
            flipped += mirrored and not same
    assert flipped > 0 and kept > 0


def test_augmentation_is_seeded_and_changes_every_epoch():
    x, y = images(n=33)
    make = lambda seed: DeviceBatches(x, y, MEAN, STD, 8, True, seed, Augment(2, True))  # noqa: E731
    a, b, c = epochs(make(7), 2), epochs(make(7), 2), epochs(make(8), 1)

    def same(e1, e2):
        return all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(e1, e2))

    assert same(a[0], b[0]) and same(a[1], b[1])  # same seed → same batches, epoch by epoch
    assert not same(a[0], a[1])  # a new epoch draws a new order and new crops
    assert not same(a[0], c[0])  # another seed, other batches


def test_channels_last_batches_hold_the_same_values():
    x, y = images(n=20, h=8, w=8)
    for aug in (Augment(), Augment(2, True)):
        plain = list(DeviceBatches(x, y, MEAN, STD, 8, True, 3, aug))
        nhwc = list(DeviceBatches(x, y, MEAN, STD, 8, True, 3, aug, memory_format=torch.channels_last))
        for (px, py), (cx, cy) in zip(plain, nhwc):
            assert px.is_contiguous()
            assert cx.is_contiguous(memory_format=torch.channels_last)
            assert torch.equal(px, cx) and torch.equal(py, cy)


def test_study_data_batches_still_work(digits_data):
    """StudyData's API is unchanged: default layout, every retain example once per epoch."""
    ys = torch.cat([yb for _, yb in digits_data.batches("retain", 64, seed=1)])
    assert torch.equal(ys.sort().values, digits_data.labels("retain").sort().values)


# ------------------------------------------------------------------ model switches and fastnet
def model_cfg(name: str, **switches):
    cfg = OmegaConf.load(REPO / "conf" / "model" / f"{name}.yaml")
    for k, v in switches.items():
        cfg[k] = v
    return cfg


def test_channels_last_switch_keeps_the_function_and_the_state_dict():
    torch.manual_seed(0)
    base = build_model(model_cfg("small_cnn", width=8), (3, 16, 16), 10).eval()
    fast = build_model(model_cfg("small_cnn", width=8, channels_last=True), (3, 16, 16), 10).eval()
    assert memory_format(base) == torch.contiguous_format and memory_format(fast) == torch.channels_last
    assert list(base.state_dict()) == list(fast.state_dict())
    fast.load_state_dict(base.state_dict())
    conv = next(m for m in fast.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), base(x), rtol=1e-4, atol=1e-5)  # NCHW input converted by the hook
        torch.testing.assert_close(fast(x.contiguous(memory_format=torch.channels_last)), base(x), rtol=1e-4, atol=1e-5)


def test_switches_are_not_constructor_options():
    model = build_model(model_cfg("fastnet", channels_last=True, compile=False), (1, 8, 8), 10)
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)


@pytest.mark.slow
def test_compile_and_channels_last_compose():
    """torch.compile (in place: state_dict keys unchanged) on a channels_last model, on CPU."""
    torch.manual_seed(0)
    eager = build_model(model_cfg("small_cnn", width=4), (1, 8, 8), 10).eval()
    both = build_model(model_cfg("small_cnn", width=4, channels_last=True, compile=True), (1, 8, 8), 10).eval()
    assert list(both.state_dict()) == list(eager.state_dict())
    both.load_state_dict(eager.state_dict())
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(both(x), eager(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 16, 16)])
def test_fastnet_builds_for_one_and_three_channels(shape):
    torch.manual_seed(0)
    model = build_model(model_cfg("fastnet"), shape, 10)
    out = model(torch.randn(4, *shape))
    assert out.shape == (4, 10) and torch.isfinite(out).all()
    out.sum().backward()
    bn = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bn) == 6 and all(not m.weight.requires_grad and m.bias.grad is not None for m in bn)
    widths = [m.num_features for m in bn]
    assert widths == [64, 64, 256, 256, 256, 256]
    if shape == (3, 32, 32):  # airbench94's size: ~1.97M parameters
        assert 1.9e6 < sum(p.numel() for p in model.parameters()) < 2.05e6


def test_fastnet_recipe_is_a_valid_study_recipe():
    from unlearnlab.cells import recipe_settings

    epochs, batch_size, optim, augment = recipe_settings(OmegaConf.load(REPO / "conf" / "recipe" / "fastnet.yaml"))
    assert epochs == 10 and batch_size == 512 and augment == Augment(2, True)
    assert optim.optimizer == "sgd" and optim.scheduler == "cosine"


def test_fastnet_learns_digits_in_a_few_epochs(digits_data):
    from unlearnlab.cells import measure
    from unlearnlab.training import OptimSettings, SupervisedModule

    L.seed_everything(0, verbose=False)
    model = build_model(model_cfg("fastnet", widths=[16, 32, 32]), digits_data.input_shape, 10)
    batches = digits_data.batches("train", 64, seed=0)
    L.Trainer(accelerator="cpu", max_epochs=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False).fit(SupervisedModule(model, batches, 3, OptimSettings(lr=0.2, momentum=0.85)))
    _, metrics = measure(model, digits_data)
    assert metrics["test/acc"] > 0.5  # chance is 0.1; the full net reaches ~0.99 (see the bench notes)


# ------------------------------------------------------------------ the bench command
def _positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_bench_tiny_runs_on_cpu(tmp_path, capsys):
    """`unlearnlab task=bench bench=tiny` (in this process: the test is about the bench, not the CLI)."""
    from conftest import unlearnlab_inprocess

    before = torch.get_num_threads()
    try:
        unlearnlab_inprocess(tmp_path / "out", "task=bench", "bench=tiny", "logger=none", f"paths.root={tmp_path}",
                             "trainer=cpu")
    finally:
        torch.set_num_threads(before)
    stdout = capsys.readouterr().out
    ratios = re.findall(r"framework/plain epoch ratio \((\w+)\): ([0-9.]+)", stdout)
    assert ratios and all(_positive(float(r)) for _, r in ratios), stdout[-3000:]
    res = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert res["tiny"] is True and res["device"].startswith("CPU")
    for row in res["ratio"]:
        for k in ("ratio", "fit_ratio", "framework_epoch_s", "plain_epoch_s", "framework_img_s"):
            assert _positive(row[k]), (k, row)
    assert {r["model"] for r in res["throughput"]} == {"small_cnn", "fastnet", "resnet18_cifar"}
    assert all(_positive(r["img_s"]) and r["threads"] == 1 for r in res["throughput"])  # tiny: bench.threads=1
    audit = res["audit"]  # F, its permutation p-value and the ε lower bound, timed at the tiny scale
    assert (audit["examples"], audit["models"], audit["permutations"]) == (200, 16, 9)
    for k in ("seconds", "seconds_1_core", "p_value_s", "eps_lb_s", "per_relabelling_over_F"):
        assert _positive(audit[k]), (k, audit)
    assert audit["total_s"] == pytest.approx(audit["seconds"] + audit["p_value_s"] + audit["eps_lb_s"])
    assert 0 < audit["p_value"] <= 1
    methods = res["methods"]
    assert _positive(methods["retrain_s"])
    assert set(methods["methods"]) == {"identity", "retrain", "finetune", "neggrad_plus_digits"}  # the study's
    for row in methods["methods"].values():
        assert all(_positive(row[k]) for k in ("unlearn_s", "unlearn_over_retrain", "rte"))
    est = res["estimate"]
    assert _positive(est["this_study_hours"]) and _positive(est["cifar10_fastnet_hours"])
    assert est["assumptions"]
    assert "estimated device-hours" in stdout


def test_bench_rejects_unknown_options():
    from unlearnlab.bench import bench_options
    from unlearnlab.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown option"):
        bench_options(OmegaConf.create({"bench": {"tiny": True, "nope": 1}}), torch.device("cpu"))
    opts = bench_options(OmegaConf.create({}), torch.device("cpu"))
    assert opts["tiny"] is False and opts["audit_examples"] == 5000 and opts["audit_models"] == 512


def test_plain_loop_and_framework_train_the_same_way():
    """The bench compares like with like: one plain epoch and one framework epoch from the same
    weights on the same batches reach the same weights (CPU, fp32, deterministic)."""
    import copy

    from unlearnlab.bench import framework_epoch, plain_epoch, synthetic_batches
    from unlearnlab.training import OptimSettings

    L.seed_everything(0, verbose=False)
    a = build_model(model_cfg("small_cnn", width=4), (3, 32, 32), 10)
    b = copy.deepcopy(a)
    optim = OptimSettings("sgd", 0.05, 0.9, 5e-4, "cosine")

    def make_trainer(max_epochs):
        return L.Trainer(accelerator="cpu", max_epochs=max_epochs, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, deterministic=True)

    framework_epoch(make_trainer, a, synthetic_batches(48, 16, torch.device("cpu")), optim, torch.device("cpu"))
    plain_epoch(b, synthetic_batches(48, 16, torch.device("cpu")), optim, "32-true", torch.device("cpu"))
    for (k, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6, msg=k)


# ------------------------------------------------------------------ GPU
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fastnet_one_epoch_bf16_channels_last_on_gpu():
    from unlearnlab.training import OptimSettings, SupervisedModule

    device = torch.device("cuda")
    L.seed_everything(0, verbose=False)
    n, classes = 8192, 10
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, classes, (n,), generator=g)
    # learnable synthetic data: each class has its own colour, plus noise
    palette = torch.randint(40, 216, (classes, 3, 1, 1), generator=g)
    noise = torch.randint(-40, 41, (n, 3, 32, 32), generator=g)
    x = (palette[y] + noise).clamp(0, 255).to(torch.uint8)
    model = build_model(model_cfg("fastnet", channels_last=True), (3, 32, 32), classes)
    fmt = memory_format(model)
    assert fmt == torch.channels_last
    batches = DeviceBatches(x.to(device), y.to(device), torch.full((1, 3, 1, 1), 0.5), torch.full((1, 3, 1, 1), 0.25),
                            512, True, 0, Augment(2, True), memory_format=fmt)

    class Losses(L.Callback):
        def __init__(self):
            self.losses, self.layouts = [], []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.losses.append(outputs["loss"].detach().float())
            self.layouts.append(batch[0].is_contiguous(memory_format=torch.channels_last))

    rec = Losses()
    trainer = L.Trainer(accelerator="gpu", devices=1, precision="bf16-mixed", max_epochs=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[rec])
    trainer.fit(SupervisedModule(model, batches, 1, OptimSettings("sgd", 0.4, 0.85, 2.5e-3, "cosine")))
    losses = torch.stack(rec.losses).cpu()
    assert len(losses) == 16 and all(rec.layouts) and torch.isfinite(losses).all()
    assert losses[-4:].mean() < 0.5 * losses[:2].mean(), losses
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and conv.weight.device.type == "cuda"


# ------------------------------------------------------------------ what cost/seconds times
def _pipeline(tmp_path, *overrides: str):
    """The pipeline `unlearnlab OVERRIDES` would open (in this process), on a store under tmp_path."""
    from hydra import initialize_config_dir

    from unlearnlab.pipeline import open_pipeline, run_composed

    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        return run_composed(["logger=none", f"paths.root={tmp_path}", *overrides], tmp_path / "out", open_pipeline)


def test_unlearning_cost_leaves_out_the_original(tmp_path):
    """An unlearned cell computed on an empty store trains its original first, inside the same
    call: its cost/seconds is the unlearning alone (identity: nothing), not the original's."""
    pipe = _pipeline(tmp_path, "debug=tiny", "method=[identity]")
    start = time.perf_counter()
    cell = pipe.runner.run(pipe.planner.unlearn("identity", 0))
    wall = time.perf_counter() - start
    original = pipe.runner.fetch(pipe.planner.original())
    assert not cell.cached and original is not None
    trained = original.metrics["cost/seconds"]
    assert 0 < cell.metrics["cost/seconds"] < trained / 10 < wall


def test_unlearning_cost_leaves_out_what_the_method_marks_untimed(tmp_path, monkeypatch):
    """newton with resample_original refits its own original on D before removing: that is
    training the model to unlearn, so the cell's cost/seconds leaves it out (cost/rte compares
    unlearning with retraining). The refit is slowed by 1 s here to make it visible."""
    import unlearnlab.methods.newton as newton

    fit_exact = newton.fit_exact

    def slow_fit(*args, **kwargs):
        time.sleep(1.0)
        return fit_exact(*args, **kwargs)

    monkeypatch.setattr(newton, "fit_exact", slow_fit)
    pipe = _pipeline(tmp_path, "experiment=certified_digits", "n_models=2", "methods.newton.removal_batch=48")
    start = time.perf_counter()
    cell = pipe.runner.run(pipe.planner.unlearn("newton", 0))
    wall = time.perf_counter() - start
    m = cell.metrics
    assert m["cost/removal_seconds"] <= m["cost/seconds"] < m["cost/removal_seconds"] + 0.5
    assert m["cost/seconds"] + 1.0 < wall
