"""A study's data: one source, one split, every part held as uint8 tensors on one device."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from unlearnlab.data.loader import Augment, DeviceBatches
from unlearnlab.data.splits import Split, make_split
from unlearnlab.data.sources import Source, load_source

PARTS = ("train", "forget", "retain", "val", "test", "retain_sample")


@dataclass
class StudyData:
    """Parts by name; the split's index tensors are applied once, not per batch."""

    source: Source
    split: Split
    device: torch.device = torch.device("cpu")
    parts: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.parts:
            s, sp = self.source, self.split
            y = s.train_y if sp.train_labels is None else sp.train_labels  # the given labels
            self.parts = {
                "train": (s.train_x, y),
                "forget": (s.train_x[sp.forget], y[sp.forget]),
                "retain": (s.train_x[sp.retain], y[sp.retain]),
                "val": (s.test_x[sp.val], s.test_y[sp.val]),
                "test": (s.test_x[sp.test], s.test_y[sp.test]),
                "retain_sample": (s.train_x[sp.retain_sample], y[sp.retain_sample]),
            }
        c = self.source.train_x.shape[1]
        self.mean = torch.tensor(self.source.mean, dtype=torch.float32, device=self.device).view(1, c, 1, 1)
        self.std = torch.tensor(self.source.std, dtype=torch.float32, device=self.device).view(1, c, 1, 1)

    def to(self, device: torch.device | str) -> StudyData:
        device = torch.device(device)
        if device == self.device:
            return self
        moved = {k: (x.to(device), y.to(device)) for k, (x, y) in self.parts.items()}
        return StudyData(self.source, self.split, device, moved)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.source.train_x.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.source.classes)

    def labels(self, part: str) -> torch.Tensor:
        return self.parts[part][1]

    def batches(self, part: str, batch_size: int, shuffle: bool = True, seed: int = 0,
                augment: Augment = Augment()) -> DeviceBatches:
        x, y = self.parts[part]
        return DeviceBatches(x, y, self.mean, self.std, batch_size, shuffle, seed, augment)


def load_study_data(dataset_cfg, split_cfg) -> StudyData:
    options = {k: v for k, v in dataset_cfg.items() if k not in ("name", "root", "download")}
    source = load_source(dataset_cfg.name, root=str(dataset_cfg.root), download=bool(dataset_cfg.download), **options)
    return StudyData(source, make_split(source, split_cfg))
