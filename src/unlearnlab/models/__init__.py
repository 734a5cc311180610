"""Models: every constructor takes (in_channels, num_classes, image_size, **options)."""

from __future__ import annotations

from torch import nn

from unlearnlab.registry import instantiate


def build_model(cfg, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    c, h, _ = input_shape
    options = {k: v for k, v in cfg.items() if k != "name"}
    return instantiate(options, in_channels=c, num_classes=num_classes, image_size=h)
