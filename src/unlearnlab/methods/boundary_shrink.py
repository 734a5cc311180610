"""Boundary Shrink (Chen, Gao, Liu, Peng, Zhou 2023, "Boundary Unlearning: Rapid Forgetting of
Deep Networks via Shifting the Decision Space", CVPR; their boundary_shrink(): FGSM, bound
0.1, SGD lr 1e-5, momentum 0.9, 10 epochs; re-implemented in SalUn's unlearn/boundary_sh.py).

1. Labels (on_fit_start / before the first batch, no gradient step): one FGSM step of size
   `bound` in pixel space on a frozen copy of the original model (eval mode) moves each forget
   example toward its nearest decision boundary; its label becomes the class the copy predicts
   there — among the wrong classes only (the source takes the plain argmax, which stays the
   true label where the attack fails; SPECS asks for the nearest *wrong* label).
   `flip_rate` records how often the plain argmax already differed.
2. Fine-tune the model on the forget set toward those labels (CE), unaugmented, since a
   label belongs to its un-augmented image."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from unlearnlab.errors import ConfigError
from unlearnlab.methods.helpers import TensorBatches, fgsm
from unlearnlab.methods.base import UnlearningMethod


class BoundaryShrink(UnlearningMethod):
    reads: ClassVar[frozenset[str]] = frozenset({"forget"})

    def __init__(self, model, data, bound: float = 0.1, **hparams) -> None:
        super().__init__(model, data, **hparams)
        if bound < 0:
            raise ConfigError(f"method.bound={bound} must be ≥ 0")
        self.bound = float(bound)
        self.add_teacher("probe", model)
        self.adv_labels: torch.Tensor | None = None
        self.flip_rate: torch.Tensor | None = None

    def nearest_wrong_labels(self) -> None:
        if self.adv_labels is not None:
            return
        probe = self.teacher("probe").to(self.device)
        x, y = self.data.tensors("forget")
        x, y = x.to(self.device), y.to(self.device)
        mean, std = self.data.pixel_stats
        labels, flips = [], []
        for start in range(0, len(y), 512):
            xb, yb = x[start : start + 512], y[start : start + 512]
            x_adv = fgsm(probe, xb, yb, self.bound, mean, std)
            with torch.no_grad():
                logits = probe(x_adv)
            flips.append(logits.argmax(1) != yb)
            labels.append(logits.scatter(1, yb.view(-1, 1), float("-inf")).argmax(1))
        self.adv_labels = torch.cat(labels)
        self.flip_rate = torch.cat(flips).float().mean()
        self._forget_x = x

    def before_fit(self) -> None:
        self.nearest_wrong_labels()

    def train_dataloader(self):
        self.nearest_wrong_labels()
        return TensorBatches((self._forget_x, self.adv_labels), self.batch_size, self.data.seed)

    def training_step(self, batch, batch_idx):
        x, y_adv = batch
        loss = F.cross_entropy(self.model(x), y_adv)
        self.track(loss=loss)
        return loss
