"""U-LiRA (Hayes et al. 2024, "Inexact unlearning needs more careful evaluations to avoid a
false sense of privacy"): a per-example likelihood-ratio test of "unlearned" vs "retrained".

Each side's models are split into shadows, from which the attacker fits one Gaussian per forget
example to the logit-scaled confidence of unlearned and of retrained models, and held-out
targets, which the attacker must label.

Adapted to the competition's game: every unlearned model here starts from the *same* original
model and the forget set is fixed, so the shadows are this study's own models. The paper trains a
separate original per shadow (on data with the target examples randomly in or out), so its
attacker averages over originals; this one conditions on the study's single original. Numbers are
therefore not comparable with the paper's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np
from scipy.stats import norm
from sklearn.metrics import balanced_accuracy_score, roc_auc_score, roc_curve

from unlearnlab.audits.competition import forget_confidences
from unlearnlab.audits.base import AuditInput
from unlearnlab.metrics import Metric


def split_halves(n_models: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random (shadow, target) model indices; at least two shadows so a spread can be fitted."""
    if n_models < 4:
        raise ValueError(f"need >= 4 models per side for shadow/target halves, got {n_models}; set n_models>=4")
    perm = rng.permutation(n_models)
    return perm[: n_models // 2], perm[n_models // 2 :]


def log_likelihood_ratio(
    unlearn_shadow: np.ndarray, retrain_shadow: np.ndarray, target: np.ndarray, min_std: float
) -> np.ndarray:
    """log N(target; μ_u, σ_u) − log N(target; μ_r, σ_r) per (target model, forget example).

    σ has a floor so that a side whose models agree exactly (e.g. a deterministic method run
    from one original model) yields a large but finite ratio.
    """
    def fit(conf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return conf.mean(axis=0), np.maximum(conf.std(axis=0), min_std)

    (mu_u, sd_u), (mu_r, sd_r) = fit(unlearn_shadow), fit(retrain_shadow)
    return norm.logpdf(target, mu_u, sd_u) - norm.logpdf(target, mu_r, sd_r)


def tpr_at_fpr(labels: np.ndarray, scores: np.ndarray, fpr_max: float) -> float:
    """Best TPR over ROC points whose FPR does not exceed fpr_max (no interpolation upward,
    as in Carlini et al.'s LiRA code: with few negatives this is the TPR at FPR 0)."""
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(tpr[fpr <= fpr_max].max())


def ulira(
    retrain_conf: np.ndarray,
    unlearn_conf: np.ndarray,
    seed: int = 0,
    min_std: float = 1e-3,
    per_example: bool = True,
) -> dict[str, float]:
    """U-LiRA on (n_models, n_forget) confidences; positives are the unlearned targets.

    per_example=True (default) follows Hayes et al.: every (target model, forget example) pair
    is one attack with its own Gaussians, and the metrics are over all pairs — the paper's point
    is that per-example attackers expose examples a population attack averages away.
    per_example=False scores each target model by the sum of its per-example log ratios (a
    model-level test of the whole forget set, treating examples as independent evidence).

    The decision threshold is 0 (predict unlearned iff the likelihood ratio exceeds 1): the
    Bayes rule for the balanced game; a threshold tuned on the shadows would be biased, since
    the Gaussians are fitted on those same models.
    """
    rng = np.random.default_rng(seed)
    u_shadow, u_target = split_halves(len(unlearn_conf), rng)
    r_shadow, r_target = split_halves(len(retrain_conf), rng)
    targets = np.concatenate([unlearn_conf[u_target], retrain_conf[r_target]])
    llr = log_likelihood_ratio(unlearn_conf[u_shadow], retrain_conf[r_shadow], targets, min_std)
    is_unlearned = np.r_[np.ones(len(u_target), int), np.zeros(len(r_target), int)]
    if per_example:
        labels, scores = np.repeat(is_unlearned, llr.shape[1]), llr.ravel()
    else:
        labels, scores = is_unlearned, llr.sum(axis=1)
    return {
        "acc": float(balanced_accuracy_score(labels, (scores > 0).astype(int))),
        "auc": float(roc_auc_score(labels, scores)),
        "tpr@1%": tpr_at_fpr(labels, scores, 0.01),
        "tpr@0.1%": tpr_at_fpr(labels, scores, 0.001),
    }


@dataclass(frozen=True)
class ULiRAAudit:
    """U-LiRA on the forget set's logit-scaled confidence; its fields are ulira's options."""

    name: ClassVar[str] = "ulira"
    reads: ClassVar[frozenset[str]] = frozenset({"forget"})  # the logit parts it reads (audits/base.py Audit)
    metrics: ClassVar[tuple[Metric, ...]] = (
        Metric("audit/ulira_acc", "U-LiRA balanced accuracy telling unlearned from retrained models; ideal 0.5",
               group="U-LiRA", goal="min"),
        Metric("audit/ulira_auc", "U-LiRA ROC AUC; ideal 0.5", group="U-LiRA", goal="min"),
        Metric("audit/ulira_tpr@1%", "U-LiRA true-positive rate at false-positive rate ≤ 1%; ideal ≈ 0.01",
               group="U-LiRA", goal="min"),
        Metric("audit/ulira_tpr@0.1%", "U-LiRA true-positive rate at false-positive rate ≤ 0.1%; ideal ≈ 0.001",
               group="U-LiRA", goal="min"),
    )

    seed: int = 0
    min_std: float = 1e-3
    per_example: bool = True

    def __call__(self, inp: AuditInput) -> dict[str, Any]:
        out = ulira(*forget_confidences(inp), **asdict(self))
        return {f"audit/ulira_{k}": v for k, v in out.items()}
