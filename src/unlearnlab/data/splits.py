"""Forget sets: which training examples a user asks the model to forget.

A split is a pure function of the source and its config (and the split seed), so every cell of
a study, in any process, sees the same forget / retain / validation / test indices — and, for
`kind: mislabeled`, the same replaced labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from unlearnlab.data.sources import Source
from unlearnlab.errors import ConfigError


@dataclass(frozen=True)
class Split:
    """Indices into the source: forget/retain partition its train part, val/test its test part."""

    forget: torch.Tensor
    retain: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    retain_sample: torch.Tensor  # fixed retain subsample of |test| examples, for MIA audits
    # The labels the train part carries, when the split changes some (kind `mislabeled`); the
    # original trains on these and forget/acc and the audits measure them. None: the source's.
    train_labels: torch.Tensor | None = None


def make_split(source: Source, cfg) -> Split:
    """Build the split a `split` config describes; every kind validates its own input."""
    n = len(source.train_y)
    kind = cfg.kind
    if kind not in _FORGET_SETS:
        raise ConfigError(f"unknown split kind {kind!r}; use one of {sorted(_FORGET_SETS)}")
    forget = np.sort(_FORGET_SETS[kind](source, cfg))
    if len(forget) == 0:
        raise ConfigError(f"split {cfg.name!r} selects no training example; choose a larger forget set")
    if len(forget) >= n:
        raise ConfigError(f"split {cfg.name!r} forgets all {n} training examples; nothing would be retained")
    keep = np.ones(n, dtype=bool)
    keep[forget] = False
    retain = np.flatnonzero(keep)
    val, test = _val_test(len(source.test_y), cfg.val_fraction, cfg.val_seed)
    rng = np.random.default_rng(cfg.seed + 1)
    retain_sample = np.sort(rng.choice(retain, size=min(len(retain), len(test)), replace=False))
    as_t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.int64))  # noqa: E731
    labels = _relabel(source, forget, cfg.seed) if kind == "mislabeled" else None
    return Split(as_t(forget), as_t(retain), as_t(val), as_t(test), as_t(retain_sample),
                 None if labels is None else as_t(labels))


def _val_test(m: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The kit splits the test images 50/50 into validation and test with seed 42."""
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"split.val_fraction={val_fraction} must be in [0, 1)")
    perm = np.random.default_rng(seed).permutation(m)
    n_val = int(round(m * val_fraction))
    return np.sort(perm[:n_val]), np.sort(perm[n_val:])


def _random(source: Source, cfg) -> np.ndarray:
    frac = float(cfg.fraction)
    if not 0.0 < frac < 1.0:
        raise ConfigError(f"split.fraction={frac} must be in (0, 1), e.g. split.fraction=0.1")
    n = len(source.train_y)
    k = max(1, int(round(frac * n)))
    return np.random.default_rng(cfg.seed).choice(n, size=k, replace=False)


def _relabel(source: Source, forget: np.ndarray, seed: int) -> np.ndarray:
    """Train labels with each forget example's label replaced by another class, drawn uniformly
    (a mislabeled-data removal scenario: the user asks to forget the examples labelled wrongly)."""
    n_classes = len(source.classes)
    if n_classes < 2:
        raise ConfigError(f"split kind 'mislabeled' needs at least 2 classes, {source.name} has {n_classes}")
    labels = source.train_y.numpy().copy()
    shift = np.random.default_rng([int(seed), 1]).integers(1, n_classes, size=len(forget))
    labels[forget] = (labels[forget] + shift) % n_classes
    return labels


def _classes(source: Source, cfg) -> np.ndarray:
    n_classes = len(source.classes)
    wanted = [int(c) for c in cfg.classes]
    bad = [c for c in wanted if not 0 <= c < n_classes]
    if bad:
        raise ConfigError(
            f"split.classes has {bad}, but {source.name} has classes 0..{n_classes - 1}; pick from those"
        )
    return np.flatnonzero(np.isin(source.train_y.numpy(), wanted))


def _index_file(source: Source, cfg) -> np.ndarray:
    path = Path(str(cfg.path))
    if not path.is_file():
        raise ConfigError(f"forget index file {path} does not exist; set split.path to a file of integers")
    try:
        idx = np.loadtxt(path, dtype=np.int64, delimiter=",", ndmin=1)
    except ValueError:
        raise ConfigError(f"forget index file {path} must hold integers only (one per line or comma-separated)") from None
    n = len(source.train_y)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise ConfigError(f"forget index file {path} has indices outside 0..{n - 1} ({source.name} train size {n})")
    uniq, counts = np.unique(idx, return_counts=True)
    if (counts > 1).any():
        raise ConfigError(f"forget index file {path} repeats indices {uniq[counts > 1][:5].tolist()}; list each once")
    return idx


def _groups(source: Source, cfg) -> np.ndarray:
    """Whole subjects, as the challenge chose its forget set (LeavePGroupsOut over person ids)."""
    if source.train_groups is None:
        raise ConfigError(f"split kind 'group' needs subject ids, but {source.name} has none; use split=random")
    frac = float(cfg.fraction)
    if not 0.0 < frac < 1.0:
        raise ConfigError(f"split.fraction={frac} must be in (0, 1), e.g. split.fraction=0.02")
    groups = source.train_groups.numpy()
    subjects = np.random.default_rng(cfg.seed).permutation(np.unique(groups))
    sizes = np.array([(groups == s).sum() for s in subjects])
    n_subjects = int(np.searchsorted(np.cumsum(sizes), math.ceil(frac * len(groups)))) + 1
    return np.flatnonzero(np.isin(groups, subjects[:n_subjects]))


_FORGET_SETS = {
    "random": _random, "class": _classes, "index_file": _index_file, "group": _groups,
    "mislabeled": _random,  # a random fraction, whose labels _relabel then replaces
}
