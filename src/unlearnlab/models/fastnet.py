"""An airbench-style fast net (Keller Jordan's airbench94 / hlb-cifar10): the default for
audit-scale studies that train hundreds of models.

Architecture (airbench94, widths 64/256/256): a 2×2 patch conv with bias (airbench initialises it
as a frozen data-whitening layer; here it is an ordinary trainable conv, since models are built
before they see data), GELU, then three conv groups
``conv3×3 → maxpool 2 → BN → GELU → conv3×3 → BN → GELU``, a global max-pool, a bias-free linear
head and a fixed output scale of 1/9. Convs are bias-free and identity (dirac) initialised on
their first ``in_channels`` filters; BatchNorm uses airbench's momentum (0.6 in airbench's
convention, i.e. PyTorch momentum 0.4), eps 1e-12 and a frozen weight of 1 (only the shift
learns). On 32×32 inputs the spatial sizes are airbench's (31 → 15 → 7 → 3 → 1); for smaller
images (digits are 8×8) a pool is skipped once the map is 1×1, so any size ≥ 2 works.

What this module does not reproduce of airbench94's published recipe (94.01% on CIFAR-10 in 9.9
epochs): the data-whitening initialisation, label smoothing, Nesterov momentum with a 64× learning
rate on BN biases, lookahead/EMA, alternating flips and test-time augmentation. The framework's
recipe (conf/recipe/fastnet.yaml) is plain SGD + cosine + crop/flip.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class Conv(nn.Conv2d):
    """Conv whose first `in_channels` filters start as the identity (an implicit residual)."""

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.bias is not None:
            self.bias.data.zero_()
        w = self.weight.data
        n = min(w.size(0), w.size(1))
        torch.nn.init.dirac_(w[:n, :n])  # dirac_ wants out ≥ in; slice to a square block


class BatchNorm(nn.BatchNorm2d):
    """BatchNorm with a frozen unit weight (only the bias learns), as in airbench."""

    def __init__(self, num_features: int, momentum: float = 0.4, eps: float = 1e-12, weight: bool = False):
        super().__init__(num_features, eps=eps, momentum=momentum)
        self.weight.requires_grad_(weight)


class ConvGroup(nn.Module):
    def __init__(self, cin: int, cout: int, pool: bool, bn_momentum: float, act: type[nn.Module]) -> None:
        super().__init__()
        self.conv1 = Conv(cin, cout, 3, padding="same", bias=False)
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()
        self.norm1 = BatchNorm(cout, bn_momentum)
        self.conv2 = Conv(cout, cout, 3, padding="same", bias=False)
        self.norm2 = BatchNorm(cout, bn_momentum)
        self.activ = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.activ(self.norm1(self.pool(self.conv1(x))))
        return self.activ(self.norm2(self.conv2(x)))


class FastNet(nn.Module):
    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        image_size: int,
        widths: Sequence[int] = (64, 256, 256),
        stem_kernel: int = 2,
        bn_momentum: float = 0.4,
        scale: float = 1 / 9,
    ) -> None:
        super().__init__()
        if image_size < 2:
            raise ValueError(f"FastNet needs images of at least 2×2, got {image_size}")
        widths = [int(w) for w in widths]
        stem_width = 2 * in_channels * stem_kernel**2  # airbench: 2·C·k² (24 for RGB, k = 2)
        self.stem = Conv(in_channels, stem_width, stem_kernel, padding=0, bias=True)
        self.stem_act = nn.GELU()
        size = image_size - stem_kernel + 1
        blocks, cin = [], stem_width
        for w in widths:
            pool = size >= 2
            size = size // 2 if pool else size
            blocks.append(ConvGroup(cin, w, pool, bn_momentum, nn.GELU))
            cin = w
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveMaxPool2d(1)  # = airbench's MaxPool2d(3) on its final 3×3 map
        self.head = nn.Linear(cin, num_classes, bias=False)
        self.scale = float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem_act(self.stem(x)))
        return self.head(self.pool(x).flatten(1)) * self.scale
