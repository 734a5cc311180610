"""The learning rate every fit actually runs, epoch by epoch, against its source's schedule.

Issue #22: `finetune` asked for the kit's per-epoch cosine but ran 0.1, 0, 0.1, 0, 0.1 (the
scheduler got T_max = 1). No test looked at a learning rate; these read it from the optimiser at
the start of every epoch of every fit, as LearningRateMonitor logs it into a cell's run.

Every config in conf/method/ is checked. Its schedule comes from SOURCES below — written from each
source file, not read from the method — looked up by the config's name, or by the config its
`defaults` list extends (a preset keeps its source's schedule, with its own values); the base
configs are also checked against the source's own numbers. A config with no source entry whose
method trains with the base contract (one fit, the optimiser its config names) is checked against
its config; one that runs its own fits or optimisers needs an entry here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import lightning as L
import pytest
import torch
from conftest import REPO, method_config, quick_trainer

from unlearnlab.methods.base import MethodData, UnlearningMethod
from unlearnlab.models.small_cnn import SmallCNN

METHOD_DIR = REPO / "conf" / "method"
CONFIGS = sorted(p.stem for p in METHOD_DIR.glob("*.yaml"))

Fits = list[list[list[float]]]  # per fit, per epoch: the lr of every parameter group of every optimiser


class LrRecorder(L.Callback):
    """Per fit, per epoch: the learning rate of every parameter group of every optimiser, read
    when the epoch starts (epoch-interval schedulers step at the end of the previous one)."""

    def __init__(self) -> None:
        self.fits: Fits = []

    def on_train_start(self, trainer, pl_module) -> None:
        self.fits.append([])

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.fits[-1].append([float(g["lr"]) for opt in trainer.optimizers for g in opt.param_groups])


# -- the sources' schedules, written from their code -------------------------------------------
def cosine(lr: float, t_max: int, epochs: int | None = None, eta_min: float = 0.0) -> list[float]:
    """torch's CosineAnnealingLR(T_max) at the start of each epoch; a per-step cosine over the same
    fit gives the same values at epoch starts."""
    return [eta_min + (lr - eta_min) * (1 + math.cos(math.pi * e / t_max)) / 2 for e in range(t_max if epochs is None else epochs)]


def multistep(lr: float, epochs: int, milestones=(91, 136), gamma: float = 0.1) -> list[float]:
    """torch's MultiStepLR stepped per epoch: lr·γ^#{m ≤ e}."""
    return [lr * gamma ** sum(m <= e for m in milestones) for e in range(epochs)]


def repdistiller_decay(lr: float, epochs: int, milestones, rate: float = 0.1) -> list[float]:
    """repdistiller's adjust_learning_rate(epoch): lr·rate^#{m : epoch > m} (set only when > 0)."""
    return [lr * rate ** sum(e > m for m in milestones) for e in range(epochs)]


def one_group(lrs: list[float]) -> list[list[float]]:
    return [[lr] for lr in lrs]


def kit(c, sizes) -> Fits:
    return [one_group(cosine(c["lr"], c["epochs"]))]


def constant(c, sizes) -> Fits:
    return [one_group([c["lr"]] * math.ceil(c["epochs"]))]


def unlearn_impl(c, sizes) -> Fits:
    return [one_group(multistep(c["lr"], c["epochs"]))]


def scrub(c, sizes) -> Fits:
    fits = []
    for r in range(c["epochs"]):  # the notebook's epoch = r + 1; lr_decay_epochs [3, 5, 9], rate 0.1
        lr = c["lr"] * 0.1 ** sum(r + 1 > m for m in (3, 5, 9))
        fits += [[[lr]]] * (2 if r < c["msteps"] else 1)  # a max pass while epoch ≤ msteps, then a min pass
    return fits


def kgl1(c, sizes) -> Fits:
    b, e_total = c["batch_size"], c["epochs"]
    per_epoch = min(-(-sizes["forget"] // b), -(-sizes["retain"] // b))  # zip(forget_loader, retain_ld4fgt)
    t_max = -(-sizes["forget"] // b) * e_total  # CosineAnnealingLR(T_max=len(forget_loader)·epochs), per forget step
    forget = [c["eta_min"] + (c["forget_lr"] - c["eta_min"]) * (1 + math.cos(math.pi * e * per_epoch / t_max)) / 2
              for e in range(e_total)]
    retain = c["retain_lr"] * b / 64
    return [[[c["uniform_lr"]]], [[f, retain] for f in forget]]


def kgl2(c, sizes) -> Fits:
    e_total = c["epochs"]
    warm, total = (e_total + 1) // 2, e_total + 1  # LinearAnnealingLR(num_annealing_steps, num_total_steps)
    steps = [e + 1 for e in range(e_total)]  # its _step_count during epoch e
    return [one_group([c["lr"] * (s / warm if s <= warm else (total - s) / (total - warm)) for s in steps])]


def kgl6(c, sizes) -> Fits:
    return [one_group([c["warmup_lr"]] * c["warmup_epochs"]), one_group(cosine(c["lr"], c["epochs"]))]


def kgl7(c, sizes) -> Fits:
    fine = list(c["fine_lrs"])
    lrs = [c["lr"]] * (c["epochs"] - len(fine)) + fine  # a fresh SGD per epoch
    return [[[lr]] for lr in lrs]


def cycles(c, sizes) -> Fits:
    return [one_group(cosine(c["lr"], c["t_max"], epochs)) for epochs in c["cycle_epochs"] if epochs > 0]


def unsir(c, sizes) -> Fits:
    return [one_group([c["lr"]] * c["epochs"]), one_group([c["repair_lr"]] * c["repair_epochs"])]


def fk_finetune(c, sizes) -> Fits:
    e_total = c["epochs"]
    milestones = [int(f * e_total) for f in c["lr_decay_fractions"]]  # int(0.5·E), int(0.8·E), int(0.9·E)
    return [one_group(repdistiller_decay(c["lr"], e_total, milestones, c["lr_decay_rate"]))]


def no_fit(c, sizes) -> Fits:
    return []


@dataclass(frozen=True)
class Source:
    where: str                                   # the file whose schedule this is
    fits: Callable[[dict, dict], Fits]           # config values, part sizes → the schedule
    numbers: tuple = ()  # per fit, the source's own first lrs (a tuple: every optimiser's); base configs only
    full_epochs: bool = False                    # the schedule steps per batch of the full data


SOURCES = {
    "finetune": Source("unlearning-challenge/starting-kit unlearning-CIFAR10.ipynb: CosineAnnealingLR(T_max=epochs), "
                       "stepped per epoch", kit, ((0.1, 0.0905, 0.0655, 0.0345, 0.0095),)),
    "finetune_kaggle": Source("the competition's baseline: 1 epoch at 1e-3", constant, ((1e-3,),)),
    "neggrad": Source("OPTML-Group/Unlearn-Sparse README.MD (GA: unlearn_lr 1e-4, 5 epochs), unlearn/impl.py "
                      "(MultiStepLR at 91, 136)", unlearn_impl, ((1e-4,) * 5,)),
    "random_label": Source("OPTML-Group/Unlearn-Saliency Classification/unlearn/impl.py", unlearn_impl, ((0.013,) * 10,)),
    "salun": Source("OPTML-Group/Unlearn-Saliency Classification/unlearn/impl.py", unlearn_impl, ((0.013,) * 10,)),
    "l1_sparse": Source("OPTML-Group/Unlearn-Sparse unlearn/impl.py", unlearn_impl, ((0.01,) * 10,)),
    "neggrad_plus": Source("meghdadk/SCRUB small_scale_unlearning.ipynb negative_grad: SGD, no scheduler", constant,
                           ((0.01,) * 10,)),
    "scrub": Source("meghdadk/SCRUB large_scale_unlearning.ipynb: adjust_learning_rate(epoch), lr_decay_epochs [3, 5, 9]",
                    scrub, ((5e-4,),) * 5),
    "bad_teacher": Source("vikram2000b/bad-teaching-unlearning unlearn.py: Adam, no scheduler", constant, ((1e-4,),)),
    "boundary_shrink": Source("TY-LEE-KR/Boundary-Unlearning-Code boundary_unlearning.py: SGD, no scheduler", constant,
                              ((1e-5,) * 10,)),
    "kl_uniform_adversarial": Source("xcadet/deepunlearn munl/unlearning/kgltop1.py", kgl1,
                                     ((0.005,), ((3e-4, 0.004),)), full_epochs=True),
    "grad_reinit": Source("xcadet/deepunlearn munl/unlearning/kgltop2.py LinearAnnealingLR", kgl2,
                          ((1e-3 / 3, 2e-3 / 3, 1e-3, 2e-3 / 3, 1e-3 / 3),)),
    "prune_reinit": Source("xcadet/deepunlearn munl/unlearning/kgltop4.py: SGD, no scheduler", constant, ((5e-4,) * 4,)),
    "transposed_pseudo": Source("xcadet/deepunlearn munl/unlearning/kgltop5.py: CosineAnnealingLR(T_max=epochs)", kit,
                                ((1e-3, 7.5e-4, 2.5e-4),)),
    "reset_distill": Source("xcadet/deepunlearn munl/unlearning/kgltop6.py", kgl6, ((9e-4,) * 3, (1e-3, 7.5e-4, 2.5e-4))),
    "reset_noise": Source("xcadet/deepunlearn munl/unlearning/kgltop7.py: a fresh SGD per epoch", kgl7,
                          ((2e-4,),) * 5 + ((2e-4,), (2e-4,), (2e-4,), (1e-3,))),
    "cyclic_reinit_mse": Source("junhyunb.github.io neurips2023-unlearning write-up: cycles [1, 2, 2], cosine "
                                "(init_lr=0.001, T_max=2)", cycles, ((1e-3,), (1e-3, 5e-4), (1e-3, 5e-4))),
    "unsir": Source("vikram2000b/Fast-Machine-Unlearning Machine Unlearning.ipynb: impair Adam 0.02, repair Adam 0.01",
                    unsir, ((0.02,), (0.01,))),
    "cf_k": Source("xcadet/deepunlearn munl/unlearning/scrub_utils.py fk_finetune", fk_finetune,
                   ((0.01,) * 6 + (1e-3,) * 3 + (1e-4,),)),
    "eu_k": Source("xcadet/deepunlearn munl/unlearning/scrub_utils.py fk_finetune", fk_finetune,
                   ((0.01,) * 6 + (1e-3,) * 3 + (1e-4,),)),
    "srl": Source("xcadet/deepunlearn munl/unlearning/successive_random_labels.py: the scheduler is discarded",
                  constant, ((0.1,) * 5,)),
    "identity": Source("no training", no_fit),
    "ssd": Source("if-loops/selective-synaptic-dampening src/ssd.py: no training", no_fit),
    "lfssd": Source("if-loops/towards_poison_unlearning src/utils.py: no training", no_fit),
    "fisher": Source("OPTML-Group/Unlearn-Saliency Classification/unlearn/fisher.py fisher_new: no training", no_fit),
    "wfisher": Source("OPTML-Group/Unlearn-Saliency Classification/unlearn/Wfisher.py: no training", no_fit),
    "newton": Source("facebookresearch/certified-removal: closed form", no_fit),
    "noisy_newton": Source("Sekhari et al. 2021: closed form", no_fit),
    "noisy_newton_reference": Source("an exact fit plus noise: closed form", no_fit),
    "descent_to_delete": Source("Neel et al. 2021: its own projected GD, no Trainer", no_fit),
    "descent_to_delete_reference": Source("an exact fit plus noise: closed form", no_fit),
}


@lru_cache(maxsize=None)
def all_configs() -> dict[str, dict]:
    """Every method config, composed once (one Hydra compose for all of them)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"method=[{','.join(CONFIGS)}]"])
    return OmegaConf.to_container(cfg.methods, resolve=True)


def base_config(name: str) -> str | None:
    """The config NAME's `defaults` list extends (`- BASE@_here_`), if any."""
    from omegaconf import OmegaConf

    for entry in OmegaConf.load(METHOD_DIR / f"{name}.yaml").get("defaults", []):
        if isinstance(entry, str) and entry.endswith("@_here_"):
            return entry.removesuffix("@_here_")
    return None


def source_of(name: str) -> tuple[str, Source] | None:
    """The source entry for config NAME: its own, else its base config's (recursively)."""
    while name is not None:
        if name in SOURCES:
            return name, SOURCES[name]
        name = base_config(name)
    return None


def subset(data, forget=None, **sizes):
    """`data` with the first `sizes[part]` examples of each part named, and `forget` as the forget
    part: a schedule depends on the epochs and steps a fit runs, not on how much data one step sees."""
    from unlearnlab.data import StudyData

    parts = dict(data.parts)
    for part, n in sizes.items():
        parts[part] = (parts[part][0][:n], parts[part][1][:n])
    if forget is not None:
        parts["forget"] = forget
    parts["train"] = (torch.cat([parts["retain"][0], parts["forget"][0]]), torch.cat([parts["retain"][1], parts["forget"][1]]))
    return StudyData(data.source, data.split, data.device, parts)


@pytest.fixture(scope="module")
def small_data(digits_data):
    """96 retain, 32 val and 12 forget examples of one class (UNSIR learns a noise batch per
    forgotten class): every method's precomputation stays cheap."""
    x, y = digits_data.parts["forget"]
    one = torch.nonzero(y == 0).flatten()[:12]
    return subset(digits_data, forget=(x[one], y[one]), retain=96, val=32)


@pytest.fixture(scope="module")
def logreg_problem(digits_data):
    """The certified methods' setting: an exactly fitted logistic regression on 20 forget examples."""
    from unlearnlab.certified import fit_model_exact
    from unlearnlab.models.logreg import LogisticRegression

    x, y = digits_data.parts["forget"]
    data = subset(digits_data, forget=(x[:20], y[:20]))
    model = LogisticRegression(1, 10, 8, lam=0.01, sigma=10.0)
    fit_model_exact(model, data, "train", {}, seed=0)
    return data, {k: v.clone() for k, v in model.state_dict().items()}


def record(name: str, data, state_dict, cfg: dict | None = None, limit: int | None = 1, problem=None):
    """Run config NAME (or `cfg`) on a copy of the original; the lrs of every epoch of every fit."""
    from unlearnlab.cells import method_class
    from unlearnlab.registry import instantiate

    cfg = {k: v for k, v in (cfg or all_configs()[name]).items() if k != "name"}
    cls = method_class(cfg, name)
    L.seed_everything(0, verbose=False)
    if cls.model_kinds is not None and "network" not in cls.model_kinds:
        from unlearnlab.models.logreg import LogisticRegression

        data, state = problem
        model = LogisticRegression(1, 10, 8, lam=0.01, sigma=10.0)
        model.load_state_dict(state)
    else:
        model = SmallCNN(1, 10, 8, width=16)
        model.load_state_dict(state_dict)
    method = instantiate(cfg, model=model, data=MethodData(data, cls.reads, 0, name))
    recorder = LrRecorder()
    method.run(lambda max_epochs, phase="train": quick_trainer(max_epochs, callbacks=[recorder],
                                                               limit_train_batches=limit))
    return cfg, cls, recorder.fits


def test_a_per_step_cosine_anneals_over_the_whole_fit(small_data, trained_small_cnn):
    """`scheduler: cosine` anneals per step: between epoch starts too, down to ~0 at the last step."""
    cfg = {**all_configs()["finetune"], "scheduler": "cosine", "batch_size": 64}
    steps: list[float] = []

    class PerStep(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            steps.append(trainer.optimizers[0].param_groups[0]["lr"])

    from unlearnlab.cells import method_class
    from unlearnlab.registry import instantiate

    body = {k: v for k, v in cfg.items() if k != "name"}
    cls = method_class(body, "finetune")
    model = SmallCNN(1, 10, 8, width=16)
    model.load_state_dict(trained_small_cnn)
    method = instantiate(body, model=model, data=MethodData(small_data, cls.reads, 0, "finetune"))
    method.run(lambda max_epochs, phase="train": quick_trainer(max_epochs, callbacks=[PerStep()]))
    total = -(-96 // cfg["batch_size"]) * cfg["epochs"]
    assert steps == pytest.approx([cfg["lr"] * (1 + math.cos(math.pi * s / total)) / 2 for s in range(total)], rel=1e-6)


def test_a_schedule_without_its_length_is_refused():
    from unlearnlab.training import OptimSettings

    params = [torch.nn.Parameter(torch.zeros(1))]
    with pytest.raises(ValueError, match="needs its length in epochs"):
        OptimSettings(scheduler="cosine_epoch").build(params, 10, None)
    with pytest.raises(ValueError, match="needs its length in steps"):
        OptimSettings(scheduler="cosine").build(params, None, 5)


def test_every_method_with_its_own_fits_has_a_source_schedule():
    """The generic check below covers only methods on the base contract (one fit, the optimiser
    their config names); a method with its own run or optimisers needs an entry in SOURCES."""
    from unlearnlab.cells import method_class

    missing = []
    for name, cfg in all_configs().items():
        cls = method_class({k: v for k, v in cfg.items() if k != "name"}, name)
        generic = cls.run is UnlearningMethod.run and cls.configure_optimizers is UnlearningMethod.configure_optimizers
        if source_of(name) is None and not generic:
            missing.append(name)
    assert missing == [], f"add the sources' schedules of {missing} to SOURCES in tests/test_schedules.py"
    assert {"retrain", "finetune", "scrub", "reset_noise", "ssd", "eu_k"} <= set(all_configs())


@pytest.mark.parametrize("name", CONFIGS)
def test_every_method_config_runs_its_sources_schedule(name, small_data, trained_small_cnn, logreg_problem):
    cfg = all_configs()[name]
    found = source_of(name)
    sizes = {part: len(small_data.parts[part][1]) for part in ("forget", "retain")}
    if found is None:  # the base contract: one fit of `epochs` epochs with the config's optimiser
        _, cls, fits = record(name, small_data, trained_small_cnn)
        epochs, lr = int(cfg["epochs"]), float(cfg["lr"])
        expected = [] if epochs == 0 else [one_group([lr] * epochs if cfg.get("scheduler", "cosine") == "none"
                                                     else cosine(lr, epochs))]
        where = "its config (no source entry)"
    else:
        base, source = found
        _, cls, fits = record(name, small_data, trained_small_cnn, limit=None if source.full_epochs else 1,
                              problem=logreg_problem)
        expected, where = source.fits(cfg, sizes), source.where
        if name == base and source.numbers:  # the base config holds the source's own values
            assert len(fits) == len(source.numbers), f"{name}: {len(fits)} fits, its source has {len(source.numbers)}"
            for fit, first in zip(fits, source.numbers):
                want = [list(e) if isinstance(e, tuple) else [e] for e in first]
                assert fit[: len(want)] == [pytest.approx(e, abs=5e-5) for e in want], \
                    f"{name}: first lrs {fit[: len(want)]}, the source ({source.where}) gives {want}"
    assert bool(fits) == cls.trains, f"{name}: trains = {cls.trains}, but it ran {len(fits)} fit(s)"
    assert [len(f) for f in fits] == [len(f) for f in expected], \
        f"{name}: epochs per fit {[len(f) for f in fits]}, {where} gives {[len(f) for f in expected]}"
    for i, (got, want) in enumerate(zip(fits, expected)):
        assert got == [pytest.approx(e, rel=1e-6) for e in want], f"{name} fit {i}: lr per epoch {got}, {where} gives {want}"


def test_a_cells_csv_log_holds_the_learning_rate_it_ran(tmp_path):
    """LearningRateMonitor in every fit of a cell that has a run: the kit's schedule, read back
    from the unlearned cells' metrics.csv (logger=csv keeps one per cell)."""
    import csv

    from conftest import unlearnlab_inprocess

    unlearnlab_inprocess(tmp_path / "out", "debug=tiny", "logger=csv", f"paths.root={tmp_path}")
    logs = sorted((tmp_path / "out" / "csv" / "unlearn").glob("*/metrics.csv"))
    assert len(logs) == 2  # N = 2 unlearned cells
    for log in logs:
        rows = list(csv.DictReader(log.open()))
        lrs = [round(float(r["lr-SGD"]), 4) for r in rows if r.get("lr-SGD")]
        assert lrs == [0.1, 0.0905, 0.0655, 0.0345, 0.0095], log
    original = next((tmp_path / "out" / "csv" / "original").glob("*/metrics.csv"))
    assert [float(r["lr-SGD"]) for r in csv.DictReader(original.open()) if r.get("lr-SGD")] == [0.05]  # 1-epoch recipe
