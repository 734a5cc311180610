"""A small CNN: the default for digits / MNIST-scale studies that train hundreds of models on CPU."""

from __future__ import annotations

from torch import nn


class SmallCNN(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, image_size: int, width: int = 32) -> None:
        super().__init__()
        del image_size  # global pooling makes it size-agnostic
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, 2 * width, 3, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x))
