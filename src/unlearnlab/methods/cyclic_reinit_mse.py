"""NeurIPS 2023 unlearning challenge, 8th place (SPECS §4.8; Ahn, Lee, Bae, Yim, Jung,
"stochastic re-initialisation, knowledge preserving, Gaussian noise, forget-remember cycles"):
never reads the forget set.

Sequence (run), for each of `cycles` cycles c = 0 … cycles−1:
  1. forget (no fit): re-initialise a random fraction r_c of the entries of every eligible
     weight — Conv2d and Linear weights except the classifier (last Linear) and projection
     shortcuts (1×1 convs in `downsample`) — to fresh default-init values; r_c rises linearly
     from `min_ratio` (10%) to `max_ratio` (30%) over the cycles ("progressively increasing").
  2. remember, phase "cycle<c>": `epochs` epochs on retain images x + N(0, `noise_std`²)
     (σ 0.1), loss = MSE(f(x̃), f_orig(x̃)) on the logits; labels are never used.
Choices where the write-up gives no number: element-wise random masks, 3 cycles, SGD lr 0.01,
momentum 0.9, wd 5e-4, cosine per cycle, 2 epochs per cycle, batch 64; both models see the
same noisy image.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from unlearnlab.errors import ConfigError
from unlearnlab.methods.helpers import (
    classifier,
    default_init,
    generator,
    is_projection_shortcut,
    weight_layers,
)
from unlearnlab.methods.base import UnlearningMethod


class CyclicReinitMSE(UnlearningMethod):
    reads: ClassVar[frozenset[str]] = frozenset({"retain"})

    def __init__(self, model, data, cycles: int = 3, min_ratio: float = 0.1, max_ratio: float = 0.3,
                 noise_std: float = 0.1, **hparams) -> None:
        super().__init__(model, data, **hparams)
        if cycles < 1 or not 0.0 <= min_ratio <= max_ratio <= 1.0:
            raise ConfigError(f"method.cycles={cycles} must be ≥ 1 and 0 ≤ min_ratio ≤ max_ratio ≤ 1")
        self.cycles, self.min_ratio, self.max_ratio = int(cycles), float(min_ratio), float(max_ratio)
        self.noise_std = float(noise_std)
        self.add_teacher("teacher", model)
        self.cycle = 0
        self.reinit_counts: list[dict[str, int]] = []  # per cycle: layer -> entries re-initialised

    def ratio(self, c: int) -> float:
        if self.cycles == 1:
            return self.min_ratio
        return self.min_ratio + (self.max_ratio - self.min_ratio) * c / (self.cycles - 1)

    def eligible(self) -> list[tuple[str, torch.nn.Module]]:
        _, head = classifier(self.model)
        return [(n, m) for n, m in weight_layers(self.model) if m is not head and not is_projection_shortcut(n, m)]

    @torch.no_grad()
    def _reinit(self, c: int) -> None:
        gen = generator(self.data.seed * 101 + c)
        counts = {}
        for i, (name, m) in enumerate(self.eligible()):
            mask = (torch.rand(m.weight.shape, generator=gen) < self.ratio(c)).to(m.weight.device)
            fresh = default_init(m, self.data.seed * 10_007 + c * 1000 + i)["weight"]
            m.weight[mask] = fresh[mask]
            counts[name] = int(mask.sum())
        self.reinit_counts.append(counts)

    def run(self, make_trainer) -> None:
        for c in range(self.cycles):
            self.cycle = c
            self._reinit(c)
            if self.epochs > 0:
                self.phase = f"cycle{c}"
                make_trainer(max_epochs=self.epochs, phase=self.phase).fit(self)

    def train_dataloader(self):
        return self.data.batches("retain", self.batch_size, augment=self.augment, seed_offset=self.cycle)

    def training_step(self, batch, batch_idx):
        x, _ = batch
        gen = torch.Generator(device=x.device)
        gen.manual_seed(self.data.seed * 1_000_003 + self.cycle * 100_003 + self.current_epoch * 10_007 + batch_idx)
        x = x + self.noise_std * torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
        with torch.no_grad():
            target = self.teacher()(x)
        loss = F.mse_loss(self.model(x), target)
        self.track(mse=loss)
        return loss
