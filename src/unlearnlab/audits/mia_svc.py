"""MIA-efficacy of SalUn / Unlearn-Sparse (OPTML-Group, evaluation/SVC_MIA.py, the
"confidence" entry of SVC_MIA_forget_efficacy): an SVC learns member (retain) vs non-member
(test) from p_y and is asked about the forget set. Higher = more forget examples look unseen.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from sklearn.svm import SVC

from unlearnlab.audits._features import true_class_prob
from unlearnlab.audits.base import PerModelAudit, with_reference
from unlearnlab.metrics import Metric


def mia_efficacy(retain_py: np.ndarray, test_py: np.ndarray, forget_py: np.ndarray) -> float:
    """Share of forget examples the SVC predicts non-member, for one model.

    The attacker trains on the first |test| retain examples (the source takes
    Subset(retain, range(len(test)))) labelled 1 and the test examples labelled 0.
    """
    retain_py = np.ravel(retain_py)[: len(np.ravel(test_py))]
    x = np.concatenate([retain_py, np.ravel(test_py)]).reshape(-1, 1)
    y = np.r_[np.ones(len(retain_py)), np.zeros(len(np.ravel(test_py)))]
    clf = SVC(C=3, gamma="auto", kernel="rbf").fit(x, y)
    return float(1.0 - clf.predict(np.reshape(forget_py, (-1, 1))).mean())


class SVCMIAAudit(PerModelAudit):
    """MIA-efficacy averaged over the unlearned models, and over the retrained ones (reference)."""

    name = "mia_svc"
    reads = frozenset({"forget", "test", "retain"})  # the logit parts it reads (audits/base.py Audit)
    metrics: ClassVar[tuple[Metric, Metric]] = with_reference(
        Metric("audit/mia_efficacy", "SalUn MIA-efficacy: share of forget examples an SVC on p_y calls non-member; "
               "ideal ≈ audit/mia_efficacy_retrain", group="Membership inference"),
        "MIA-efficacy of the retrained models (the reference)",
    )

    def per_model(self, outputs, labels) -> list[float]:
        retain, test, forget = (
            true_class_prob(getattr(outputs, part), labels[part])
            for part in ("retain", "test", "forget")
        )
        return [mia_efficacy(*per_model) for per_model in zip(retain, test, forget)]
