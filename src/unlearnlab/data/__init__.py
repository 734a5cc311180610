"""A study's data: one source, one split, every part held as uint8 tensors on one device."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable

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
        self._fingerprint: str | None = None
        c = self.source.train_x.shape[1]
        self.mean = torch.tensor(self.source.mean, dtype=torch.float32, device=self.device).view(1, c, 1, 1)
        self.std = torch.tensor(self.source.std, dtype=torch.float32, device=self.device).view(1, c, 1, 1)

    def to(self, device: torch.device | str) -> StudyData:
        device = torch.device(device)
        if device == self.device:
            return self
        moved = {k: (x.to(device), y.to(device)) for k, (x, y) in self.parts.items()}
        data = StudyData(self.source, self.split, device, moved)
        data._fingerprint = self._fingerprint  # same content
        return data

    def fingerprint(self) -> str:
        """sha256 (hex) of the data every cell reads: each part's uint8 images and labels (the given
        ones), the split's indices, and the normalisation stats. A cell's store key holds it, so
        editing a forget-index file or a labels CSV in place, or pointing dataset.root at other
        images, makes new cells instead of reusing old ones (a location is never identity).
        Computed once (0.7 s for CIFAR-10-sized data, 50k+10k 3×32×32, measured) and kept by `to()`."""
        if self._fingerprint is None:
            h = hashlib.sha256(b"unlearnlab-data-v1")

            def add(name: str, t: torch.Tensor) -> None:
                t = t.detach().cpu().contiguous()
                h.update(f"|{name}:{t.dtype}:{tuple(t.shape)}|".encode())
                h.update(t.view(torch.uint8).reshape(-1).numpy())  # the raw bytes, no copy

            for name in PARTS:
                x, y = self.parts[name]
                add(f"{name}.x", x)
                add(f"{name}.y", y)
            for name in ("forget", "retain", "val", "test", "retain_sample"):
                add(f"split.{name}", getattr(self.split, name))
            h.update(repr((self.source.mean, self.source.std, len(self.source.classes))).encode())
            self._fingerprint = h.hexdigest()
        return self._fingerprint

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


def load_study_data(dataset_cfg, split_cfg, loader: Callable[..., Source] | None = None) -> StudyData:
    """The study's data. LOADER: the function a `dataset=` option names with `_target_` (a plugin's
    source, resolved and checked by registry.source_loader), called with root, download and the
    option's `options`; without one, `dataset.name` picks a loader from data.sources.SOURCES."""
    if loader is not None:
        options = dict(dataset_cfg.get("options") or {})
        source = loader(root=str(dataset_cfg.root), download=bool(dataset_cfg.download), **options)
        if not isinstance(source, Source):
            raise TypeError(f"dataset {dataset_cfg.name}: its loader returned {type(source).__name__}, not a Source")
    else:
        options = {k: v for k, v in dataset_cfg.items() if k not in ("name", "root", "download")}
        source = load_source(dataset_cfg.name, root=str(dataset_cfg.root), download=bool(dataset_cfg.download),
                             **options)
    return StudyData(source, make_split(source, split_cfg))
