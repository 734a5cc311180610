"""SCRUB (Kurmanji, Triantafillou, Hayes, Triantafillou 2023, "Towards Unbounded Machine
Unlearning").

Checked against: meghdadk/SCRUB large_scale_unlearning.ipynb (its SCRUB cell and loaders) and
thirdparty/repdistiller/helper/loops.py train_distill, distiller_zoo/KD.py DistillKL.

Teacher = frozen copy of the original model (eval mode); student = the model (train mode). For
each of `epochs` rounds r = 0, 1, …:
  - while r < msteps, a "max" phase: one pass over forget maximising KL_T(student‖teacher)
    (loss = −KL), batches of `forget_batch_size`;
  - then a "min" phase: one pass over retain minimising γ·CE + α·KL_T, batches of `batch_size`.
Each phase is its own 1-epoch fit (logged as max/… and min/…), all sharing ONE optimizer and
scheduler, created at the first fit, so momentum carries across phases as in the source.
KL_T is RepDistiller's DistillKL (KL(p_teacher ‖ p_student) at temperature T, ·T²).
Batch sizes: the notebook sets sgda_batch_size 128 and del_batch_size 32, but its loaders never
read them — forget_loader is built with batch 512 and retain_loader with 256, and those are what
its SCRUB loop runs; so the defaults here are 512 and 256. Its lr_decay_epochs [3, 5, 9] never
fire within 3 epochs (scheduler none).
Known deviations: none."""

from __future__ import annotations

from typing import ClassVar

import torch.nn.functional as F

from unlearnlab.errors import ConfigError
from unlearnlab.methods.helpers import kl_student_teacher
from unlearnlab.methods.base import UnlearningMethod

PHASES = ("max", "min")


class Scrub(UnlearningMethod):
    reads: ClassVar[frozenset[str]] = frozenset({"forget", "retain"})

    def __init__(self, model, data, msteps: int = 2, temperature: float = 4.0, gamma: float = 0.99,
                 alpha: float = 0.001, forget_batch_size: int = 512, **hparams) -> None:
        super().__init__(model, data, **hparams)
        if msteps < 0 or forget_batch_size < 1 or temperature <= 0:
            raise ConfigError(f"method: need msteps ≥ 0, forget_batch_size ≥ 1, temperature > 0 "
                              f"(got {msteps}, {forget_batch_size}, {temperature})")
        self.msteps, self.temperature = int(msteps), float(temperature)
        self.gamma, self.alpha, self.forget_batch_size = float(gamma), float(alpha), int(forget_batch_size)
        self.add_teacher("teacher", model)
        self.round = 0
        self._optim = None

    def run(self, make_trainer) -> None:
        for r in range(self.epochs):
            if r < self.msteps:
                self.fit_phase(make_trainer, "max", r)
            self.fit_phase(make_trainer, "min", r)

    def fit_phase(self, make_trainer, phase: str, round_: int) -> None:
        """One pass of `phase` ("max" over forget, "min" over retain) in round `round_`."""
        if phase not in PHASES:
            raise ValueError(f"phase {phase!r} is not one of {PHASES}")
        self.phase, self.round = phase, int(round_)
        make_trainer(max_epochs=1, phase=phase).fit(self)

    def train_dataloader(self):
        if self.phase == "max":
            return self.data.batches("forget", self.forget_batch_size, augment=self.augment,
                                     seed_offset=2 * self.round + 1)
        return self.data.batches("retain", self.batch_size, augment=self.augment, seed_offset=2 * self.round)

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits, teacher_logits = self.with_teacher(x)
        kl = kl_student_teacher(logits, teacher_logits, self.temperature)
        if self.phase == "max":
            self.track(loss=-kl, kl_forget=kl)
            return -kl
        ce = F.cross_entropy(logits, y)
        loss = self.gamma * ce + self.alpha * kl
        self.track(loss=loss, ce_retain=ce, kl_retain=kl)
        return loss

    def total_steps(self) -> int:
        n_f, n_r = self.data.size("forget"), self.data.size("retain")
        per_f = -(-n_f // self.forget_batch_size)
        per_r = -(-n_r // self.batch_size)
        return min(self.epochs, self.msteps) * per_f + self.epochs * per_r

    def configure_optimizers(self):
        if self._optim is None:  # one optimizer (and schedule) across every phase's fit
            self._optim = self.optim.build(self.model.parameters(), self.total_steps(), None)  # per step only: one optimiser spans every phase's fit
        return self._optim
