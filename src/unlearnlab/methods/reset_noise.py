"""NeurIPS 2023 unlearning challenge, 7th place (SPECS §4.7): reset the last layer, add
Gaussian noise to randomly chosen layers, fine-tune everything on retain.

Sequence (run):
  1. perturb (no fit): the classifier (last Linear) gets its default init; then `n_layers`
     (9) of the other Conv2d/Linear layers, chosen at random from the cell seed, get
     N(0, `noise_std`²) added to their weight (and bias). A model with fewer candidate layers
     has all of them perturbed. BatchNorm layers are never perturbed (as in the entry).
  2. phase "finetune", `epochs` epochs of CE on retain, all parameters trained.
Defaults from the entry's notebook as in munl KGLTop7 (noise std 0.04, lr 2e-4, SGD momentum
0.9, wd 5e-4, batch 64, 9 epochs); the entry's per-epoch re-selection of trainable layers is
simplified away (SPECS: "fine-tune everything").
"""

from __future__ import annotations

from typing import ClassVar

import torch

from unlearnlab.methods.helpers import classifier, generator, reset_layer, weight_layers
from unlearnlab.methods.finetune import Finetune


class ResetNoise(Finetune):
    reads: ClassVar[frozenset[str]] = frozenset({"retain"})

    def __init__(self, model, data, n_layers: int = 9, noise_std: float = 0.04, **hparams) -> None:
        super().__init__(model, data, **hparams)
        self.n_layers, self.noise_std = int(n_layers), float(noise_std)
        self.noised_layers: list[str] = []
        self.reset_layer_name = ""

    @torch.no_grad()
    def _perturb(self) -> None:
        head_name, head = classifier(self.model)
        reset_layer(head, self.data.seed * 1000)
        self.reset_layer_name = head_name
        candidates = [(n, m) for n, m in weight_layers(self.model) if m is not head]
        gen = generator(self.data.seed + 13)
        order = torch.randperm(len(candidates), generator=gen)[: min(self.n_layers, len(candidates))]
        for i in sorted(order.tolist()):
            name, module = candidates[i]
            for p in module.parameters(recurse=False):
                noise = torch.randn(p.shape, generator=gen) * self.noise_std
                p.add_(noise.to(p.device, p.dtype))
            self.noised_layers.append(name)

    def run(self, make_trainer) -> None:
        self._perturb()
        self.phase = "finetune"
        if self.epochs > 0:
            make_trainer(max_epochs=self.epochs, phase=self.phase).fit(self)

    # train_dataloader / training_step: Finetune's (CE on retain)
