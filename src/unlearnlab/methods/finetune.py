"""Fine-tune on the retain set with cross-entropy: forgetting by catastrophic forgetting.

Checked against: the NeurIPS 2023 starting kit, unlearning-challenge/starting-kit
`unlearning-CIFAR10.ipynb`, `unlearning()` (5 epochs, SGD 0.1, momentum 0.9, wd 5e-4,
CosineAnnealingLR stepped per epoch, retain batch 128, no augmentation). The Kaggle baseline
preset (finetune_kaggle: 1 epoch, lr 1e-3) follows the competition's public baseline notebook,
which is not available here to re-read. Known deviations: none."""

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
