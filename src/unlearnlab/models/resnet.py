"""ResNet-18 in the two shapes unlearning papers use, both built from torchvision's ResNet."""

from __future__ import annotations

from torch import nn
from torchvision.models import resnet18 as tv_resnet18


def resnet18(in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    """The starting kit's model: torchvision resnet18(num_classes=10), ImageNet stem, random init."""
    del image_size
    model = tv_resnet18(num_classes=num_classes)
    if in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return model


def resnet18_cifar(in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    """CIFAR ResNet-18: 3×3 stride-1 stem and no max-pool, so 32×32 inputs keep their detail."""
    del image_size
    model = tv_resnet18(num_classes=num_classes)
    model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model
