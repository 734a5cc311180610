"""Boundary Shrink (Chen, Gao, Liu, Peng, Zhou 2023, "Boundary Unlearning: Rapid Forgetting of
Deep Networks via Shifting the Decision Space", CVPR).

Checked against: TY-LEE-KR/Boundary-Unlearning-Code boundary_unlearning.py boundary_shrink(),
adv_generator.py FGSM, main.py (batch_size 64); also SalUn's re-implementation,
OPTML-Group/Unlearn-Saliency Classification/unlearn/boundary_sh.py.

1. Labels (before_fit, no gradient step): one FGSM step of size `bound` (0.1) in pixel space
   (clamp to [0, 1], discretise to 1/255) on a frozen copy of the original model (eval mode)
   moves each forget example toward its nearest decision boundary; its new label is the copy's
   argmax on the perturbed input — where the attack fails that is the true label, kept, as in
   the source. `flip_rate` records the attack's success rate (the source prints it).
2. Fine-tune the model (train mode) on the forget set toward those labels with CE: SGD lr 1e-5,
   momentum 0.9, no weight decay, 10 epochs, batch 64.
The probe is frozen and the forget images are not augmented here, so computing the labels once
equals the source's per-batch computation.
Known deviations: none."""

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

    def nearest_labels(self) -> None:
        if self.adv_labels is not None:
            return
        probe = self.teacher("probe").to(self.device)
        x, y = self.data.tensors("forget")
        x, y = x.to(self.device), y.to(self.device)
        mean, std = self.data.pixel_stats
        labels = []
        for start in range(0, len(y), 512):
            xb, yb = x[start : start + 512], y[start : start + 512]
            x_adv = fgsm(probe, xb, yb, self.bound, mean, std)
            with torch.no_grad():
                logits = probe(x_adv)
            labels.append(logits.argmax(1))
        self.adv_labels = torch.cat(labels)
        self.flip_rate = (self.adv_labels != y).float().mean()
        self._forget_x = x

    def before_fit(self) -> None:
        self.nearest_labels()

    def train_dataloader(self):
        self.nearest_labels()
        return TensorBatches((self._forget_x, self.adv_labels), self.batch_size, self.data.seed)

    def training_step(self, batch, batch_idx):
        x, y_adv = batch
        loss = F.cross_entropy(self.model(x), y_adv)
        self.track(loss=loss)
        return loss
