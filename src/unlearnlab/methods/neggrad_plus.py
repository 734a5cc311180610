"""NegGrad+ (Kurmanji et al. 2023, the SCRUB paper's baseline): descend on retain while
ascending on forget.

Checked against: meghdadk/SCRUB small_scale_unlearning.ipynb (negative_grad, run_neggrad_epoch,
l2_penalty; its NegGrad+ cell: ng_alpha 0.95, ng_epochs 10, ng_lr 0.01).

Each step pairs a retain batch with the next forget batch (the forget loader cycles; an epoch
is one pass over retain) and minimises
    α·(CE_retain + (λ/2)·‖θ − θ_orig‖²) − (1 − α)·CE_forget,
λ = `l2_to_original` (the notebook's args.weight_decay, 0.1 in its run command), θ_orig the
weights at the start. Optimiser: plain SGD (no momentum, no weight decay), constant lr.
Batches: retain `batch_size` (args.batch_size, 128), forget `forget_batch_size` (forget_bs 64).
Known deviations: the source runs these epochs with model.eval(); its models are trained with
--disable-bn, so that call only fixes dropout there. Here the model is in train mode, as every
fit of the framework is (BatchNorm normalises with batch statistics and updates them).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import CombinedLoader

from unlearnlab.errors import ConfigError
from unlearnlab.methods.base import UnlearningMethod


class NegGradPlus(UnlearningMethod):
    reads: ClassVar[frozenset[str]] = frozenset({"forget", "retain"})

    def __init__(self, model, data, alpha: float = 0.95, forget_batch_size: int = 64,
                 l2_to_original: float = 0.1, **hparams) -> None:
        super().__init__(model, data, **hparams)
        if not 0.0 <= alpha <= 1.0 or forget_batch_size < 1 or l2_to_original < 0:
            raise ConfigError(f"method: need alpha in [0, 1], forget_batch_size ≥ 1, l2_to_original ≥ 0 "
                              f"(got {alpha}, {forget_batch_size}, {l2_to_original})")
        self.alpha, self.forget_batch_size = float(alpha), int(forget_batch_size)
        self.l2_to_original = float(l2_to_original)
        self._theta0 = [p.detach().clone() for p in model.parameters()]

    def train_dataloader(self):
        return CombinedLoader(
            {
                "retain": self.data.batches("retain", self.batch_size, augment=self.augment),
                "forget": self.data.batches("forget", self.forget_batch_size, augment=self.augment, seed_offset=1),
            },
            mode="max_size_cycle",
        )

    def l2_penalty(self) -> torch.Tensor:
        return sum(((p - p0.to(p.device)) ** 2).sum() for p, p0 in zip(self.model.parameters(), self._theta0))

    def training_step(self, batch, batch_idx):
        (xr, yr), (xf, yf) = batch["retain"], batch["forget"]
        ce_r = F.cross_entropy(self.model(xr), yr)
        ce_f = F.cross_entropy(self.model(xf), yf)
        retain = ce_r + self.l2_to_original / 2 * self.l2_penalty() if self.l2_to_original else ce_r
        loss = self.alpha * retain - (1 - self.alpha) * ce_f
        self.track(loss=loss, ce_retain=ce_r, ce_forget=ce_f)
        return loss
