"""NegGrad+ (Kurmanji et al. 2023): descend on retain while ascending on forget,
loss = α·CE_retain − (1−α)·CE_forget, one forget batch per retain batch (forget cycles)."""

from __future__ import annotations

from typing import ClassVar

import torch.nn.functional as F
from lightning.pytorch.utilities import CombinedLoader

from unlearnlab.methods.base import UnlearningMethod


class NegGradPlus(UnlearningMethod):
    reads: ClassVar[frozenset[str]] = frozenset({"forget", "retain"})

    def __init__(self, model, data, alpha: float = 0.95, **hparams) -> None:
        super().__init__(model, data, **hparams)
        self.alpha = float(alpha)

    def train_dataloader(self):
        return CombinedLoader(
            {
                "retain": self.data.batches("retain", self.batch_size, augment=self.augment),
                "forget": self.data.batches("forget", self.batch_size, augment=self.augment, seed_offset=1),
            },
            mode="max_size_cycle",
        )

    def training_step(self, batch, batch_idx):
        (xr, yr), (xf, yf) = batch["retain"], batch["forget"]
        ce_r = F.cross_entropy(self.model(xr), yr)
        ce_f = F.cross_entropy(self.model(xf), yf)
        loss = self.alpha * ce_r - (1 - self.alpha) * ce_f
        self.track(loss=loss, ce_retain=ce_r, ce_forget=ce_f)
        return loss
