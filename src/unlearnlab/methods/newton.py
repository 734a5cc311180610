"""newton: certified removal by Newton steps with loss perturbation (Guo, Goldstein, Hannun,
van der Maaten 2020; facebookresearch/certified-removal), and the exact-retrain control.

The original is a ``LogisticRegression`` fitted exactly (``recipe: exact``) with a loss
perturbation b ~ N(0, sigma^2 I) stored in its state. The forget set is removed ``removal_batch``
points at a time: Newton step on the remaining data, data-dependent gradient-residual bound beta
(``unlearnlab.certified.NewtonRemover``). While beta <= sigma eps / c the model is
(eps, delta)-certified (c = sqrt(2 log(1.5/delta))); a removal that would exceed that budget
triggers an exact retrain on the remaining data with a fresh b (logged as a warning).

The certificate is a statement about the distribution over b. In the competition protocol every
unlearned model starts from the *same* original, i.e. the same b, so the N unlearned models of a
study are (up to retrains) one model: the audit then conditions on b, which the certificate does not
cover. ``resample_original: true`` samples the mechanism as certified instead: each cell draws its
own b (from the cell seed) and refits the original on D = retain + forget before removing.
"""

from __future__ import annotations

import logging
import time
from typing import ClassVar

import torch

from unlearnlab.certified import (
    single_thread,
    NewtonRemover, certificate_epsilon, fit_model_exact, gradient_residual, loss_perturbation,
)
from unlearnlab.errors import ConfigError
from unlearnlab.methods.base import UnlearningMethod
from unlearnlab.metrics import Metric
from unlearnlab.models.logreg import LogisticRegression, fit_exact

log = logging.getLogger(__name__)


def removal_problem(model: LogisticRegression, data):
    """Features and +-1 targets of D = retain + forget (retain first) and the forget rows' indices."""
    if not isinstance(model, LogisticRegression):
        raise ConfigError(f"certified methods need model=logreg (a LogisticRegression), got {type(model).__name__}")
    xr, yr = data.tensors("retain")
    xf, yf = data.tensors("forget")
    X = torch.cat([model.features(xr).cpu(), model.features(xf).cpu()])
    labels = torch.cat([yr.cpu(), yf.cpu()])
    n_r, n_f = len(yr), len(yf)
    return X, model.targets(labels), torch.arange(n_r, n_r + n_f)


def batches_of(idx: torch.Tensor, size: int) -> list[torch.Tensor]:
    """Consecutive batches of ``size`` (size <= 0: one batch of everything)."""
    size = idx.numel() if size <= 0 else size
    return [idx[i:i + size] for i in range(0, idx.numel(), max(size, 1))]


GROUP = "Certified removal"
SIGMA_HELP = ("std of the mechanism's noise: newton's loss perturbation b; noisy_newton's, descent_to_delete's "
              "(and their references') Gaussian output noise, calibrated from cert/epsilon, cert/delta and the "
              "loss constants")


def cert_metrics(*extra: Metric) -> tuple[Metric, ...]:
    """cert/epsilon and cert/delta (every certified method) plus a method's own."""
    return (
        Metric("cert/epsilon", "the ε the mechanism guarantees for (ε, δ)-unlearning (theory, its budget or "
               "calibration target); verdict: violated only if audit/eps_lb exceeds it", group=GROUP),
        Metric("cert/delta", "the δ of that guarantee", group=GROUP),
        *extra,
        Metric("cert/removals", "number of forget points removed", group=GROUP),
        Metric("cost/removal_seconds", "wall seconds of the removal itself (without measuring)", group=GROUP,
               goal="min"),
    )


class ClosedFormRemoval(UnlearningMethod):
    """Base of the certified methods: the forget set is removed in closed form (no Trainer), on
    one intra-op thread (see certified.single_thread), against an (ε, δ) the method certifies.
    Its config's `reference` names the method whose cells the certificate is stated against (the
    study plans and audits by it; the method never sees it)."""

    reads: ClassVar[frozenset[str]] = frozenset({"forget", "retain"})
    config_name: ClassVar[str] = ""
    metrics: ClassVar[tuple[Metric, ...]] = cert_metrics()
    model_kinds: ClassVar[frozenset[str]] = frozenset({"logreg"})  # closed-form removal needs the convex model
    trains: ClassVar[bool] = False

    def __init__(self, model, data, epsilon: float, delta: float, **hparams) -> None:
        super().__init__(model, data, **{**hparams, "epochs": 0})
        if not epsilon > 0 or not 0 < delta < 1:
            raise ConfigError(
                f"method.{self.config_name}: need epsilon > 0 and 0 < delta < 1 (got {epsilon}, {delta})"
            )
        self.epsilon, self.delta = float(epsilon), float(delta)
        self._metrics: dict[str, float] = {}

    def run(self, make_trainer) -> None:
        del make_trainer
        with single_thread():
            self._run()

    def _run(self) -> None:
        raise NotImplementedError

    def cell_metrics(self) -> dict[str, float]:
        return dict(self._metrics)


class Newton(ClosedFormRemoval):
    """cert/epsilon is the budget: every published model satisfies c·β/σ ≤ budget (a removal that
    would exceed it retrains instead). The realised c·β/σ of the final model is
    cert/epsilon_expost; it depends on the data removed, so it is reported, not guaranteed."""

    config_name = "newton"
    metrics: ClassVar[tuple[Metric, ...]] = cert_metrics(
        Metric("cert/epsilon_expost", "realised c·β/σ of the final model (≤ cert/epsilon): the data-dependent "
               "certificate of Guo et al.", group=GROUP),
        Metric("cert/sigma", SIGMA_HELP, group=GROUP),
        Metric("cert/residual_bound", "tracked bound β on the gradient residual", group=GROUP),
        Metric("cert/residual", "actual gradient residual ‖∇L(w; D∖F)‖ (≤ cert/residual_bound)", group=GROUP),
        Metric("cert/retrains", "exact retrains triggered by the budget", group=GROUP),
        Metric("cert/first_retrain_at", "stream position of the first budget retrain (−1: none)", group=GROUP),
    )

    def __init__(self, model, data, epsilon: float = 1.0, delta: float = 1e-4, removal_batch: int = 1,
                 resample_b: bool = True, resample_original: bool = False, tol: float = 1e-10, **hparams) -> None:
        super().__init__(model, data, epsilon, delta, **hparams)
        if removal_batch < 1:
            raise ConfigError(f"method.newton.removal_batch={removal_batch} must be >= 1")
        self.removal_batch = int(removal_batch)
        self.resample_b, self.resample_original, self.tol = bool(resample_b), bool(resample_original), float(tol)
        self.remover: NewtonRemover | None = None
        self._metrics: dict[str, float] = {}

    def _run(self) -> None:
        """Removes the forget set batch by batch, retraining when the budget would be exceeded."""
        model: LogisticRegression = self.model
        X, Y, forget = removal_problem(model, self.data)
        if model.sigma <= 0:
            raise ConfigError("method.newton needs a loss perturbation: set model.sigma > 0")
        gen = torch.Generator().manual_seed(int(self.data.seed))
        w, b = model.weight_vector(), model.perturbation()
        if self.resample_original:  # sample the mechanism as certified: own b, own original
            with self.untimed():  # training the model to unlearn is not unlearning it
                b = loss_perturbation(model.solver_shape, model.sigma, gen)
                w = fit_exact(X, Y, model.lam, b, tol=self.tol)
        start = time.perf_counter()
        rem = NewtonRemover(X, Y, model.lam, model.sigma, self.epsilon, self.delta, batch_size=self.removal_batch,
                            generator=gen, resample_b=self.resample_b, w=w, b=b, tol=self.tol)
        for batch in batches_of(forget, self.removal_batch):
            before = rem.num_retrains
            eps_before = rem.epsilon
            rem.remove(batch)
            if rem.num_retrains > before:
                h = rem.history[-1]
                log.warning(
                    "newton: removing points %d-%d would raise the certificate from eps=%.3g to %.3g > budget "
                    "%.3g; retrained exactly on the remaining %d points instead (retrain #%d)",
                    h["position"], h["position"] + h["size"] - 1, eps_before,
                    certificate_epsilon(rem.history[-1]["beta_inc"], model.sigma, self.delta) + eps_before,
                    self.epsilon, int(rem.keep.sum()), rem.num_retrains,
                )
        seconds = time.perf_counter() - start
        model.set_weight(rem.w)
        model.set_perturbation(rem.b)
        self.remover = rem
        keep = rem.keep
        residual = float(gradient_residual(rem.w, X[keep], Y[keep], model.lam, rem.b).norm())
        self._metrics = {
            "cert/epsilon": self.epsilon,
            "cert/delta": self.delta,
            "cert/epsilon_expost": rem.epsilon,
            "cert/sigma": model.sigma,
            "cert/residual_bound": rem.beta,
            "cert/residual": residual,
            "cert/retrains": float(rem.num_retrains),
            "cert/first_retrain_at": float(rem.retrain_at[0]) if rem.retrain_at else -1.0,
            "cert/removals": float(forget.numel()),
            "cost/removal_seconds": seconds,
        }



class ExactRetrain(UnlearningMethod):
    """Control for ``recipe: exact`` studies: the exact loss-perturbed fit on retain with a b drawn
    from this cell's seed — an independent sample of A(D \\ F), the certificates' reference.
    (The generic ``retrain`` control re-initialises and runs SGD epochs, which a closed-form
    recipe does not have.)"""

    reads: ClassVar[frozenset[str]] = frozenset({"retain"})
    model_kinds: ClassVar[frozenset[str]] = frozenset({"logreg"})
    trains: ClassVar[bool] = False

    def __init__(self, model, data, tol: float = 1e-10, architecture=None, **hparams) -> None:
        # architecture: the generic retrain control's model config (it builds a fresh model);
        # the exact fit starts from nothing, so it is accepted and unused
        del architecture
        super().__init__(model, data, **{**hparams, "epochs": 0})
        self.tol = float(tol)

    def run(self, make_trainer) -> None:
        del make_trainer
        fit_model_exact(self.model, self.data, "retain", {"tol": self.tol}, int(self.data.seed))


__all__ = ["Newton", "ExactRetrain", "removal_problem", "batches_of"]
