"""Random-label unlearning (RL; Golatkar et al. 2020 / Graves et al. 2021, as SalUn's `RL`
baseline, OPTML-Group/Unlearn-Saliency Classification/unlearn/RL.py): every epoch, one pass
over the forget set with random *wrong* labels, then one pass over the retain set with the
true labels, under one optimizer. (SalUn draws labels from all classes, so ~1/C of them are
the true label; SPECS asks for wrong ones: here each label is uniform over the C − 1 others.)

One fit; each epoch's loader yields the forget batches (relabelled, flag True) and then the
retain batches (flag False)."""

from __future__ import annotations

from typing import ClassVar

import torch.nn.functional as F

from unlearnlab.methods.helpers import generator, wrong_labels
from unlearnlab.methods.base import UnlearningMethod


class ForgetThenRetain:
    """Per epoch: every forget batch with fresh random wrong labels, then every retain batch."""

    def __init__(self, forget, retain, num_classes: int, seed: int) -> None:
        self.forget, self.retain, self.num_classes, self.seed = forget, retain, num_classes, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.forget) + len(self.retain)

    def __iter__(self):
        gen = None
        for x, y in self.forget:
            if gen is None:
                gen = generator(self.seed * 100_003 + self.epoch + 7, y.device)
            yield x, wrong_labels(y, self.num_classes, gen), True
        self.epoch += 1
        for x, y in self.retain:
            yield x, y, False


class RandomLabel(UnlearningMethod):
    reads: ClassVar[frozenset[str]] = frozenset({"forget", "retain"})

    def train_dataloader(self):
        return ForgetThenRetain(
            self.data.batches("forget", self.batch_size, augment=self.augment, seed_offset=1),
            self.data.batches("retain", self.batch_size, augment=self.augment),
            self.data.num_classes,
            self.data.seed,
        )

    def training_step(self, batch, batch_idx):
        x, y, _is_forget = batch
        loss = F.cross_entropy(self.model(x), y)
        self.track(loss=loss)
        return loss
