"""Helpers shared by the NeurIPS 2023 challenge entries (SPECS §4, entries 1–8).

Everything here is generic over nn.Module: layers are found by walking modules, "the
classifier" is the last nn.Linear, "the first layer" the first Conv2d or Linear, projection
shortcuts the 1×1 convs inside a `downsample` block. Random choices take an explicit seed and
draw on a private CPU generator, so a method's result depends on its cell seed only.
"""

from __future__ import annotations

import copy
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

WEIGHT_LAYERS = (nn.Conv2d, nn.Linear)


def generator(seed: int) -> torch.Generator:
    gen = torch.Generator()
    gen.manual_seed(int(seed) & 0x7FFF_FFFF_FFFF)
    return gen


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Conv2d and Linear modules in definition order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, WEIGHT_LAYERS)]


def classifier(model: nn.Module) -> tuple[str, nn.Linear]:
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no nn.Linear: no classifier to find")
    return linears[-1]


def first_layer(model: nn.Module) -> tuple[str, nn.Module]:
    layers = weight_layers(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no Conv2d or Linear layer")
    return layers[0]


def is_projection_shortcut(name: str, module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1) and "downsample" in name.split(".")


def default_init(module: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """The values `module.reset_parameters()` would give, drawn from `seed` on the CPU
    (the same on every device), returned on the module's device; the module is unchanged."""
    fresh = copy.deepcopy(module).cpu()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed) & 0x7FFF_FFFF_FFFF)
        fresh.reset_parameters()
    return {n: p.detach().to(next(module.parameters()).device) for n, p in fresh.named_parameters(recurse=False)}


@torch.no_grad()
def reset_layer(module: nn.Module, seed: int) -> None:
    """Re-initialise one layer in place to its default init (seeded)."""
    for name, value in default_init(module, seed).items():
        getattr(module, name).copy_(value)


def frozen_copy(model: nn.Module) -> nn.Module:
    """A frozen teacher: the original model, eval mode, no gradients."""
    teacher = copy.deepcopy(model).eval()
    teacher.requires_grad_(False)
    return teacher


class FrozenTeacher:
    """Mixin for methods that compare against the original model: the teacher is kept in a
    list, so it is no submodule — never trained, never switched to train mode, not saved."""

    def keep_teacher(self, model: nn.Module) -> None:
        self._frozen = [frozen_copy(model)]

    @property
    def teacher(self) -> nn.Module:
        return self._frozen[0]

    def on_fit_start(self) -> None:
        self._frozen[0] = self.teacher.to(self.device).eval()


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Per-example Shannon entropy (nats) of softmax(logits)."""
    logp = F.log_softmax(logits, dim=1)
    return -(logp.exp() * logp).sum(dim=1)


def device_of(data, part: str) -> torch.device:
    return data.tensors(part)[1].device


class TensorBatches:
    """Seeded, shuffled minibatches of already-normalised tensors (a subset of a part), a new
    order each epoch; for data that is not a whole part (e.g. pseudo-labelled examples)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int) -> None:
        self.x, self.y, self.batch_size, self.seed, self.epoch = x, y, int(batch_size), int(seed), 0

    def __len__(self) -> int:
        return -(-len(self.y) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        gen = generator(self.seed * 100_003 + self.epoch)
        self.epoch += 1
        order = torch.randperm(len(self.y), generator=gen).to(self.y.device)
        for start in range(0, len(self.y), self.batch_size):
            idx = order[start : start + self.batch_size]
            yield self.x[idx], self.y[idx]
