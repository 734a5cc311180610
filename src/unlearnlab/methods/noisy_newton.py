"""noisy_newton: Newton step from stored statistics + Gaussian output noise (Sekhari, Acharya,
Kamath, Suresh 2021, "Remember What You Want to Forget").

The original (``model: logreg``, ``recipe: exact``) is the exact minimiser w of the regularised
objective (its loss perturbation b, if any, stays in the objective as a fixed linear term: it moves
neither the Hessian nor the per-deletion change of the minimiser, so Sekhari's bound is unchanged).
The stored statistic is the Hessian on D at w. Deleting U (|U| = m): w_bar = w + H_keep^-1 sum_U grad f,
published as w_bar + N(0, sigma^2 I) with sigma = (gamma/eps) sqrt(2 ln(1.25/delta)),
gamma = 2 M m^2 L^2 / (lam^3 n^2), times the number of one-vs-rest columns (``sekhari_sigma``).
M, L, lam from ``logistic_constants`` on a ball that contains the (perturbed) minimisers, at the
data's feature norm max(1, max ||x||) (``feature_norm``: 1 when the model normalises its inputs).

The certificate compares the published model with the same learner run on D minus F plus the same
output noise (``NoisyNewtonReference``), not with the study's retrained models.

``removal_batch`` > 0 publishes after every batch (each release is the one-shot update for all
deletions so far, with the sigma of that many deletions); 0 (default) = one release for the whole
forget set. The reported cert/epsilon is the eps the noise was calibrated for.
"""

from __future__ import annotations

import time
from typing import ClassVar

import torch

from unlearnlab.certified import (
    d2d_radius, feature_norm, gradient_residual, logistic_constants, noisy_newton_removal, sekhari_sigma,
    stored_hessian,
)
from unlearnlab.methods.newton import GROUP, SIGMA_HELP, ClosedFormRemoval, batches_of, cert_metrics, removal_problem
from unlearnlab.metrics import Metric

NOISE_METRICS = (
    Metric("cert/sigma", SIGMA_HELP, group=GROUP),
    Metric("cert/distance_bound", "bound on the distance of the un-noised output to the minimiser on D∖F",
           group=GROUP),
    Metric("cert/residual_bound", "gradient-residual bound the noise masks", group=GROUP),
    Metric("cert/residual", "actual gradient residual of the un-noised output (≤ cert/residual_bound)", group=GROUP),
)


class NoisyNewton(ClosedFormRemoval):
    config_name = "noisy_newton"
    metrics: ClassVar[tuple[Metric, ...]] = cert_metrics(*NOISE_METRICS)

    def __init__(self, model, data, epsilon: float = 0.5, delta: float = 1e-4, removal_batch: int = 0,
                 **hparams) -> None:
        super().__init__(model, data, epsilon, delta, **hparams)
        self.removal_batch = int(removal_batch)
        self.sigma = float("nan")
        self.constants = None

    def noise_sigma(self, m: int, n: int) -> float:
        c, cols = self.constants, self.model.weight.shape[1]
        return sekhari_sigma(c.hessian_lipschitz, c.lipschitz, c.strong_convexity, n, m, self.epsilon, self.delta,
                             columns=cols)

    def calibrate(self, X: torch.Tensor, n_forget: int, b: torch.Tensor) -> float:
        """The constants and the σ of the final release (all n_forget deletions) on D = X."""
        n, x_norm = X.shape[0], feature_norm(X)
        radius = d2d_radius(self.model.lam, n - n_forget, b, x_norm=x_norm)
        self.constants = logistic_constants(self.model.lam, radius=radius, x_norm=x_norm)
        return self.noise_sigma(n_forget, n)

    def _run(self) -> None:
        model = self.model
        X, Y, forget = removal_problem(model, self.data)
        n = X.shape[0]
        gen = torch.Generator().manual_seed(int(self.data.seed))
        w, b = model.weight_vector(), model.perturbation()
        self.calibrate(X, forget.numel(), b)
        start = time.perf_counter()
        H_all = stored_hessian(w, X, Y, model.lam)
        done = torch.zeros(0, dtype=torch.long)
        published, w_bar = w.clone(), w.clone()
        for batch in batches_of(forget, self.removal_batch):
            done = torch.cat([done, batch])
            self.sigma = self.noise_sigma(done.numel(), n)
            published, info = noisy_newton_removal(w, X, Y, done, model.lam, self.sigma, gen, H_all)
            w_bar = info["w_bar"]
        seconds = time.perf_counter() - start
        model.set_weight(published)
        keep = torch.ones(n, dtype=torch.bool)
        keep[done] = False
        m, c, cols = done.numel(), self.constants, model.weight.shape[1]
        distance_bound = cols * 2.0 * c.hessian_lipschitz * m ** 2 * c.lipschitz ** 2 / (c.strong_convexity ** 3 * n ** 2)
        self._metrics = {
            "cert/epsilon": self.epsilon,
            "cert/delta": self.delta,
            "cert/sigma": self.sigma,
            # ||w_bar - w*'|| <= gamma per column; the sum-form gradient is (n - m) times the mean
            # objective's, whose smoothness is x^2/4 + lam: the residual bound the noise masks
            "cert/distance_bound": distance_bound,
            "cert/residual_bound": (n - m) * c.smoothness * distance_bound,
            "cert/residual": float(gradient_residual(w_bar, X[keep], Y[keep], model.lam, b).norm()),
            "cert/removals": float(m),
            "cost/removal_seconds": seconds,
        }

