"""Per-example features that membership audits read from logits.

Logits are (n_examples, C) or (n_models, n_examples, C); labels are (n_examples,) and are
shared by every model. All work is in float64 so that very confident models do not round
their loss or confidence to 0.
"""

from __future__ import annotations

import numpy as np
from scipy.special import log_softmax


def _pick(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """values[..., i, labels[i]] for every example i."""
    idx = np.broadcast_to(np.asarray(labels)[:, None], values.shape[:-1] + (1,))
    return np.take_along_axis(values, idx, axis=-1)[..., 0]


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-example cross-entropy −log p_y (the starting kit's MIA feature)."""
    return -_pick(log_softmax(np.asarray(logits, np.float64), axis=-1), labels)


def true_class_prob(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-example softmax probability of the true class (SalUn's "confidence" feature)."""
    return np.exp(-cross_entropy(logits, labels))


