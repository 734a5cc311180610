"""The NeurIPS 2023 starting kit's membership attack: can a logistic regression on the loss tell
forget examples from test examples? (unlearning-challenge/starting-kit, functions/tools.py
`simple_mia` and the notebook's evaluation cell). Kit prints 0.579 for the original model, 0.512
fine-tuned, 0.502 retrained.

The kit balances the two classes ("Since we have more forget losses than test losses, sub-sample
them, to have a class-balanced dataset"): on CIFAR-10 forget (5,000) ≥ test (5,000), so it only
ever cuts the forget losses. Where the test set is the larger (digits: 144 forget, 180 test) the
same cut balances nothing and chance becomes the majority share (0.5455 before this fix); here the
larger class is cut to the smaller's size, as the kit intends. Balanced is not quite 0.5 either:
each split holds out ceil(0.1 · 2n) losses, and when that count is odd (29 of 288 on digits) the
held-out fold has one more of the class the training folds have fewer of, so an attack that
learns nothing — it predicts the training folds' majority — scores 14/29 = 0.483 there.
``kit_mia_chance`` computes that from the sizes and the kit's own splits (audit/mia_chance). Ideal:
the retrained models' value (the kit names distribution shift and class imbalance as reasons it
can differ from chance).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedShuffleSplit, cross_val_score

from unlearnlab.audits._features import cross_entropy
from unlearnlab.audits.base import PerModelAudit, with_reference
from unlearnlab.metrics import Metric


def kit_mia_accuracy(
    forget_loss: np.ndarray, test_loss: np.ndarray, n_splits: int = 10, random_state: int = 0
) -> float:
    """Mean cross-validated accuracy of the kit's attack on one model's per-example losses.

    As in the kit: forget losses are shuffled and cut to the test size (the kit shuffles with
    the unseeded global numpy rng; here `random_state` seeds it so results repeat), members
    (forget) = 1, test = 0, default LogisticRegression, StratifiedShuffleSplit(n_splits,
    random_state) scored by accuracy. When there are fewer forget than test losses, the test
    losses are shuffled and cut to the forget size instead (the kit's balanced classes).
    """
    rng = np.random.default_rng(random_state)
    test_loss = np.asarray(test_loss, np.float64).ravel()
    forget_loss = rng.permutation(np.ravel(forget_loss))
    n = min(len(forget_loss), len(test_loss))
    forget_loss = forget_loss[:n]
    if len(test_loss) > n:
        test_loss = rng.permutation(test_loss)[:n]
    x = np.concatenate([test_loss, forget_loss]).reshape(-1, 1)
    y = np.r_[np.zeros(len(test_loss), int), np.ones(len(forget_loss), int)]
    cv = StratifiedShuffleSplit(n_splits=n_splits, random_state=random_state)
    return float(cross_val_score(LogisticRegression(), x, y, cv=cv, scoring="accuracy").mean())


def kit_mia_chance(n_forget: int, n_test: int, n_splits: int = 10, random_state: int = 0) -> float:
    """What the kit's attack scores when the loss tells it nothing: it then predicts the majority
    class of each split's training folds. The mean accuracy of that over the kit's own splits of
    the balanced min(n_forget, n_test) + min(n_forget, n_test) losses."""
    n = min(int(n_forget), int(n_test))
    y = np.r_[np.zeros(n, int), np.ones(n, int)]
    cv = StratifiedShuffleSplit(n_splits=n_splits, random_state=random_state)
    scores = []
    for train, test in cv.split(np.zeros((2 * n, 1)), y):
        counts = np.bincount(y[train], minlength=2)
        scores.append(0.5 if counts[0] == counts[1] else float(np.mean(y[test] == np.argmax(counts))))
    return float(np.mean(scores))


@dataclass(frozen=True)
class KitMIAAudit(PerModelAudit):
    """Kit MIA accuracy averaged over the unlearned models, and over the retrained ones as the
    reference a perfect method would match."""

    name: ClassVar[str] = "mia_kit"
    reads: ClassVar[frozenset[str]] = frozenset({"forget", "test"})  # the logit parts it reads (audits/base.py Audit)
    metrics: ClassVar[tuple[Metric, ...]] = (
        *with_reference(
            Metric("audit/mia_acc", "starting-kit MIA: logistic-regression accuracy on the loss, forget vs test "
                   "(classes balanced; chance: audit/mia_chance); ideal ≈ audit/mia_acc_retrain",
                   group="Membership inference"),
            "the kit MIA on the retrained models (the reference for audit/mia_acc)",
        ),
        Metric("audit/mia_chance", "what the kit MIA scores when the loss tells it nothing (it predicts the "
               "training folds' majority) on this study's forget and test sizes: 0.5 only when each held-out fold "
               "is even", group="Membership inference"),
    )

    n_splits: int = 10
    random_state: int = 0

    def __call__(self, inp) -> dict[str, float]:
        chance = kit_mia_chance(len(inp.labels["forget"]), len(inp.labels["test"]), self.n_splits, self.random_state)
        return {**super().__call__(inp), "audit/mia_chance": chance}

    def per_model(self, outputs, labels) -> list[float]:
        forget = cross_entropy(outputs.forget, labels["forget"])
        test = cross_entropy(outputs.test, labels["test"])
        return [kit_mia_accuracy(f, t, self.n_splits, self.random_state) for f, t in zip(forget, test)]
