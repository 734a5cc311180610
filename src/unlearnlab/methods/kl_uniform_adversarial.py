"""NeurIPS 2023 unlearning challenge, 1st place: push the forget set toward the
uniform distribution, then alternate a forget round and a retain round.

Sequence of fits (run):
  1. phase "uniform", 1 epoch over forget: minimise KL(uniform ‖ softmax(f(x))) (SGD
     `uniform_lr`, momentum, no weight decay).
  2. phase "adversarial", `epochs` epochs; each epoch is a forget round then a retain round
     (two optimisers, manual optimisation, one fit):
     - forget round: one step per forget batch, paired with a retain batch; the retain logits
       (no gradient) act as keys: loss = −mean log softmax(f(x_f) f(x_r)ᵀ / T), i.e. each
       forget output is pushed to be equally (dis)similar to every retain output (SGD
       `forget_lr`, no weight decay, cosine to `eta_min` over all forget steps);
     - retain round: CE on every retain batch (SGD at `retain_lr`·batch_size/64, `momentum`,
       `weight_decay`).
Checked against: xcadet/deepunlearn munl/unlearning/kgltop1.py (KGLTop1: kl_loss_sym, the
forget round over zip(forget, retain), CosineAnnealingLR over len(forget)·epochs forget steps).
Defaults (KGLTop1): batch 256, 8 epochs; retain optimiser lr `retain_lr`·batch_size/64 (the
source scales its 1e-3 by the batch: 0.004 at batch 256), momentum 0.9, wd 1e-2; uniform lr
0.005, forget lr 3e-4 (both momentum 0.9, no weight decay); T 1.15; eta_min 1e-6.
Known deviations: none.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from unlearnlab.errors import ConfigError
from unlearnlab.methods.base import UnlearningMethod
from unlearnlab.training import OptimSettings


class _Rounds:
    """One epoch = the forget round (forget batch, retain batch) then the retain round."""

    def __init__(self, forget, retain_keys, retain) -> None:
        self.forget, self.retain_keys, self.retain = forget, retain_keys, retain
        self.n_forget = min(len(forget), len(retain_keys))

    def __len__(self) -> int:
        return self.n_forget + len(self.retain)

    def __iter__(self):
        for (xf, _), (xr, _) in zip(self.forget, self.retain_keys):
            yield {"forget": (xf, xr)}
        for x, y in self.retain:
            yield {"retain": (x, y)}


class KLUniformAdversarial(UnlearningMethod):
    reads: ClassVar[frozenset[str]] = frozenset({"forget", "retain"})

    def __init__(self, model, data, uniform_lr: float = 0.005, forget_lr: float = 3e-4,
                 temperature: float = 1.15, eta_min: float = 1e-6, retain_lr: float = 1e-3, **hparams) -> None:
        if "lr" in hparams:
            raise ConfigError("method kl_uniform_adversarial: its retain learning rate is retain_lr·batch_size/64 "
                              "(the source's scaling); set retain_lr, not lr")
        batch_size = int(hparams.get("batch_size", 128))
        super().__init__(model, data, lr=float(retain_lr) * batch_size / 64, **hparams)
        self.retain_lr = float(retain_lr)
        self.uniform_lr, self.forget_lr = float(uniform_lr), float(forget_lr)
        self.temperature, self.eta_min = float(temperature), float(eta_min)
        self._rounds: _Rounds | None = None

    def run(self, make_trainer) -> None:
        self.phase, self.automatic_optimization = "uniform", True
        make_trainer(max_epochs=1, phase=self.phase).fit(self)
        if self.epochs > 0:
            self.phase, self.automatic_optimization = "adversarial", False
            make_trainer(max_epochs=self.epochs, phase=self.phase).fit(self)

    def train_dataloader(self):
        if self.phase == "uniform":
            return self.data.batches("forget", self.batch_size, augment=self.augment)
        self._rounds = _Rounds(
            self.data.batches("forget", self.batch_size, augment=self.augment, seed_offset=1),
            self.data.batches("retain", self.batch_size, augment=self.augment, seed_offset=2),
            self.data.batches("retain", self.batch_size, augment=self.augment, seed_offset=3),
        )
        return self._rounds

    def training_step(self, batch, batch_idx):
        if self.phase == "uniform":
            x, _ = batch
            logp = F.log_softmax(self.model(x), dim=1)
            loss = F.kl_div(logp, torch.full_like(logp, 1.0 / logp.shape[1]), reduction="batchmean")
            self.track(kl_uniform=loss)
            return loss
        opt_forget, opt_retain = self.optimizers()
        total = len(self._rounds)
        if "forget" in batch:
            xf, xr = batch["forget"]
            out_f = self.model(xf)
            with torch.no_grad():
                keys = self.model(xr)
            loss = -F.log_softmax(out_f @ keys.T / self.temperature, dim=1).mean()
            opt_forget.zero_grad()
            self.manual_backward(loss)
            opt_forget.step()
            self.lr_schedulers().step()
            # scaled so that the epoch mean (sum / all steps) is the mean over forget steps
            self.track(forget_loss=loss * total / self._rounds.n_forget)
        else:
            x, y = batch["retain"]
            loss = F.cross_entropy(self.model(x), y)
            opt_retain.zero_grad()
            self.manual_backward(loss)
            opt_retain.step()
            self.track(retain_ce=loss * total / len(self._rounds.retain))

    def configure_optimizers(self):
        params = list(self.model.parameters())
        if self.phase == "uniform":
            return OptimSettings("sgd", self.uniform_lr, self.optim.momentum, 0.0, "none").build(params, None, None)
        opt_forget = OptimSettings("sgd", self.forget_lr, self.optim.momentum, 0.0, "none").build(params, None, None)
        opt_retain = OptimSettings("sgd", self.optim.lr, self.optim.momentum, self.optim.weight_decay, "none").build(params, None, None)
        n_forget = min(-(-self.data.size("forget") // self.batch_size), -(-self.data.size("retain") // self.batch_size))
        steps = max(1, n_forget * self.epochs)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt_forget, T_max=steps, eta_min=self.eta_min)
        return [opt_forget, opt_retain], [sched]
