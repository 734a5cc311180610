"""Random-label unlearning (RL; Golatkar et al. 2020 / Graves et al. 2021, as SalUn's `RL`
baseline).

Checked against: OPTML-Group/Unlearn-Saliency Classification/unlearn/RL.py (the CIFAR-10/SVHN
branch) and unlearn/impl.py (one SGD optimiser, MultiStepLR never reached at 10 epochs).

Every epoch: one pass over the forget set with random labels, then one pass over the retain set
with the true labels, under one optimizer. A random label is uniform over all C classes, as
`torch.randint(0, num_classes)` in the source (so ~1/C of them equal the true label);
`exclude_true: true` draws among the C − 1 wrong classes instead.

One fit; each epoch's loader yields the forget batches (relabelled, flag True) and then the
retain batches (flag False). Known deviations: none."""

from __future__ import annotations

from typing import ClassVar

import torch.nn.functional as F

from unlearnlab.methods.helpers import generator, random_labels
from unlearnlab.methods.base import UnlearningMethod


class ForgetThenRetain:
    """Per epoch: every forget batch with fresh random labels, then every retain batch."""

    def __init__(self, forget, retain, num_classes: int, seed: int, exclude_true: bool = False) -> None:
        self.forget, self.retain, self.num_classes, self.seed = forget, retain, num_classes, seed
        self.exclude_true = exclude_true
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.forget) + len(self.retain)

    def __iter__(self):
        gen = None
        for x, y in self.forget:
            if gen is None:
                gen = generator(self.seed * 100_003 + self.epoch + 7, y.device)
            yield x, random_labels(y, self.num_classes, gen, self.exclude_true), True
        self.epoch += 1
        for x, y in self.retain:
            yield x, y, False


class RandomLabel(UnlearningMethod):
    reads: ClassVar[frozenset[str]] = frozenset({"forget", "retain"})

    def __init__(self, model, data, exclude_true: bool = False, **hparams) -> None:
        super().__init__(model, data, **hparams)
        self.exclude_true = bool(exclude_true)

    def train_dataloader(self):
        return ForgetThenRetain(
            self.data.batches("forget", self.batch_size, augment=self.augment, seed_offset=1),
            self.data.batches("retain", self.batch_size, augment=self.augment),
            self.data.num_classes,
            self.data.seed,
            self.exclude_true,
        )

    def training_step(self, batch, batch_idx):
        x, y, _is_forget = batch
        loss = F.cross_entropy(self.model(x), y)
        self.track(loss=loss)
        return loss
