"""The references that output-noise certificates are stated against: the learner run on D∖F, then
the same output noise (Sekhari et al. 2021, Definition of (ε, δ)-unlearning; Neel et al. 2021,
Definition 2.1). Their cells are an independent sample of that reference, one noise draw per
cell seed, so an audit of ``noisy_newton`` / ``descent_to_delete`` against them tests the
certificate itself (the study's retrained models carry no output noise: against them every
noised method is trivially distinguishable, which says nothing about the certificate).

The learner is the exact minimiser (``recipe: exact``) of the original's objective on D∖F — its
loss perturbation b stays, as in the methods — and σ is calibrated by the method's own code from
the same hyperparameters (pass the same epsilon, delta, removal_batch, steps: the experiment
config interpolates them), so the two sides differ only in how the minimiser on D∖F is reached.
Neel et al.'s reference runs GD from scratch for its initial number of steps; run to convergence
it is this exact minimiser, which the update's distance bound is measured to.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from unlearnlab.models.logreg import DTYPE, fit_exact
from unlearnlab.methods.descent_to_delete import DescentToDelete
from unlearnlab.methods.newton import GROUP, SIGMA_HELP, removal_problem
from unlearnlab.methods.noisy_newton import NoisyNewton
from unlearnlab.metrics import Metric

REFERENCE_METRICS = (Metric("cert/sigma", SIGMA_HELP, group=GROUP),)


class _OutputNoiseReference:
    """Mixin: exact fit on retain with the original's b, plus N(0, σ²I) from the cell seed."""

    metrics: ClassVar[tuple[Metric, ...]] = REFERENCE_METRICS
    tol: float = 1e-10

    def _run(self) -> None:
        model = self.model
        X, Y, forget = removal_problem(model, self.data)  # D, to calibrate σ exactly as the method does
        b = model.perturbation()
        sigma = self.calibrate(X, forget.numel(), b)
        keep = torch.ones(X.shape[0], dtype=torch.bool)
        keep[forget] = False
        w = fit_exact(X[keep], Y[keep], model.lam, b, tol=self.tol)
        gen = torch.Generator().manual_seed(int(self.data.seed))
        model.set_weight(w + sigma * torch.randn(w.shape, generator=gen, dtype=DTYPE))
        self._metrics = {"cert/sigma": sigma}


class NoisyNewtonReference(_OutputNoiseReference, NoisyNewton):
    """noisy_newton's reference: exact minimiser on D∖F + the noise noisy_newton adds."""

    config_name = "noisy_newton_reference"


class DescentToDeleteReference(_OutputNoiseReference, DescentToDelete):
    """descent_to_delete's reference: exact minimiser on D∖F + the noise descent_to_delete adds."""

    config_name = "descent_to_delete_reference"


__all__ = ["NoisyNewtonReference", "DescentToDeleteReference"]
