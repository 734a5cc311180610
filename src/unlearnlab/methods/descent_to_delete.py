"""descent_to_delete: perturbed projected gradient descent (Neel, Roth, Sharifi-Malvajerdi 2021).

From the original (``model: logreg``, ``recipe: exact``: the exact minimiser, so the "secret" state
starts at the optimum), each update deletes ``removal_batch`` points, runs ``steps`` projected GD
steps (lr 2/(m+M)) on the mean objective of the remaining data from the current secret weights,
and publishes secret + N(0, sigma^2 I). The loss perturbation b the original was fitted with stays
in the objective (a fixed linear term); the projection ball contains the perturbed minimisers
(``d2d_radius``). sigma = removal_batch * ``d2d_sigma`` (Theorem 3.1, one deletion per update;
a batch of k deletions moves the minimiser k times as far), n = the final (smallest) data size,
times the number of one-vs-rest columns: calibrated from the target eps, delta and the constants.
The reported cert/epsilon is that target eps.

cert/residual_bound is a tracked bound on the secret's gradient residual: the distance to the
minimiser contracts by g^T per update and grows by at most 2 k L / (lam n_t) when k points leave.

The constants use the data's feature norm max(1, max ||x||) (``feature_norm``: 1 when the model
normalises its inputs), and GD runs at lr 2/(m+M) with those same constants. The certificate
compares the published model with the exact minimiser on D minus F plus the same output noise
(``DescentToDeleteReference``): Neel et al.'s retraining from scratch, run to convergence.
"""

from __future__ import annotations

import time
from typing import ClassVar

import torch

from unlearnlab.certified import (
    d2d_contraction, d2d_radius, d2d_sigma, descent_to_delete, feature_norm, gradient_residual, logistic_constants,
)
from unlearnlab.errors import ConfigError
from unlearnlab.methods.newton import GROUP, ClosedFormRemoval, batches_of, cert_metrics, removal_problem
from unlearnlab.methods.noisy_newton import NOISE_METRICS
from unlearnlab.metrics import Metric


class DescentToDelete(ClosedFormRemoval):
    config_name = "descent_to_delete"
    metrics: ClassVar[tuple[Metric, ...]] = cert_metrics(
        *NOISE_METRICS,
        Metric("cert/steps", "projected GD steps per update", group=GROUP),
        Metric("cert/residual_published", "gradient residual of the published (noised) model", group=GROUP),
    )

    def __init__(self, model, data, epsilon: float = 0.5, delta: float = 1e-4, steps: int = 150,
                 removal_batch: int = 16, gd_lr: float | None = None, **hparams) -> None:
        super().__init__(model, data, epsilon, delta, **hparams)
        if steps < 1:
            raise ConfigError(f"method.descent_to_delete.steps={steps} must be >= 1")
        self.steps = int(steps)
        self.removal_batch, self.gd_lr = int(removal_batch), gd_lr
        self.sigma = float("nan")
        self.constants = None

    def calibrate(self, X: torch.Tensor, n_forget: int, b: torch.Tensor) -> float:
        """The constants and σ on D = X: removal_batch times Theorem 3.1's σ at the final size."""
        n_final, x_norm, lam = X.shape[0] - n_forget, feature_norm(X), self.model.lam
        c = self.constants = logistic_constants(lam, radius=d2d_radius(lam, n_final, b, x_norm=x_norm), x_norm=x_norm)
        k = n_forget if self.removal_batch <= 0 else min(self.removal_batch, n_forget)
        self.sigma = k * d2d_sigma(c.lipschitz, c.strong_convexity, c.smoothness, n_final, self.steps,
                                   self.epsilon, self.delta, self.gd_lr, columns=self.model.weight.shape[1])
        return self.sigma

    def _run(self) -> None:
        model = self.model
        X, Y, forget = removal_problem(model, self.data)
        n, lam = X.shape[0], model.lam
        gen = torch.Generator().manual_seed(int(self.data.seed))
        secret, b = model.weight_vector().clone(), model.perturbation()
        self.calibrate(X, forget.numel(), b)
        c, cols = self.constants, model.weight.shape[1]
        lr = 2.0 / (c.strong_convexity + c.smoothness) if self.gd_lr is None else self.gd_lr
        g = d2d_contraction(c.strong_convexity, c.smoothness, lr) ** self.steps
        start = time.perf_counter()
        keep = torch.ones(n, dtype=torch.bool)
        # distance of the secret to the minimiser: the original is exact to its gradient tolerance
        dist = float(gradient_residual(secret, X, Y, lam, b).max()) / (lam * n)
        published = secret
        for batch in batches_of(forget, self.removal_batch):
            keep[batch] = False
            n_t = int(keep.sum())
            dist = g * (dist + 2.0 * batch.numel() * c.lipschitz / (lam * n_t))
            secret, published = descent_to_delete(secret, X[keep], Y[keep], lam, self.steps, lr, self.sigma,
                                                  gen, c.radius, b)
        seconds = time.perf_counter() - start
        model.set_weight(published)
        n_t = int(keep.sum())
        self._metrics = {
            "cert/epsilon": self.epsilon,
            "cert/delta": self.delta,
            "cert/sigma": self.sigma,
            "cert/steps": float(self.steps),
            "cert/distance_bound": cols * dist,
            "cert/residual_bound": cols * n_t * c.smoothness * dist,
            "cert/residual": float(gradient_residual(secret, X[keep], Y[keep], lam, b).norm()),
            "cert/residual_published": float(gradient_residual(published, X[keep], Y[keep], lam, b).norm()),
            "cert/removals": float(forget.numel()),
            "cost/removal_seconds": seconds,
        }

