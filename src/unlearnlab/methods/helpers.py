"""Helpers every method may use: seeded generators and minibatches over tensors, layer lookup
and default re-initialisation, wrong labels, distillation KL, entropy, FGSM.

Everything is generic over nn.Module: layers are found by walking modules, "the classifier" is
the last nn.Linear, "the first layer" the first Conv2d or Linear, projection shortcuts the 1×1
convs inside a `downsample` block. Random choices take an explicit seed, so a method's result
depends on its cell seed only. (Frozen teachers are not here: a method declares them with
UnlearningMethod.add_teacher, the one teacher policy.)
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from unlearnlab.data.loader import Augment, random_crop, random_flip
from unlearnlab.models import build_model

WEIGHT_LAYERS = (nn.Conv2d, nn.Linear)


def generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A private generator seeded with `seed` (reduced to 63 bits) on `device`."""
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed) & 0x7FFF_FFFF_FFFF_FFFF)
    return gen


# -- data ------------------------------------------------------------------------------------
class TensorBatches:
    """Seeded, shuffled minibatches over tensors that are already normalised and on the device
    (for data a method relabels, mixes or subsets). Each epoch draws a new order; augmentation
    (crop with zero padding — the mean pixel, since inputs are normalised — and flip) applies
    to the first tensor."""

    def __init__(self, tensors: tuple[torch.Tensor, ...], batch_size: int, seed: int,
                 shuffle: bool = True, augment: Augment = Augment()) -> None:
        self.tensors, self.batch_size, self.seed = tensors, int(batch_size), int(seed)
        self.shuffle, self.augment, self.epoch = shuffle, augment, 0

    def __len__(self) -> int:
        return math.ceil(len(self.tensors[0]) / self.batch_size)

    def __iter__(self):
        x0 = self.tensors[0]
        gen = generator(self.seed * 100_003 + self.epoch, x0.device)
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


def random_labels(y: torch.Tensor, num_classes: int, gen: torch.Generator, exclude_true: bool = False) -> torch.Tensor:
    """Per example, a label uniform over all classes, or (exclude_true) over the C − 1 others."""
    if not exclude_true:
        return torch.randint(0, num_classes, y.shape, generator=gen, device=y.device)
    shift = torch.randint(1, num_classes, y.shape, generator=gen, device=y.device)
    return (y + shift) % num_classes


# -- layers ----------------------------------------------------------------------------------
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


Block = list[tuple[str, nn.Module]]


def last_blocks(model: nn.Module, k: int) -> list[Block]:
    """The last `k` blocks before the classifier, each a list of (name, module). A ResNet's blocks
    are its stages, the children named layer1 … layerN (deepunlearn's get_resnet_blocks); any
    other network's are its weight layers other than the classifier, each with the BatchNorm
    layers that follow it in definition order (a conv + BN unit, as the SCRUB notebook's AllCNN
    block)."""
    stages = sorted(((n, m) for n, m in model.named_children() if n.startswith("layer") and n[5:].isdigit()),
                    key=lambda item: int(item[0][5:]))
    if stages:
        blocks = [[stage] for stage in stages]
    else:
        _, head = classifier(model)
        blocks = []
        for name, module in model.named_modules():
            if isinstance(module, WEIGHT_LAYERS) and module is not head:
                blocks.append([(name, module)])
            elif isinstance(module, nn.modules.batchnorm._BatchNorm) and blocks:
                blocks[-1].append((name, module))
    return blocks[-k:] if k > 0 else []


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
def fresh_init(model: nn.Module, architecture, input_shape: tuple[int, ...], num_classes: int, seed: int) -> None:
    """Give `model` the weights a freshly built `architecture` has under `seed` — exactly how
    cells.py builds the reference retrained models (L.seed_everything(seed), then build_model),
    so a model started from here is identically distributed with them. The global RNG is left
    as it was."""

    options = {k: v for k, v in dict(architecture).items() if k != "compile"}  # compiling keeps the weights
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        fresh = build_model(options, tuple(input_shape), int(num_classes))
    model.load_state_dict(fresh.state_dict())


@torch.no_grad()
def reset_layer(module: nn.Module, seed: int) -> None:
    """Re-initialise one layer in place to its default init (seeded)."""
    for name, value in default_init(module, seed).items():
        getattr(module, name).copy_(value)


# -- losses and probes -----------------------------------------------------------------------
def kl_student_teacher(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """RepDistiller's DistillKL, as SCRUB uses it: KL(p_T ‖ p_S) at temperature T, ·T², batch mean.
    (SCRUB's paper writes it d(student, teacher); the code computes this direction.)"""
    t = float(temperature)
    log_p_s = F.log_softmax(student_logits / t, dim=1)
    p_t = F.softmax(teacher_logits / t, dim=1)
    return F.kl_div(log_p_s, p_t, reduction="sum") * (t * t) / student_logits.shape[0]


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Per-example Shannon entropy (nats) of softmax(logits)."""
    logp = F.log_softmax(logits, dim=1)
    return -(logp.exp() * logp).sum(dim=1)


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
