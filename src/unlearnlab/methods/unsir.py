"""UNSIR (Tarun, Chundawat, Mandal, Kankanhalli 2023, "Fast Yet Effective Machine Unlearning",
IEEE TNNLS): learn an error-maximising noise batch per forgotten class, impair the model on it
together with retain data, then repair on retain data.

Checked against: vikram2000b/Fast-Machine-Unlearning "Machine Unlearning.ipynb" (the authors'
notebook: Noise, the noise loop, the impair and repair cells); also if-loops/selective-synaptic-
dampening src/unlearn.py + forget_full_class_strategies.py (UNSIR, "implementation from" it).

A class-forgetting method by design: the forget images are never read, only which classes the
forget labels name. Sequence (run):
  1. retain sample: the first `samples_per_class` (1,000) retain examples of each class. (The
     notebook takes them from the classes not forgotten; with a class split the retain set holds
     only those. On a random split every class occurs in the forget set, so "the forgotten
     classes" are all of them, and the sample holds examples of every class.)
  2. noise, for each class c among the forget labels (no fit): a tensor of `batch_size` (256)
     images ~ N(0, 1) of the input's shape, optimised by Adam (`noise_lr` 0.1) for
     `noise_steps` (5 epochs × 8 = 40) steps on −CE(f(noise), c) + 0.1·mean‖noise‖², the model
     in train mode (as the notebook's, which never calls eval: BatchNorm normalises with the noise
     batch's statistics and updates its running statistics).
  3. phase "impair", `epochs` (1) epoch(s): CE on the retain sample plus `noise_copies` (20)
     copies of each class's noise batch labelled with that class, shuffled together, batches of
     `batch_size`; Adam `lr` 0.02.
  4. phase "repair", `repair_epochs` (1) epoch(s): CE on the retain sample, Adam `repair_lr` 0.01.
On a random split the impair step therefore damages every class and the repair step re-fits all
of them: what it forgets of the forget *examples* is whatever impair-then-repair loses.
Known deviations: the noise of class c is labelled c, as the paper and if-loops' version do (the
notebook's impair cell labels every class's noise 0, `class_num = 0`).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from unlearnlab.errors import ConfigError
from unlearnlab.methods.finetune import Finetune
from unlearnlab.methods.helpers import TensorBatches, generator
from unlearnlab.training import OptimSettings

PHASES = ("impair", "repair")


class UNSIR(Finetune):
    """Finetune's cross-entropy step, on the impair set (retain sample + noise) and then on the repair set."""

    reads: ClassVar[frozenset[str]] = frozenset({"forget", "retain"})

    def __init__(self, model, data, noise_lr: float = 0.1, noise_steps: int = 40, noise_weight: float = 0.1,
                 noise_copies: int = 20, samples_per_class: int = 1000, repair_epochs: int = 1,
                 repair_lr: float = 0.01, **hparams) -> None:
        super().__init__(model, data, **hparams)
        if noise_steps < 0 or noise_copies < 1 or samples_per_class < 1 or repair_epochs < 0:
            raise ConfigError(f"method: need noise_steps ≥ 0, noise_copies ≥ 1, samples_per_class ≥ 1, "
                              f"repair_epochs ≥ 0 (got {noise_steps}, {noise_copies}, {samples_per_class}, "
                              f"{repair_epochs})")
        self.noise_lr, self.noise_steps, self.noise_weight = float(noise_lr), int(noise_steps), float(noise_weight)
        self.noise_copies, self.samples_per_class = int(noise_copies), int(samples_per_class)
        self.repair_epochs, self.repair_lr = int(repair_epochs), float(repair_lr)
        self.noise: dict[int, torch.Tensor] = {}  # per forgotten class: its noise batch
        self._sets: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def retain_sample(self) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.data.tensors("retain")
        keep = torch.cat([torch.nonzero(y == c).flatten()[: self.samples_per_class] for c in y.unique()])
        keep = keep.sort().values
        return x[keep], y[keep]

    def learn_noise(self, c: int, shape: tuple[int, ...], device) -> torch.Tensor:
        gen = generator(self.data.seed * 1009 + c, device)
        noise = torch.randn((self.batch_size, *shape), generator=gen, device=device).requires_grad_(True)
        opt = torch.optim.Adam([noise], lr=self.noise_lr)
        labels = torch.full((self.batch_size,), c, dtype=torch.long, device=device)
        self.model.train()
        for _ in range(self.noise_steps):
            loss = -F.cross_entropy(self.model(noise), labels) + self.noise_weight * noise.pow(2).sum(dim=(1, 2, 3)).mean()
            (noise.grad,) = torch.autograd.grad(loss, [noise])  # the model's weights get no gradient
            opt.step()
        return noise.detach()

    def run(self, make_trainer) -> None:
        _, yf = self.data.tensors("forget")
        xs, ys = self.retain_sample()
        self.model.to(ys.device)
        for c in sorted(int(v) for v in yf.unique()):
            self.noise[c] = self.learn_noise(c, tuple(xs.shape[1:]), ys.device)
        xn = torch.cat([n for n in self.noise.values() for _ in range(self.noise_copies)])
        yn = torch.cat([torch.full((len(n) * self.noise_copies,), c, dtype=torch.long, device=ys.device)
                        for c, n in self.noise.items()])
        self._sets = {"impair": (torch.cat([xn, xs]), torch.cat([yn, ys])), "repair": (xs, ys)}
        for phase, epochs in (("impair", self.epochs), ("repair", self.repair_epochs)):
            if epochs > 0:
                self.phase = phase
                make_trainer(max_epochs=epochs, phase=phase).fit(self)

    def train_dataloader(self):
        offset = PHASES.index(self.phase) + 1
        return TensorBatches(self._sets[self.phase], self.batch_size, self.data.seed * 7 + offset, augment=self.augment)

    def configure_optimizers(self):
        o = self.optim
        lr = o.lr if self.phase == "impair" else self.repair_lr
        return OptimSettings(o.optimizer, lr, o.momentum, o.weight_decay, "none").build(self.model.parameters(), None, None)
