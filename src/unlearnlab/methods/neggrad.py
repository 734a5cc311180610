"""NegGrad / gradient ascent (GA; Thudi et al. 2022).

Checked against: OPTML-Group/Unlearn-Saliency Classification/unlearn/GA.py (loss = −CE on the
forget loader, model.train()) and its README (GA: unlearn_lr 1e-4, 5 epochs).

Maximise cross-entropy on the forget set, loss = −CE_forget. Unbounded: keep the learning rate
small and the epochs few, or the model is destroyed. Known deviations: none."""

from __future__ import annotations

from typing import ClassVar

import torch.nn.functional as F

from unlearnlab.methods.base import UnlearningMethod


class NegGrad(UnlearningMethod):
    reads: ClassVar[frozenset[str]] = frozenset({"forget"})

    def train_dataloader(self):
        return self.data.batches("forget", self.batch_size, augment=self.augment)

    def training_step(self, batch, batch_idx):
        x, y = batch
        ce = F.cross_entropy(self.model(x), y)
        self.track(loss=-ce, ce_forget=ce)
        return -ce
