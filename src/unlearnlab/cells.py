"""One cell = one trained or unlearned model: build, train, measure, store.

Kinds: `original` A(D), `retrain` A(D \\ F) (the reference), `unlearn` U(A(D), D, F). Every
unlearned model of a study starts from the same original model, as in the competition.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import torch
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from unlearnlab.data import StudyData
from unlearnlab.data.loader import Augment
from unlearnlab.errors import ConfigError
from unlearnlab.methods.base import MethodData, UnlearningMethod
from unlearnlab.models import build_model
from unlearnlab.registry import check_targets, instantiate
from unlearnlab.store import Entry, Store, cell_key
from unlearnlab.tracking import Tracker
from unlearnlab.training import OptimSettings, SupervisedModule

MEASURED_PARTS = ("forget", "test", "val", "retain_sample")


def derive_seed(base: int, *parts: Any) -> int:
    """Independent, stable seeds per (kind, name, index) from one study seed."""
    text = "/".join(str(p) for p in (base, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little") & 0x7FFFFFFF


def _plain(cfg) -> Any:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


@dataclass(frozen=True)
class Cell:
    kind: str  # original | retrain | unlearn
    name: str  # "original", "retrain" or the method's name
    index: int
    seed: int
    spec: dict[str, Any] = field(hash=False)

    @property
    def key(self) -> str:
        return cell_key(self.spec)

    @property
    def label(self) -> str:
        return self.name if self.kind == "original" else f"{self.name}#{self.index}"


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


def _recipe(train_cfg) -> tuple[int, int, OptimSettings, Augment]:
    t = train_cfg
    if t.epochs < 0:
        raise ConfigError(f"train.epochs={t.epochs} must be ≥ 0")
    optim = OptimSettings(t.optimizer, float(t.lr), float(t.momentum), float(t.weight_decay), t.scheduler)
    return int(t.epochs), int(t.batch_size), optim, Augment(int(t.crop_padding), bool(t.flip))


class CellRunner:
    """Plans cells from a study config and runs or fetches them."""

    def __init__(self, cfg: DictConfig, data: StudyData, store: Store, tracker: Tracker) -> None:
        self.cfg, self.data, self.store, self.tracker = cfg, data, store, tracker
        dataset = {k: v for k, v in _plain(cfg.dataset).items() if k not in ("root", "download")}
        self._common = {"dataset": dataset, "model": _plain(cfg.model), "precision": str(cfg.trainer.precision)}
        self._split = _plain(cfg.split)
        self._original: Cell | None = None

    # -- planning ---------------------------------------------------------------------------
    def original(self) -> Cell:
        if self._original is None:
            seed = derive_seed(self.cfg.seed, "original")
            spec = {"kind": "original", **self._common, "train": _plain(self.cfg.train), "seed": seed}
            self._original = Cell("original", "original", 0, seed, spec)
        return self._original

    def retrain(self, i: int) -> Cell:
        seed = derive_seed(self.cfg.seed, "retrain", i)
        spec = {"kind": "retrain", **self._common, "split": self._split, "train": _plain(self.cfg.train), "seed": seed}
        return Cell("retrain", "retrain", i, seed, spec)

    def unlearn(self, name: str, method_cfg, i: int) -> Cell:
        seed = derive_seed(self.cfg.seed, "unlearn", name, i)
        spec = {
            "kind": "unlearn", **self._common, "split": self._split, "method": _plain(method_cfg),
            "original": self.original().key, "seed": seed,
        }
        return Cell("unlearn", name, i, seed, spec)

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

    def _make_trainer(self, logger):
        def make(max_epochs: int, phase: str = "train") -> L.Trainer:
            del phase  # methods log under their own phase prefix
            return L.Trainer(
                **_plain(self.cfg.trainer),
                max_epochs=max_epochs,
                logger=logger if logger is not None else False,
                enable_checkpointing=False,
                enable_model_summary=False,
                num_sanity_val_steps=0,
                use_distributed_sampler=False,
                log_every_n_steps=1,
            )

        return make

    def _compute(self, cell: Cell) -> Entry:
        L.seed_everything(cell.seed, verbose=False)
        model = build_model(self.cfg.model, self.data.input_shape, self.data.num_classes)
        config = {"cell": {"kind": cell.kind, "name": cell.name, "index": cell.index, "seed": cell.seed}}
        if cell.kind == "unlearn":
            config["method"] = cell.spec["method"]
        with self.tracker.cell(f"{cell.label}-{cell.key[:8]}", cell.kind, config) as run:
            make_trainer = self._make_trainer(run["logger"])
            start = time.perf_counter()
            extra: dict[str, float] = {}
            if cell.kind == "unlearn":
                extra = self._unlearn(cell, model, make_trainer)
            elif self.cfg.train.get("solver", "sgd") == "exact":
                from unlearnlab.certified import fit_model_exact

                part = "train" if cell.kind == "original" else "retain"
                fit_model_exact(model, self.data, part, self.cfg.train, cell.seed)
            else:
                epochs, batch_size, optim, augment = _recipe(self.cfg.train)
                part = "train" if cell.kind == "original" else "retain"
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

    def _unlearn(self, cell: Cell, model: torch.nn.Module, make_trainer) -> dict[str, float]:
        original = self.run(self.original())
        model.load_state_dict(original.entry.state_dict())
        method_cfg = {k: v for k, v in cell.spec["method"].items() if k != "name"}
        cls = _method_class(method_cfg, cell.name)
        cls.check_reads()
        data = MethodData(self.data, cls.reads, cell.seed, cell.name)
        method: UnlearningMethod = instantiate(method_cfg, where=f"method.{cell.name}", model=model, data=data)
        method.run(make_trainer)
        return {k: float(v) for k, v in method.cell_metrics().items()}


def _method_class(method_cfg: dict[str, Any], name: str) -> type[UnlearningMethod]:
    check_targets(method_cfg, f"method.{name}")
    cls = get_class(method_cfg["_target_"])
    if not (isinstance(cls, type) and issubclass(cls, UnlearningMethod)):
        raise ConfigError(f"method.{name}._target_ must name an UnlearningMethod subclass, got {cls!r}")
    return cls


@torch.no_grad()
def measure(model: torch.nn.Module, data: StudyData, batch_size: int = 1024):
    """Logits on the parts the audits read, accuracies on every part."""
    device = data.device
    model = model.to(device).eval()

    def logits(part: str) -> torch.Tensor:
        return torch.cat([model(x).float() for x, _ in data.batches(part, batch_size, shuffle=False)])

    outputs = {part: logits(part).cpu() for part in MEASURED_PARTS}
    metrics = {}
    for part in ("forget", "test", "val"):
        y = data.labels(part).cpu()
        metrics[f"{part}/acc"] = float((outputs[part].argmax(1) == y).float().mean()) if len(y) else float("nan")
    correct = sum(int((model(x).argmax(1) == y).sum()) for x, y in data.batches("retain", batch_size, shuffle=False))
    metrics["retain/acc"] = correct / len(data.labels("retain"))
    return outputs, metrics
