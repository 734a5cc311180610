"""One cell = one trained or unlearned model: build, train, measure, store.

Kinds: `original` A(D), `retrain` A(D \\ F) (the reference), `unlearn` U(A(D), D, F). Every
unlearned model of a study starts from the same original model, as in the competition.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
from hydra.utils import get_class
from lightning.pytorch.callbacks import LearningRateMonitor
from omegaconf import DictConfig

from unlearnlab.certified import fit_model_exact, single_thread
from unlearnlab.data import StudyData
from unlearnlab.data.loader import Augment
from unlearnlab.errors import ConfigError
from unlearnlab.methods.base import MakeTrainer, MethodData, UnlearningMethod
from unlearnlab.models import build_model
from unlearnlab.plan import Cell, trainer_flags
from unlearnlab.registry import check_targets, instantiate
from unlearnlab.store import Entry, Store
from unlearnlab.tracking import Tracker
from unlearnlab.training import OptimSettings, SupervisedModule

MEASURED_PARTS = ("forget", "test", "val", "retain_sample")

# Every cell is computed on one torch intra-op thread (certified.single_thread), on every device
# and for every model. A cell's float sums depend on the thread count, so the count must be a
# property of the cell, not of the job that runs it: a study owning 2 cores and a sweep job
# owning 1 would otherwise store different bytes under the same key. One, because every model
# here does little work per batch on a CPU: with another program busy on one core of this
# 2-core machine a digits cell took 3.5 s on one thread, 80 s on two (10 s with
# OMP_WAIT_POLICY=PASSIVE); on a GPU the CPU threads do not touch the numbers. More cores are
# used by more cells at once (sweep jobs, workers_per_device), not by more threads per cell;
# `unlearnlab task=bench` measures one thread against a job's cores per model ("threads" rows).


@dataclass
class CellResult:
    cell: Cell
    entry: Entry
    cached: bool

    @property
    def metrics(self) -> dict[str, float]:
        return self.entry.meta["metrics"]

    def outputs(self) -> dict[str, torch.Tensor]:
        return self.entry.outputs()


def recipe_settings(recipe_cfg) -> tuple[int, int, OptimSettings, Augment]:
    t = recipe_cfg  # ranges are checked at start-up (checks.check_sizes)
    optim = OptimSettings(t.optimizer, float(t.lr), float(t.momentum), float(t.weight_decay), t.scheduler)
    return int(t.epochs), int(t.batch_size), optim, Augment(int(t.crop_padding), bool(t.flip))


class CellRunner:
    """Computes (or fetches) planned cells: build, train, measure, store."""

    def __init__(self, cfg: DictConfig, data: StudyData, store: Store, tracker: Tracker) -> None:
        self.cfg, self.data, self.store, self.tracker = cfg, data, store, tracker

    # -- running ----------------------------------------------------------------------------
    def fetch(self, cell: Cell) -> CellResult | None:
        """The stored result, or None when the cell was never computed."""
        if self.store.has(cell.kind, cell.key):
            return CellResult(cell, self.store.load(cell.kind, cell.key), cached=True)
        return None

    def run(self, cell: Cell) -> CellResult:
        key = cell.key
        if (entry := self.store.fetch(cell.kind, key)) is not None:
            return CellResult(cell, entry, cached=True)
        with self.store.lock(cell.kind, key):
            # another job may have finished it while we waited; a corrupt entry is quarantined
            if (entry := self.store.fetch(cell.kind, key, repair=True)) is not None:
                return CellResult(cell, entry, cached=True)
            return CellResult(cell, self._compute(cell), cached=False)

    def _compute(self, cell: Cell) -> Entry:
        with single_thread():  # see the note at the top: the same bytes in a study, a sweep, a worker
            return self._compute_cell(cell)

    def _compute_cell(self, cell: Cell) -> Entry:
        L.seed_everything(cell.seed, verbose=False)
        model = build_model(self.cfg.model, self.data.input_shape, self.data.num_classes)
        config = {"cell": {"kind": cell.kind, "name": cell.name, "index": cell.index, "seed": cell.seed}}
        if cell.kind == "unlearn":
            config["method"] = cell.spec["method"]
        with self.tracker.cell(f"{cell.label}-{cell.key[:8]}", cell.kind, config) as run:
            make_trainer = trainer_factory(self.cfg.trainer, run["logger"])
            extra: dict[str, float] = {}
            if cell.kind == "unlearn":
                seconds, extra = self._unlearn(cell, model, make_trainer)
            else:
                start = time.perf_counter()
                part = "train" if cell.kind == "original" else "retain"
                if self.cfg.recipe.get("solver", "sgd") == "exact":
                    fit_model_exact(model, self.data, part, self.cfg.recipe, cell.seed)
                else:
                    epochs, batch_size, optim, augment = recipe_settings(self.cfg.recipe)
                    batches = self.data.batches(part, batch_size, True, cell.seed, augment)
                    if epochs > 0:
                        make_trainer(epochs).fit(SupervisedModule(model, batches, epochs, optim))
                seconds = time.perf_counter() - start
            outputs, metrics = measure(model, self.data)
            metrics["cost/seconds"] = seconds
            metrics.update(extra)
            run["summary"].update(metrics)
        meta = {
            "kind": cell.kind, "name": cell.name, "index": cell.index, "seed": cell.seed,
            "spec": cell.spec, "metrics": metrics,
        }
        return self.store.save(cell.kind, cell.key, meta, model.state_dict(), outputs)

    def _unlearn(self, cell: Cell, model: torch.nn.Module, make_trainer) -> tuple[float, dict[str, float]]:
        """Unlearn the original; (seconds of the unlearning, the method's own metrics). The
        seconds are those of `method.run` less what the method marks `untimed` (training the
        model it unlearns): fetching or training the original is not the unlearning's cost."""
        original = self.run(cell.upstream)
        model.load_state_dict(original.entry.state_dict())
        method_cfg = cell.method_config
        cls = method_class(method_cfg, cell.name)
        cls.check_reads()
        data = MethodData(self.data, cls.reads, cell.seed, cell.name)
        method: UnlearningMethod = instantiate(method_cfg, where=f"method.{cell.name}", model=model, data=data)
        start = time.perf_counter()
        method.run(make_trainer)
        seconds = time.perf_counter() - start - method.untimed_seconds
        return seconds, {k: float(v) for k, v in method.cell_metrics().items()}


def trainer_factory(trainer_cfg, logger=None) -> MakeTrainer:
    """The Trainer every fit of a cell runs under: conf/trainer/*.yaml plus this fit's epochs and
    logger. With a logger (a per-cell CSV or W&B run), every fit also logs each optimiser's
    learning rate once per epoch (Lightning's LearningRateMonitor): the schedule a cell actually
    ran, not the one its config names."""
    flags = trainer_flags(trainer_cfg)  # the flags the cell key holds (plan.trainer_key)

    def make(max_epochs: int, phase: str = "train") -> L.Trainer:
        del phase  # methods log under their own phase prefix
        if logger is None:
            return L.Trainer(**flags, max_epochs=max_epochs, logger=False)
        monitor = LearningRateMonitor(logging_interval="epoch")
        return L.Trainer(**flags, max_epochs=max_epochs, logger=logger, callbacks=[monitor])

    return make


def method_class(method_cfg: dict[str, Any], name: str) -> type[UnlearningMethod]:
    check_targets(method_cfg, f"method.{name}")
    cls = get_class(method_cfg["_target_"])
    if not (isinstance(cls, type) and issubclass(cls, UnlearningMethod)):
        raise ConfigError(f"method.{name}._target_ must name an UnlearningMethod subclass, got {cls!r}")
    return cls


@torch.no_grad()
def measure(model: torch.nn.Module, data: StudyData, batch_size: int = 1024,
            parts: tuple[str, ...] = MEASURED_PARTS):
    """Logits on PARTS (by default the parts the audits read; task=logits adds the whole retain
    set), accuracies on every part."""
    device = data.device
    model = model.to(device).eval()

    def logits(part: str) -> torch.Tensor:
        return torch.cat([model(x).float() for x, _ in data.batches(part, batch_size, shuffle=False)])

    outputs = {part: logits(part).cpu() for part in parts}
    metrics = {}
    for part in ("forget", "test", "val"):
        y = data.labels(part).cpu()
        metrics[f"{part}/acc"] = float((outputs[part].argmax(1) == y).float().mean()) if len(y) else float("nan")
    if "retain" in outputs:
        correct = int((outputs["retain"].argmax(1) == data.labels("retain").cpu()).sum())
    else:
        correct = sum(int((model(x).argmax(1) == y).sum()) for x, y in data.batches("retain", batch_size, shuffle=False))
    metrics["retain/acc"] = correct / len(data.labels("retain"))
    return outputs, metrics
