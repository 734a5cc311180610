"""Selective Synaptic Dampening (SSD; Foster, Schoepf, Brintrup 2024, "Fast Machine Unlearning
Without Retraining Through Selective Synaptic Dampening", AAAI): no training at all — shrink the
parameters that matter far more to the forget set than to the whole training set.

Checked against: if-loops/selective-synaptic-dampening src/ssd.py (ParameterPerturber:
calc_importance, modify_weight), src/forget_random_strategies.py (ssd_tuning: lower_bound 1,
exponent 1, model.eval()) and src/forget_random_main.py (random forgetting: selection_weighting
α = 10, dampening_constant λ = 1; forget and full-train loaders of batch 128, unshuffled; the
full training set is retain followed by forget, both in random_split's random order).

run (no Trainer fit), the model in eval mode:
  1. importances: over a set in batches of `batch_size`, I = (1/#batches)·Σ_batches g², g the
     gradient of the batch's mean loss (the source's estimate of the Fisher diagonal: squared
     batch gradients, not per-example ones); loss = cross-entropy. I_f on the forget set, I_D on
     the full training data (retain then forget); each set in a random order drawn from the
     cell seed.
  2. dampening: every parameter element with I_f > α·I_D is multiplied by min(λ·I_D/I_f, 1);
     every other element, and every buffer (BatchNorm statistics), is left as it is.
Known deviations: none.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from unlearnlab.errors import ConfigError
from unlearnlab.methods.base import UnlearningMethod
from unlearnlab.methods.helpers import generator


class SSD(UnlearningMethod):
    reads: ClassVar[frozenset[str]] = frozenset({"forget", "retain"})
    trains: ClassVar[bool] = False

    def __init__(self, model, data, selection_weighting: float = 10.0, dampening_constant: float = 1.0,
                 **hparams) -> None:
        super().__init__(model, data, **{**hparams, "epochs": 0})
        if selection_weighting <= 0 or dampening_constant <= 0:
            raise ConfigError(f"method: need selection_weighting > 0 and dampening_constant > 0 "
                              f"(got {selection_weighting}, {dampening_constant})")
        self.alpha, self.lam = float(selection_weighting), float(dampening_constant)
        self.importance: dict[str, dict[str, torch.Tensor]] = {}  # "forget" / "full": per parameter
        self.dampened: dict[str, torch.Tensor] = {}  # per parameter: the elements multiplied

    def importance_loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The loss whose batch gradients measure importance: SSD's cross-entropy."""
        return F.cross_entropy(logits, y)

    def accumulate(self, grad: torch.Tensor) -> torch.Tensor:
        """What one batch gradient adds to an importance: SSD's square."""
        return grad.pow(2)

    def importances(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        params = dict(self.model.named_parameters())
        total = {n: torch.zeros_like(p) for n, p in params.items()}
        n_batches = 0
        for start in range(0, len(y), self.batch_size):
            self.model.zero_grad(set_to_none=True)
            xb, yb = x[start : start + self.batch_size], y[start : start + self.batch_size]
            self.importance_loss(self.model(xb), yb).backward()
            for n, p in params.items():
                if p.grad is not None:
                    total[n] += self.accumulate(p.grad.detach())
            n_batches += 1
        self.model.zero_grad(set_to_none=True)
        return {n: t / max(1, n_batches) for n, t in total.items()}

    @torch.no_grad()
    def dampen(self, full: dict[str, torch.Tensor], forget: dict[str, torch.Tensor]) -> None:
        for n, p in self.model.named_parameters():
            selected = forget[n] > self.alpha * full[n]
            factor = torch.where(selected, (self.lam * full[n] / forget[n]).clamp(max=1.0), torch.ones_like(p))
            p.mul_(factor)
            self.dampened[n] = selected.cpu()

    def run(self, make_trainer) -> None:
        del make_trainer  # no Trainer: the weights change in closed form
        xf, yf = self.data.tensors("forget")
        xr, yr = self.data.tensors("retain")
        gen = generator(self.data.seed)
        f = torch.randperm(len(yf), generator=gen).to(yf.device)
        r = torch.randperm(len(yr), generator=gen).to(yr.device)
        xf, yf = xf[f], yf[f]
        self.model.to(yf.device).eval()
        self.importance = {
            "forget": self.importances(xf, yf),
            "full": self.importances(torch.cat([xr[r], xf]), torch.cat([yr[r], yf])),
        }
        self.dampen(self.importance["full"], self.importance["forget"])
