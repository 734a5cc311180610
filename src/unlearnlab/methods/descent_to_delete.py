"""descent_to_delete: perturbed projected gradient descent (Neel, Roth, Sharifi-Malvajerdi 2021).

From the original (``model: logreg``, ``train: exact``: the exact minimiser, so the "secret" state
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
"""

from __future__ import annotations

import time

import torch

from unlearnlab.certified import (
    d2d_contraction, d2d_radius, d2d_sigma, descent_to_delete, gradient_residual, logistic_constants,
)
from unlearnlab.errors import ConfigError
from unlearnlab.methods.newton import ClosedFormRemoval, batches_of, removal_problem


class DescentToDelete(ClosedFormRemoval):
    config_name = "descent_to_delete"

    def __init__(self, model, data, epsilon: float = 0.5, delta: float = 1e-4, steps: int = 150,
                 removal_batch: int = 16, gd_lr: float | None = None, **hparams) -> None:
        super().__init__(model, data, epsilon, delta, **hparams)
        if steps < 1:
            raise ConfigError(f"method.descent_to_delete.steps={steps} must be >= 1")
        self.steps = int(steps)
        self.removal_batch, self.gd_lr = int(removal_batch), gd_lr
        self.sigma = float("nan")
        self.constants = None

    def _run(self) -> None:
        model = self.model
        X, Y, forget = removal_problem(model, self.data)
        n, lam = X.shape[0], model.lam
        gen = torch.Generator().manual_seed(int(self.data.seed))
        secret, b = model.weight_vector().clone(), model.perturbation()
        n_final = n - forget.numel()
        c = self.constants = logistic_constants(lam, radius=d2d_radius(lam, n_final, b))
        k = forget.numel() if self.removal_batch <= 0 else min(self.removal_batch, forget.numel())
        cols = model.weight.shape[1]
        self.sigma = k * d2d_sigma(c.lipschitz, c.strong_convexity, c.smoothness, n_final, self.steps,
                                   self.epsilon, self.delta, self.gd_lr, columns=cols)
        g = d2d_contraction(c.strong_convexity, c.smoothness, self.gd_lr) ** self.steps
        start = time.perf_counter()
        keep = torch.ones(n, dtype=torch.bool)
        # distance of the secret to the minimiser: the original is exact to its gradient tolerance
        dist = float(gradient_residual(secret, X, Y, lam, b).max()) / (lam * n)
        published = secret
        for batch in batches_of(forget, self.removal_batch):
            keep[batch] = False
            n_t = int(keep.sum())
            dist = g * (dist + 2.0 * batch.numel() * c.lipschitz / (lam * n_t))
            secret, published = descent_to_delete(secret, X[keep], Y[keep], lam, self.steps, self.gd_lr, self.sigma,
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

