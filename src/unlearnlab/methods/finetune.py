"""Fine-tune on the retain set with cross-entropy (starting kit: 5 epochs SGD 0.1, cosine;
Kaggle baseline: 1 epoch, lr 1e-3): forgetting by catastrophic forgetting."""

from __future__ import annotations

from typing import ClassVar

import torch.nn.functional as F

from unlearnlab.methods.base import UnlearningMethod


class Finetune(UnlearningMethod):
    reads: ClassVar[frozenset[str]] = frozenset({"retain"})

    def train_dataloader(self):
        return self.data.batches("retain", self.batch_size, augment=self.augment)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.model(x), y)
        self.track(loss=loss)
        return loss
