"""Bad Teacher / blindspot unlearning (Chundawat, Tarun, Mandal, Kankanhalli 2023, "Can Bad
Teaching Induce Forgetting? Unlearning in Deep Networks using an Incompetent Teacher", AAAI).

Checked against: vikram2000b/bad-teaching-unlearning unlearn.py (UnlearnerLoss, unlearning_step,
blindspot_unlearner) and its CIFARSuper20_Rocket_Unlearn.ipynb (30% of retain, Adam 1e-4,
1 epoch, batch 256, KL temperature 1, the incompetent teacher a freshly constructed network).

Two frozen teachers: the competent one (a copy of the original model) and an incompetent one —
the same architecture freshly built from `architecture` exactly as the reference retrained
models are (cells.py: seeded, then build_model), from the cell seed + 1. The student (the model)
is trained on one shuffled mix of the whole forget set and a random `retain_fraction` of the
retain set, minimising F.kl_div(log_softmax(student/T), teacher_probs) with the source's default
reduction (the mean over every element), where the teacher is the incompetent one for forget
examples and the competent one for retain examples.
Known deviations: none."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from unlearnlab.errors import ConfigError
from unlearnlab.methods.helpers import TensorBatches, fresh_init, generator
from unlearnlab.methods.base import UnlearningMethod


class BadTeacher(UnlearningMethod):
    reads: ClassVar[frozenset[str]] = frozenset({"forget", "retain"})

    def __init__(self, model, data, architecture, temperature: float = 1.0, retain_fraction: float = 0.3,
                 **hparams) -> None:
        super().__init__(model, data, **hparams)
        if temperature <= 0 or not 0.0 <= float(retain_fraction) <= 1.0:
            raise ConfigError(f"method: need temperature > 0 and retain_fraction in [0, 1] "
                              f"(got {temperature}, {retain_fraction})")
        self.temperature, self.retain_fraction = float(temperature), float(retain_fraction)
        self.add_teacher("good", model)
        bad = self.add_teacher("bad", model)
        fresh_init(bad, architecture, data.input_shape, data.num_classes, data.seed + 1)

    def _mixed_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        xf, _ = self.data.tensors("forget")
        xr, _ = self.data.tensors("retain")
        n = int(round(self.retain_fraction * len(xr)))
        pick = torch.randperm(len(xr), generator=generator(self.data.seed + 2, xr.device), device=xr.device)[:n]
        x = torch.cat([xf, xr[pick]])
        is_forget = torch.cat([torch.ones(len(xf), dtype=torch.bool, device=x.device),
                               torch.zeros(n, dtype=torch.bool, device=x.device)])
        return x, is_forget

    def train_dataloader(self):
        return TensorBatches(self._mixed_set(), self.batch_size, self.data.seed, augment=self.augment)

    def teacher_probs(self, x: torch.Tensor, is_forget: torch.Tensor) -> torch.Tensor:
        t = self.temperature
        with torch.no_grad():
            good = F.softmax(self.teacher("good")(x) / t, dim=1)
            bad = F.softmax(self.teacher("bad")(x) / t, dim=1)
        return torch.where(is_forget.view(-1, 1), bad, good)

    def training_step(self, batch, batch_idx):
        x, is_forget = batch
        target = self.teacher_probs(x, is_forget)
        log_p = F.log_softmax(self.model(x) / self.temperature, dim=1)
        # the source's F.kl_div default ('mean': over every element), written out: torch plans
        # to turn 'mean' into 'batchmean'
        loss = F.kl_div(log_p, target, reduction="sum") / target.numel()
        self.track(loss=loss)
        return loss
