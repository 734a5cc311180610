"""What every audit reads: per-example logits of many models, never a model itself.

Audits run after training and must be callable on plain arrays (a researcher's own models),
so the input is a bundle of numpy arrays, not store entries.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable, Protocol

import numpy as np

from unlearnlab.metrics import Metric


@dataclass(frozen=True)
class ModelOutputs:
    """Logits of n models on the parts of a split an audit may read.

    Shapes: forget (n_models, n_forget, C), test (n_models, n_test, C),
    retain (n_models, n_retain_sample, C) where the retain sample is a fixed subsample of the
    retain set of size min(|retain|, |test|), or None where it was not given (logits from
    elsewhere: the audits that read it are skipped, `reads`). metrics maps a metric name ("retain/acc",
    "forget/acc", "test/acc", "cost/seconds") to an (n_models,) array. weights, optional:
    (n_models, n_params) released weights, flattened — only small models carry them (the study
    fills them for models with few parameters; logits from elsewhere have none), for the audits
    that test the weights themselves (lower_bound's `weights` statistic).
    """

    forget: np.ndarray
    test: np.ndarray
    retain: np.ndarray | None
    metrics: dict[str, np.ndarray] = field(default_factory=dict)
    weights: np.ndarray | None = None

    @property
    def n_models(self) -> int:
        return int(self.forget.shape[0])


@dataclass(frozen=True)
class AuditInput:
    """Retrained (reference) and unlearned (candidate) models of one method on one split."""

    labels: dict[str, np.ndarray]  # "forget", "test", "retain" -> int64 labels
    retrain: ModelOutputs
    unlearn: ModelOutputs


# The parts of ModelOutputs an audit reads unless it declares its own `reads`.
DEFAULT_READS = frozenset({"forget", "test"})
PARTS = ("forget", "test", "retain")


class Audit(Protocol):
    """An audit: AuditInput -> {"audit/NAME": float, ...}; extra non-scalar arrays (e.g. the
    per-example ε under "audit/eps") may be returned for the report and are not tabulated.

    `reads` (a class attribute, default DEFAULT_READS) names the logit parts of ModelOutputs it
    reads: logits from elsewhere may lack `retain`, and an audit whose parts are missing is
    skipped with that reason instead of run (auditing.missing_parts)."""

    name: str
    reads: ClassVar[frozenset[str]]

    def __call__(self, inp: AuditInput) -> dict[str, Any]: ...


def with_reference(metric: Metric, reference_help: str) -> tuple[Metric, Metric]:
    """`metric` and NAME_retrain, the same quantity on the retrained models: the reference a
    perfect method matches (in the same table group)."""
    return metric, Metric(f"{metric.name}_retrain", reference_help, group=metric.group)


# audit -> (its last reference, weakly; that reference's labels; their mean): PerModelAudit.reference_mean
_REFERENCE_MEANS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class PerModelAudit:
    """An audit that scores every model on its own: the mean of `per_model` over the unlearned
    models under its first metric, and over the retrained ones, the reference, under the second
    (declared together with `with_reference`)."""

    metrics: ClassVar[tuple[Metric, ...]]  # the value and its reference first (with_reference), then any more
    reads: ClassVar[frozenset[str]] = DEFAULT_READS

    def per_model(self, outputs: ModelOutputs, labels: dict[str, np.ndarray]) -> Iterable[float]:
        """One score per model of `outputs`."""
        raise NotImplementedError

    def mean(self, outputs: ModelOutputs, labels: dict[str, np.ndarray]) -> float:
        return float(np.mean(list(self.per_model(outputs, labels))))

    def __call__(self, inp: AuditInput) -> dict[str, Any]:
        value, reference = self.metrics[:2]
        return {value.name: self.mean(inp.unlearn, inp.labels), reference.name: self.reference_mean(inp)}

    def reference_mean(self, inp: AuditInput) -> float:
        """The reference's mean, once per reference and labels: every method of a study shares the
        retrained models (the kit MIA's 16 × 10 logistic fits per method were a tenth of a study)."""
        if self.__hash__ is None:  # an unhashable audit (a plugin's mutable dataclass): no cache
            return self.mean(inp.retrain, inp.labels)
        held = _REFERENCE_MEANS.get(self)  # one per audit (by its options): the last reference it scored
        if held is None or held[0]() is not inp.retrain or held[1] is not inp.labels:
            held = _REFERENCE_MEANS[self] = (weakref.ref(inp.retrain), inp.labels, self.mean(inp.retrain, inp.labels))
        return held[2]
