"""Fine-tune on the retain set with cross-entropy: forgetting by catastrophic forgetting.

Checked against: the NeurIPS 2023 starting kit, unlearning-challenge/starting-kit
`unlearning-CIFAR10.ipynb`, `unlearning()` (5 epochs, SGD 0.1, momentum 0.9, wd 5e-4,
CosineAnnealingLR stepped per epoch, retain batch 128, no augmentation). The Kaggle baseline
preset (finetune_kaggle: 1 epoch, lr 1e-3) follows the competition's public baseline notebook,
which is not available here to re-read. Known deviations: none."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from unlearnlab.methods.base import UnlearningMethod


class Finetune(UnlearningMethod):
    """Cross-entropy on the batches of one part, `part`: descended on retain here and by the
    methods that fine-tune after a step of their own; NegGrad ascends it on forget (`objective`)."""

    part: ClassVar[str] = "retain"
    reads: ClassVar[frozenset[str]] = frozenset({part})

    def train_dataloader(self):
        return self.data.batches(self.part, self.batch_size, augment=self.augment)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return self.objective(F.cross_entropy(self.model(x), y))

    def objective(self, ce: torch.Tensor) -> torch.Tensor:
        """The loss (tracked) from the batch's mean cross-entropy: here the cross-entropy itself."""
        self.track(loss=ce)
        return ce
