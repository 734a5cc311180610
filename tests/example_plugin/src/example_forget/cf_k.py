"""CF-k, "catastrophic forgetting of the last k layers" (Goel et al. 2022, "Towards Adversarial
Evaluations for Inexact Machine Unlearning", arXiv:2201.06640): freeze the network except its last
layers and fine-tune those on the retain set, so that the forget set is forgotten where it is
most easily forgotten. An example plugin method: small, real, one file.

Checked against: meghdadk/SCRUB `small_scale_unlearning.ipynb` (the CF-k cell: every parameter
frozen, then the last block unfrozen — All-CNN's `features[9]`, ResNet's `layer4` — and
`fk_fientune` on the retain loader: plain SGD lr 0.01, no momentum, no weight decay, 10 epochs,
cross-entropy + `l2_penalty` (λ/2)·‖θ − θ_start‖² over the trainable parameters with
args.weight_decay = 0.1 from its run command; retain batch args.retain_bs = 32; its step decay at
epochs [10, 15, 20] never fires within 10 epochs).

Known deviations: the source names one block per architecture and leaves the classifier frozen;
here `k` counts the last modules that own parameters, in `model.modules()` order (classifier
included), so it applies to any model (k = 3 on small_cnn: the last conv, its BatchNorm, the
classifier). The source runs its epochs with `model.eval()` (its models have BatchNorm disabled);
here every fit trains in train mode, as unlearnlab's contract requires, so frozen BatchNorm layers
still update their running statistics.
"""

from __future__ import annotations

from typing import ClassVar

import torch.nn.functional as F

from unlearnlab.errors import ConfigError
from unlearnlab.methods.base import UnlearningMethod


class CatastrophicForgettingK(UnlearningMethod):
    reads: ClassVar[frozenset[str]] = frozenset({"retain"})  # never forget, val or test

    def __init__(self, model, data, k: int = 3, l2_to_start: float = 0.1, **hparams) -> None:
        super().__init__(model, data, **hparams)
        owners = [m for m in model.modules() if next(m.parameters(recurse=False), None) is not None]
        if not 1 <= int(k) <= len(owners) or l2_to_start < 0:
            raise ConfigError(f"example_cf_k: need 1 ≤ k ≤ {len(owners)} (the model's modules with parameters) and "
                              f"l2_to_start ≥ 0 (got k={k}, l2_to_start={l2_to_start})")
        self.k, self.l2_to_start = int(k), float(l2_to_start)
        self.trained = [p for m in owners[-self.k:] for p in m.parameters(recurse=False)]
        trained = {id(p) for p in self.trained}
        for p in model.parameters():
            p.requires_grad_(id(p) in trained)
        self._start = [p.detach().clone() for p in self.trained]

    def train_dataloader(self):
        return self.data.batches("retain", self.batch_size, augment=self.augment)

    def training_step(self, batch, batch_idx):
        x, y = batch
        ce = F.cross_entropy(self.model(x), y)
        self.track(loss=ce)
        if not self.l2_to_start:
            return ce
        l2 = sum(((p - p0.to(p.device)) ** 2).sum() for p, p0 in zip(self.trained, self._start))
        return ce + self.l2_to_start / 2 * l2

    def configure_optimizers(self):
        return self.optim.build_for(self.trained, self.trainer)

    def on_train_end(self) -> None:
        for p in self.model.parameters():  # the model leaves the method as it came: every weight trainable
            p.requires_grad_(True)
