"""The learning rate every fit actually runs, epoch by epoch, against its source's schedule.

Issue #22: `finetune` asked for the kit's per-epoch cosine but ran 0.1, 0, 0.1, 0, 0.1 (the
scheduler got T_max = 1). No test looked at a learning rate; these read it from the optimiser at
the start of every epoch of every fit, as LearningRateMonitor logs it into a cell's run.
"""

from __future__ import annotations

import math

import lightning as L
import pytest
from conftest import method_config, quick_trainer

from unlearnlab.methods.base import MethodData, UnlearningMethod
from unlearnlab.models.small_cnn import SmallCNN


class LrRecorder(L.Callback):
    """Per fit, per epoch: the learning rate of every parameter group of every optimiser, read
    when the epoch starts (epoch-interval schedulers step at the end of the previous one)."""

    def __init__(self) -> None:
        self.fits: list[list[list[float]]] = []

    def on_train_start(self, trainer, pl_module) -> None:
        self.fits.append([])

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.fits[-1].append([float(g["lr"]) for opt in trainer.optimizers for g in opt.param_groups])


def cosine(lr: float, epochs: int) -> list[float]:
    """torch's CosineAnnealingLR(T_max=epochs) at the start of each epoch (eta_min 0); a per-step
    cosine over the same fit gives the same values at epoch starts."""
    return [lr * (1 + math.cos(math.pi * e / epochs)) / 2 for e in range(epochs)]


def record(name: str, digits_data, state_dict, **overrides) -> tuple[dict, list[list[list[float]]]]:
    from unlearnlab.cells import method_class
    from unlearnlab.registry import instantiate

    cfg = {k: v for k, v in method_config(name, **overrides).items() if k != "name"}
    cls = method_class(cfg, name)
    L.seed_everything(0, verbose=False)
    model = SmallCNN(1, 10, 8, width=16)
    model.load_state_dict(state_dict)
    method = instantiate(cfg, model=model, data=MethodData(digits_data, cls.reads, 0, name))
    recorder = LrRecorder()
    method.run(lambda max_epochs, phase="train": quick_trainer(max_epochs, callbacks=[recorder], limit_train_batches=2))
    return cfg, recorder.fits


def test_kit_finetune_runs_the_kits_cosine(digits_data, trained_small_cnn):
    """The starting kit: CosineAnnealingLR(optimizer, T_max=5) stepped once per epoch from lr 0.1."""
    _, fits = record("finetune", digits_data, trained_small_cnn)
    assert len(fits) == 1
    assert [round(e[0], 4) for e in fits[0]] == [0.1, 0.0905, 0.0655, 0.0345, 0.0095]


def test_a_per_step_cosine_anneals_over_the_whole_fit(digits_data, trained_small_cnn):
    _, fits = record("finetune_digits", digits_data, trained_small_cnn)
    assert [e[0] for e in fits[0]] == pytest.approx(cosine(0.1, 5), rel=1e-6)


def test_a_schedule_without_its_length_is_refused():
    import torch

    from unlearnlab.training import OptimSettings

    params = [torch.nn.Parameter(torch.zeros(1))]
    with pytest.raises(ValueError, match="needs its length in epochs"):
        OptimSettings(scheduler="cosine_epoch").build(params, 10, None)
    with pytest.raises(ValueError, match="needs its length in steps"):
        OptimSettings(scheduler="cosine").build(params, None, 5)


def _single_fit_methods() -> list[str]:
    """Method configs whose class trains with the base contract's one fit and optimiser: their
    schedule is the one their config names (lr, scheduler, epochs)."""
    from pathlib import Path

    from unlearnlab.cells import method_class

    names = []
    for path in sorted((Path(__file__).resolve().parents[1] / "conf" / "method").glob("*.yaml")):
        cfg = {k: v for k, v in method_config(path.stem).items() if k != "name"}
        cls = method_class(cfg, path.stem)
        if cls.run is UnlearningMethod.run and cls.configure_optimizers is UnlearningMethod.configure_optimizers:
            names.append(path.stem)
    return names


def test_single_fit_methods_run_the_schedule_their_config_names(digits_data, trained_small_cnn):
    names = _single_fit_methods()
    assert {"finetune", "neggrad", "l1_sparse", "salun", "random_label"} <= set(names)
    for name in names:
        cfg, fits = record(name, digits_data, trained_small_cnn)
        epochs, lr = int(cfg["epochs"]), float(cfg["lr"])
        if epochs == 0:
            assert fits == [], name
            continue
        expected = [lr] * epochs if cfg.get("scheduler", "cosine") == "none" else cosine(lr, epochs)
        assert len(fits) == 1, name
        got = [e[0] for e in fits[0]]
        assert got == pytest.approx(expected, rel=1e-6), f"{name}: lr per epoch {got}, expected {expected}"


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
