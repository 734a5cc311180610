"""NeurIPS 2023 unlearning challenge, 7th place: reset the classifier, then per
epoch train only a few randomly drawn parameter tensors (plus BatchNorm), with Gaussian noise on
newly drawn ones, and finish with a few epochs of full fine-tuning.

Checked against: xcadet/deepunlearn munl/unlearning/kgltop7.py (KGLTop7, "hyper parameters
copied as provided in the notebook"). The seed's one-line summary ("reset the last layer, add
noise to 9 random layers, standard fine-tuning") is this structure, simplified.

Sequence (run): the classifier (last Linear) gets its default init; then for each epoch
e = 0 … `epochs`−1, one 1-epoch fit (phase "epoch<e>") of CE on retain with a fresh SGD
optimiser (momentum, weight decay):
  - selective epochs (e < epochs − `fine_epochs`): `n_tensors` (9) parameter tensors are drawn
    without replacement among all non-BatchNorm parameter tensors (weights and biases are
    separate tensors, the classifier included); only they and every BatchNorm weight/bias get
    gradients (the rest have requires_grad off); lr `lr`. In epochs `reset_epochs` … (1 … 4),
    round-down(`noise_ratio`·`n_tensors`) = 6 of the 9 drawn are drawn again, and each of those
    that was never trainable in an earlier epoch gets N(0, `noise_std`²) added (σ 0.04).
  - fine epochs (the last `fine_epochs` = 4): every parameter trains, at lr `fine_lrs[i]`
    ([2e-4, 2e-4, 2e-4, 1e-3]).
Noise needs tensors that did not train yet: on a model with few of them (small_cnn has 5
non-BatchNorm tensors) 9 drawn per epoch cover all in epoch 0 and no noise is ever added;
reset_noise_digits keeps the source's ratio instead (2 of 5; the source: 9 of ResNet-18's 22).
Known deviations: BatchNorm parameters are found by module type; the source matches "bn" in the
parameter name, which on torchvision's ResNet misses the projection shortcuts' BatchNorm
(`downsample.1`), leaving those among the drawable tensors there.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from unlearnlab.errors import ConfigError
from unlearnlab.methods.finetune import Finetune
from unlearnlab.methods.helpers import classifier, generator, reset_layer
from unlearnlab.training import OptimSettings


def batchnorm_parameters(model: nn.Module) -> set[str]:
    return {f"{m_name}.{p_name}" if m_name else p_name
            for m_name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
            for p_name, _ in m.named_parameters(recurse=False)}


class ResetNoise(Finetune):
    reads: ClassVar[frozenset[str]] = frozenset({"retain"})
    model_kinds: ClassVar[frozenset[str]] = frozenset({"network"})  # it resets the classifier and perturbs layers of a network

    def __init__(self, model, data, n_tensors: int = 9, noise_ratio: float = 0.7, noise_std: float = 0.04,
                 reset_epochs: int = 1, fine_lrs: tuple[float, ...] = (2e-4, 2e-4, 2e-4, 1e-3), **hparams) -> None:
        super().__init__(model, data, **hparams)
        self.fine_lrs = tuple(float(v) for v in fine_lrs)
        if n_tensors < 1 or not 0.0 <= noise_ratio <= 1.0:
            raise ConfigError(f"method: need n_tensors={n_tensors} ≥ 1 and noise_ratio={noise_ratio} in [0, 1]")
        self.n_tensors, self.noise_ratio, self.noise_std = int(n_tensors), float(noise_ratio), float(noise_std)
        self.reset_epochs = int(reset_epochs)
        self.reset_layer_name = ""
        self.trainable: list[list[str]] = []  # per epoch: the parameter names that trained
        self.noised: list[list[str]] = []     # per epoch: the parameter names that got noise
        self.epoch = 0

    @property
    def fine_epochs(self) -> int:
        return len(self.fine_lrs)

    def select(self, e: int, gen: torch.Generator, ever_trained: set[str]) -> list[str]:
        """The tensors that train in epoch e (and the noise, added in place)."""
        params = dict(self.model.named_parameters())
        if e >= self.epochs - self.fine_epochs:
            self.noised.append([])
            return list(params)
        bn = batchnorm_parameters(self.model)
        others = [n for n in params if n not in bn]
        drawn = [others[i] for i in torch.randperm(len(others), generator=gen)[: self.n_tensors].tolist()]
        noised = []
        if e >= self.reset_epochs:
            k = int(self.noise_ratio * self.n_tensors)
            again = sorted(drawn[i] for i in torch.randperm(len(drawn), generator=gen)[:k].tolist())
            with torch.no_grad():
                for name in again:
                    noise = torch.randn(params[name].shape, generator=gen)
                    if name not in ever_trained:
                        params[name].add_(noise.to(params[name].device, params[name].dtype) * self.noise_std)
                        noised.append(name)
        self.noised.append(noised)
        return sorted(set(drawn) | bn)

    def run(self, make_trainer) -> None:
        head_name, head = classifier(self.model)
        reset_layer(head, self.data.seed * 1000)
        self.reset_layer_name = head_name
        gen = generator(self.data.seed + 13)
        ever_trained: set[str] = set()
        for e in range(self.epochs):
            names = set(self.select(e, gen, ever_trained))
            for n, p in self.model.named_parameters():
                p.requires_grad_(n in names)
            self.trainable.append(sorted(names))
            ever_trained |= names
            self.epoch, self.phase = e, f"epoch{e}"
            make_trainer(max_epochs=1, phase=self.phase).fit(self)
        self.model.requires_grad_(True)

    def train_dataloader(self):
        return self.data.batches("retain", self.batch_size, augment=self.augment, seed_offset=self.epoch)

    # training_step: Finetune's (CE on retain)

    def configure_optimizers(self):
        o = self.optim
        fine = self.epoch - (self.epochs - self.fine_epochs)
        lr = self.fine_lrs[fine] if fine >= 0 else o.lr
        params = [p for p in self.model.parameters() if p.requires_grad]
        return OptimSettings(o.optimizer, lr, o.momentum, o.weight_decay, "none").build(params, None, None)
