"""Successive random relabelling (SRL; a baseline of Cadet et al. 2024, "Deep Unlearn:
Benchmarking Machine Unlearning for Image Classification"): every epoch, the forget set with
fresh random labels and the retain set, shuffled together, one pass of cross-entropy.

Checked against: xcadet/deepunlearn munl/unlearning/successive_random_labels.py
(SuccessiveRandomLabels.unlearn: one RandomRelabel pass per epoch, the optimiser from the config,
the scheduler built and discarded), munl/unlearning/salun.py RandomRelabel (ConcatDataset of the
relabelled forget set and retain, shuffle=True, model.train(), CE; no mask here),
munl/datasets/common.py RandomRelabelDataset (a label uniform over all classes, drawn anew at
every access, so every epoch), munl/configurations.py + munl/settings.py (the default
unlearner config: 5 epochs, batch 256, SGD lr 0.1, momentum 0.9, wd 5e-4; no augmentation).

One fit of `epochs` epochs: each epoch one shuffled pass over forget ∪ retain in mixed batches,
forget examples labelled uniformly at random over all C classes (so ~1/C keep their label),
retain examples with their own; SGD at a constant learning rate. (SPECS' "alternate random-label
steps and retain steps" is not what the code does: the two sets share batches.)
Known deviations: none (the random labels are drawn from the cell seed, not the source's fixed
NumPy seed 123).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F

from unlearnlab.methods.base import UnlearningMethod
from unlearnlab.methods.helpers import generator, random_labels


class RelabelledMix:
    """Per epoch: forget (fresh random labels) ∪ retain, shuffled together, in batches; yields
    (x, y, is_forget)."""

    def __init__(self, forget, retain, num_classes: int, batch_size: int, seed: int) -> None:
        self.forget, self.retain, self.num_classes = forget, retain, num_classes
        self.batch_size, self.seed, self.epoch = int(batch_size), int(seed), 0

    def __len__(self) -> int:
        return math.ceil((len(self.forget[1]) + len(self.retain[1])) / self.batch_size)

    def __iter__(self):
        (xf, yf), (xr, yr) = self.forget, self.retain
        gen = generator(self.seed * 100_003 + self.epoch, yf.device)
        self.epoch += 1
        x = torch.cat([xf, xr])
        y = torch.cat([random_labels(yf, self.num_classes, gen), yr])
        is_forget = torch.cat([torch.ones_like(yf, dtype=torch.bool), torch.zeros_like(yr, dtype=torch.bool)])
        order = torch.randperm(len(y), generator=gen, device=y.device)
        for start in range(0, len(y), self.batch_size):
            idx = order[start : start + self.batch_size]
            yield x[idx], y[idx], is_forget[idx]


class SRL(UnlearningMethod):
    reads: ClassVar[frozenset[str]] = frozenset({"forget", "retain"})

    def train_dataloader(self):
        return RelabelledMix(self.data.tensors("forget"), self.data.tensors("retain"), self.data.num_classes,
                             self.batch_size, self.data.seed)

    def training_step(self, batch, batch_idx):
        x, y, _ = batch
        loss = F.cross_entropy(self.model(x), y)
        self.track(loss=loss)
        return loss
