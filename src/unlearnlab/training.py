"""What all training shares: optimisers by name, epoch-level metrics, divergence checks.

Logging inside training_step is the main overhead of Lightning over a plain loop (measured on an H100 and on CPU: see README, Speed),
and `loss.item()` per step forces a host-device sync; so losses are summed on the device and
logged, and checked for NaN/inf, once per epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from unlearnlab.errors import ConfigError

_OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


class DivergedError(RuntimeError):
    """A loss became NaN or inf; the cell stops and nothing is stored for it."""


@dataclass(frozen=True)
class OptimSettings:
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    scheduler: str = "cosine"  # cosine (per step) | cosine_epoch (per epoch, T_max = epochs) | none

    def __post_init__(self) -> None:
        if self.optimizer not in _OPTIMIZERS:
            raise ConfigError(f"optimizer {self.optimizer!r} is unknown; use one of {sorted(_OPTIMIZERS)}")
        if self.lr < 0 or self.weight_decay < 0:
            raise ConfigError(f"lr={self.lr} and weight_decay={self.weight_decay} must be ≥ 0")
        if self.scheduler not in ("cosine", "cosine_epoch", "none"):
            raise ConfigError(f"scheduler {self.scheduler!r} is unknown; use cosine, cosine_epoch or none")

    def build(self, params, total_steps: int | None, epochs: int | None):
        """Lightning's configure_optimizers return value for these settings. `cosine` anneals over
        `total_steps` optimiser steps; `cosine_epoch` is torch's CosineAnnealingLR(T_max=epochs)
        stepped once per epoch, as several sources use it. Both lengths are required arguments
        (None only where the schedule does not read it): a default of 1 once gave the kit's
        5-epoch fine-tune the schedule 0.1, 0, 0.1, 0, 0.1."""
        cls = _OPTIMIZERS[self.optimizer]
        kwargs = {"lr": self.lr, "weight_decay": self.weight_decay}
        if self.optimizer == "sgd":
            kwargs["momentum"] = self.momentum
        opt = cls(params, **kwargs)
        if self.scheduler == "none":
            return opt
        per_epoch = self.scheduler == "cosine_epoch"
        length = epochs if per_epoch else total_steps
        if length is None or int(length) < 1:
            raise ValueError(f"scheduler {self.scheduler!r} needs its length in "
                             f"{'epochs' if per_epoch else 'steps'}, got {length!r}")
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=int(length))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch" if per_epoch else "step"}}

    def build_for(self, params, trainer: L.Trainer):
        """`build` for one fit of `trainer`: its optimiser steps and its epochs."""
        return self.build(params, trainer.estimated_stepping_batches, trainer.max_epochs)


class EpochMetrics(L.LightningModule):
    """Accumulates named scalars on the device; logs their epoch means once, and stops on NaN.

    It also owns the train/eval modes of every fit. Lightning 2.x does not switch a module to
    train mode when `fit` starts (it only warns), so a model left in eval mode by some scoring
    pass would train with BatchNorm frozen. Here `on_fit_start` — which Lightning calls after
    moving the module to its device and before the fit loop's eval-mode check — runs the
    subclass's `before_fit`, then puts the whole module tree in train mode and every module
    `frozen_modules` names (kept outside the tree) in eval mode. Subclasses may not override
    `on_fit_start`, so no method can skip this."""

    phase = "train"

    def __init__(self) -> None:
        super().__init__()
        self._sums: dict[str, torch.Tensor] = {}
        self._count = 0

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "on_fit_start" in vars(cls):
            raise TypeError(
                f"{cls.__name__} overrides on_fit_start, which sets the train/eval modes of every fit; "
                "put fit-start work in before_fit() instead"
            )

    def frozen_modules(self) -> Iterable[nn.Module]:
        """Modules that never train (frozen teachers): kept in eval mode during every fit."""
        return ()

    def before_fit(self) -> None:
        """Fit-start work that needs the device (e.g. a saliency mask); modes are set after it."""

    def on_fit_start(self) -> None:
        for module in self.frozen_modules():
            module.to(self.device)
        self.before_fit()
        self.train()
        for module in self.frozen_modules():
            module.eval()

    def track(self, **values: torch.Tensor) -> None:
        for name, v in values.items():
            v = v.detach().float()
            if name in self._sums:
                self._sums[name].add_(v)
            else:
                self._sums[name] = v.clone()
        self._count += 1 if values else 0

    def on_train_epoch_start(self) -> None:
        self._sums, self._count = {}, 0

    def on_train_epoch_end(self) -> None:
        if not self._sums:
            return
        means = {k: v / max(1, self._count) for k, v in self._sums.items()}
        stacked = torch.stack(list(means.values()))
        if not bool(torch.isfinite(stacked).all()):
            bad = [k for k, v in means.items() if not torch.isfinite(v)]
            raise DivergedError(
                f"{type(self).__name__}: {', '.join(bad)} became NaN/inf in phase {self.phase!r} "
                f"at epoch {self.current_epoch} (step ≤ {self.global_step}); lower the learning rate"
            )
        self.log_dict({f"{self.phase}/{k}": v for k, v in means.items()}, on_step=False, on_epoch=True)


class SupervisedModule(EpochMetrics):
    """Cross-entropy training of `model` on one part: the original (train) and retrained (retain) models."""

    def __init__(self, model: nn.Module, batches, epochs: int, optim: OptimSettings) -> None:
        super().__init__()
        self.model, self.batches, self.epochs, self.optim = model, batches, epochs, optim

    def train_dataloader(self):
        return self.batches

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.model(x), y)
        self.track(loss=loss)
        return loss

    def configure_optimizers(self):
        return self.optim.build_for(self.model.parameters(), self.trainer)
