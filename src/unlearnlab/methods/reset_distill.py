"""NeurIPS 2023 unlearning challenge, 6th place: reset the first and the last
layer, warm up by distillation on the validation set, then fine-tune on retain with CE and
distillation from the original.

Checked against: xcadet/deepunlearn munl/unlearning/kgltop6.py (KGLTop6, "adapted from
kaggle.com/code/stathiskaripidis/unlearning-by-resetting-layers-7th-on-private-lb").

Sequence (run):
  1. reset (no fit): the first Conv2d/Linear and the classifier (last Linear) get their
     default init (seeded); the original model is kept, frozen, as the teacher.
  2. phase "warmup", `warmup_epochs` epochs on the validation set (no labels used):
     KL(teacher_T ‖ student_T) at temperature T, batch mean (SGD `warmup_lr`, momentum, weight
     decay, no scheduler).
  3. phase "finetune", `epochs` epochs on retain: CE(y) + soft CE(teacher_T, student_T)
     + KL(teacher_T ‖ student_T) (SGD `lr`, momentum, weight decay; cosine over the epochs,
     stepped once per epoch as the source's CosineAnnealingLR(T_max=retain_epochs)).
Defaults (KGLTop6): T 5, 3 + 3 epochs, warm-up lr 9e-4, lr 1e-3, momentum 0.9, wd 5e-4, batch 64.
Known deviations: none (the source resets `conv1`/`fc` by name; here the first weight layer and
the last Linear, the same layers on a ResNet).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from unlearnlab.methods.helpers import classifier, first_layer, reset_layer
from unlearnlab.methods.base import UnlearningMethod
from unlearnlab.training import OptimSettings


def kl_to_teacher(student: torch.Tensor, teacher: torch.Tensor, t: float) -> torch.Tensor:
    return F.kl_div(F.log_softmax(student / t, dim=1), F.softmax(teacher / t, dim=1), reduction="batchmean")


class ResetDistill(UnlearningMethod):
    reads: ClassVar[frozenset[str]] = frozenset({"retain", "val"})
    model_kinds: ClassVar[frozenset[str]] = frozenset({"network"})  # it resets the first and the last layer of a network

    def __init__(self, model, data, warmup_epochs: int = 3, warmup_lr: float = 9e-4,
                 temperature: float = 5.0, **hparams) -> None:
        super().__init__(model, data, **hparams)
        self.warmup_epochs, self.warmup_lr = int(warmup_epochs), float(warmup_lr)
        self.temperature = float(temperature)
        self.add_teacher("teacher", model)
        self.reset_layers: list[str] = []

    def run(self, make_trainer) -> None:
        for i, (name, module) in enumerate((first_layer(self.model), classifier(self.model))):
            if name not in self.reset_layers:
                reset_layer(module, self.data.seed * 1000 + i)
                self.reset_layers.append(name)
        if self.warmup_epochs > 0:
            self.phase = "warmup"
            make_trainer(max_epochs=self.warmup_epochs, phase=self.phase).fit(self)
        if self.epochs > 0:
            self.phase = "finetune"
            make_trainer(max_epochs=self.epochs, phase=self.phase).fit(self)

    def train_dataloader(self):
        if self.phase == "warmup":
            return self.data.batches("val", self.batch_size, augment=self.augment, seed_offset=1)
        return self.data.batches("retain", self.batch_size, augment=self.augment, seed_offset=2)

    def training_step(self, batch, batch_idx):
        x, y = batch
        out, t_out = self.with_teacher(x)
        kl = kl_to_teacher(out, t_out, self.temperature)
        if self.phase == "warmup":
            self.track(kl=kl)
            return kl
        soft = F.softmax(t_out / self.temperature, dim=1)
        soft_ce = -(soft * F.log_softmax(out / self.temperature, dim=1)).sum(1).mean()
        ce = F.cross_entropy(out, y)
        loss = ce + soft_ce + kl
        self.track(loss=loss, ce=ce, soft_ce=soft_ce, kl=kl)
        return loss

    def configure_optimizers(self):
        params = self.model.parameters()
        o = self.optim
        if self.phase == "warmup":
            return OptimSettings(o.optimizer, self.warmup_lr, o.momentum, o.weight_decay, "none").build(params, None, None)
        return o.build_for(params, self.trainer)
