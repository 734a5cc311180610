"""Helpers shared by the peer methods (neggrad, random_label, l1_sparse, salun, scrub,
bad_teacher, boundary_shrink): frozen copies, seeded batches over tensors, wrong labels,
temperature-scaled KL, and FGSM in pixel space."""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from unlearnlab.data.loader import Augment, random_crop, random_flip


def frozen_copy(model: nn.Module) -> nn.Module:
    """A copy of `model` that never trains: eval mode, no gradients. A method keeps it as a
    submodule (so it moves to the device with the method) and puts it back in eval mode at
    every epoch start, since Lightning sets the whole module tree to train mode."""
    twin = copy.deepcopy(model).eval()
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin


def generator(device: torch.device, seed: int) -> torch.Generator:
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed))
    return gen


def wrong_labels(y: torch.Tensor, num_classes: int, gen: torch.Generator) -> torch.Tensor:
    """A label drawn uniformly among the num_classes − 1 classes other than y, per example."""
    shift = torch.randint(1, num_classes, y.shape, generator=gen, device=y.device)
    return (y + shift) % num_classes


def kl_student_teacher(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """RepDistiller's DistillKL, as SCRUB uses it: KL(p_T ‖ p_S) at temperature T, ·T², batch mean.
    (SCRUB's paper writes it d(student, teacher); the code computes this direction.)"""
    t = float(temperature)
    log_p_s = F.log_softmax(student_logits / t, dim=1)
    p_t = F.softmax(teacher_logits / t, dim=1)
    return F.kl_div(log_p_s, p_t, reduction="sum") * (t * t) / student_logits.shape[0]


class TensorBatches:
    """Seeded, shuffled minibatches over tensors that are already normalised and on the device
    (for parts a method relabels or mixes). Each epoch draws a new order; augmentation (crop
    with zero padding — the mean pixel here, since inputs are normalised — and flip) applies
    to the first tensor."""

    def __init__(self, tensors: tuple[torch.Tensor, ...], batch_size: int, seed: int,
                 shuffle: bool = True, augment: Augment = Augment()) -> None:
        self.tensors, self.batch_size, self.seed = tensors, int(batch_size), int(seed)
        self.shuffle, self.augment, self.epoch = shuffle, augment, 0

    def __len__(self) -> int:
        return math.ceil(len(self.tensors[0]) / self.batch_size)

    def __iter__(self):
        x0 = self.tensors[0]
        gen = generator(x0.device, self.seed * 100_003 + self.epoch)
        self.epoch += 1
        n = len(x0)
        order = torch.randperm(n, generator=gen, device=x0.device) if self.shuffle else torch.arange(n, device=x0.device)
        for start in range(0, n, self.batch_size):
            idx = order[start : start + self.batch_size]
            batch = [t[idx] for t in self.tensors]
            if self.augment.crop_padding > 0:
                batch[0] = random_crop(batch[0], self.augment.crop_padding, gen)
            if self.augment.flip:
                batch[0] = random_flip(batch[0], gen)
            yield tuple(batch)


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, bound: float,
         mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """One FGSM step of size `bound` in pixel space [0, 1] (as Chen et al. 2023 and SalUn's
    boundary_sh.py: perturb, clamp to [0, 1], discretise to 1/255), on normalised inputs."""
    mean, std = mean.to(x.device), std.to(x.device)
    x_adv = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(x_adv), y)
        (grad,) = torch.autograd.grad(loss, x_adv)
    pixels = x.detach() * std + mean + bound * grad.sign()
    pixels = torch.round(pixels.clamp(0.0, 1.0) * 255) / 255
    return (pixels - mean) / std
