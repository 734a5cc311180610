"""L2-regularised logistic regression for certified removal (Guo et al. 2020).

Objective (one binary problem, labels y_i in {-1, +1}, features with ||x_i|| <= 1):

    L(w; D) = sum_i l(w^T x_i, y_i) + (lam * n / 2) ||w||^2 + b^T w,     l(z, y) = log(1 + e^{-yz})

This is the *sum* scaling. It is exactly n times the objective of
facebookresearch/certified-removal (``lr_loss`` = mean loss + lam/2 ||w||^2, plus b.w / n in
``lr_optimize``), and matches its ``lr_grad`` (X^T((sigmoid(y Xw) - 1) y) + lam * n * w) and
``lr_hessian_inv`` (X^T D X + lam * n * I) exactly, so the removal code and the gradient-residual
bound carry over unchanged. Minimisers are the same under either scaling. Every function in this
module and in ``unlearnlab.certified`` uses this scaling; n is always the number of points in the
data set the objective is evaluated on (so removing a point also removes its lam/2 ||w||^2 share).

One-vs-rest (K > 2 classes): the weight is a (D, K) matrix, column k solves the binary problem
"class k vs the rest" with y_ik = +1 if label_i == k else -1, and b is (D, K). The objective is
the sum over columns, which decouples (as ``ovr_lr_loss`` in the repo, unweighted case).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

DTYPE = torch.float64


def normalise_features(x: Tensor, mode: str = "unit") -> Tensor:
    """Flatten and scale examples so that ||x_i|| <= 1, as the certificates require.

    mode="unit" (default): x_i / ||x_i|| as in certified-removal's test_removal.py
    (``X_train /= X_train.norm(2, 1)``); all-zero rows stay zero.
    mode="project": x_i / max(1, ||x_i||), projecting only the rows outside the unit ball.
    Both are per-example maps, so they can be applied identically at train and test time.
    """
    x = x.reshape(x.shape[0], math.prod(x.shape[1:])).to(DTYPE)  # explicit: also for 0 rows
    norms = x.norm(dim=1, keepdim=True)
    if mode == "unit":
        return x / torch.where(norms > 0, norms, torch.ones_like(norms))
    if mode == "project":
        return x / norms.clamp_min(1.0)
    raise ValueError(f"unknown mode {mode!r}; use 'unit' or 'project'")


def to_pm1(labels: Tensor, num_classes: int) -> Tensor:
    """Map integer labels to the internal +-1 targets: (n,) for 2 classes, (n, K) one-vs-rest."""
    labels = torch.as_tensor(labels).long()
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes})")
    if num_classes == 2:
        return labels.to(DTYPE) * 2 - 1
    if num_classes < 2:
        raise ValueError("num_classes must be >= 2")
    y = -torch.ones(labels.shape[0], num_classes, dtype=DTYPE)
    y[torch.arange(labels.shape[0]), labels] = 1.0
    return y


def check_pm1(y: Tensor) -> Tensor:
    """Reject {0,1} labels silently passed where +-1 targets are meant (a classic sign bug)."""
    y = y.to(DTYPE)
    if y.numel() and not bool(((y == 1) | (y == -1)).all()):
        raise ValueError("targets must be +-1 (use to_pm1 on integer labels)")
    return y


def loss_sum(w: Tensor, X: Tensor, y: Tensor, lam: float, b: Tensor | None = None) -> Tensor:
    """L(w; D) in the sum scaling (one binary column, w: (D,), y: (n,) in +-1)."""
    z = y * (X @ w)
    val = nn.functional.softplus(-z).sum() + 0.5 * lam * X.shape[0] * w.dot(w)
    return val if b is None else val + b.dot(w)


def grad_sum(w: Tensor, X: Tensor, y: Tensor, lam: float, b: Tensor | None = None) -> Tensor:
    """Gradient of L: X^T(-y sigmoid(-y Xw)) + lam n w (+ b); equals the repo's lr_grad (+ b)."""
    z = y * (X @ w)
    g = X.T @ (-y * torch.sigmoid(-z)) + lam * X.shape[0] * w
    return g if b is None else g + b


def hessian_sum(w: Tensor, X: Tensor, y: Tensor, lam: float) -> Tensor:
    """Hessian of L: X^T diag(s(1-s)) X + lam n I (b is linear, so it does not enter)."""
    s = torch.sigmoid(y * (X @ w))
    H = X.T @ ((s * (1 - s)).unsqueeze(1) * X)
    H.diagonal().add_(lam * X.shape[0])
    return H


def _fit_column(X, y, lam, b, tol, max_iter, w0=None):
    """Damped Newton (Armijo backtracking) on one strongly convex column; float64."""
    w = torch.zeros(X.shape[1], dtype=DTYPE) if w0 is None else w0.clone()
    f = loss_sum(w, X, y, lam, b)
    for _ in range(max_iter):
        g = grad_sum(w, X, y, lam, b)
        if g.norm() < tol:
            return w
        step = torch.cholesky_solve(g.unsqueeze(1), torch.linalg.cholesky(hessian_sum(w, X, y, lam))).squeeze(1)
        t, decrease = 1.0, g.dot(step)
        # Near the optimum f changes by less than its rounding error, so Armijo on f stalls; there
        # (Newton decrement tiny relative to |f|) accept a step that shrinks the gradient instead.
        flat = decrease <= 1e-10 * (1.0 + f.abs())
        while True:
            w_try = w - t * step
            f_try = loss_sum(w_try, X, y, lam, b)
            if f_try <= f - 1e-4 * t * decrease or t < 1e-10:
                break
            if flat and grad_sum(w_try, X, y, lam, b).norm() < g.norm():
                break
            t *= 0.5
        if t < 1e-10:  # no descent left at machine precision: stop and let the check below judge
            break
        w, f = w_try, f_try
    g = grad_sum(w, X, y, lam, b)
    if g.norm() >= tol:
        raise RuntimeError(f"fit_exact: gradient norm {g.norm():.3e} >= tol {tol:.1e} (max_iter {max_iter})")
    return w


def fit_exact(
    X: Tensor, y: Tensor, lam: float, b: Tensor | None = None, tol: float = 1e-10,
    max_iter: int = 100, w0: Tensor | None = None,
) -> Tensor:
    """The exact minimiser of L(w; D) (sum scaling), to ||grad L|| < tol, by damped Newton.

    "Retrain" in every certificate means this minimiser, so we use Newton (quadratic convergence)
    in float64 rather than a fixed number of L-BFGS steps as the repo does. y: (n,) +-1 for one
    binary problem -> w (D,); or (n, K) +-1 one-vs-rest -> W (D, K), one column per class. b has
    w's shape. Raises if the tolerance is not met (a silently unconverged "retrain" would make
    every downstream comparison meaningless).
    """
    X, y = X.to(DTYPE), check_pm1(y)
    if y.dim() == 1:
        return _fit_column(X, y, lam, None if b is None else b.to(DTYPE), tol, max_iter, w0)
    cols = [
        _fit_column(X, y[:, k], lam, None if b is None else b[:, k].to(DTYPE), tol, max_iter,
                    None if w0 is None else w0[:, k])
        for k in range(y.shape[1])
    ]
    return torch.stack(cols, dim=1)


def loss_perturbation(dim, sigma: float, generator: torch.Generator | None = None) -> Tensor:
    """b ~ N(0, sigma^2 I) of shape ``dim`` (int D, or (D, K) for one-vs-rest): Guo's loss
    perturbation, which masks the gradient residual of approximate removals."""
    shape = (dim,) if isinstance(dim, int) else tuple(dim)
    return sigma * torch.randn(shape, generator=generator, dtype=DTYPE)


class LogisticRegression(nn.Module):
    """Linear logistic regression on flattened, norm-bounded inputs (binary or one-vs-rest).

    Constructed like every unlearnlab model: ``(in_channels, num_classes, image_size, **options)``;
    the input dimension is in_channels * image_size**2 (``LogisticRegression(64, ...)`` with the
    default image_size=1 is a 64-feature model). Options: ``lam`` (the L2 strength of the sum-form
    objective), ``sigma`` (std of the loss perturbation b drawn at training time, see
    ``unlearnlab.certified.fit_model_exact``), ``normalise`` / ``norm_mode`` (the ||x|| <= 1 map).

    ``weight``: (D, 1) for num_classes == 2 (one vector w, class 1 is "+1"), else (D, K).
    ``b``: a buffer shaped like ``weight`` holding the loss-perturbation vector the weights were
    fitted with (zeros until ``fit_model_exact`` / ``fit`` sets it). It is part of the state_dict,
    so an unlearning cell that loads the original's state gets the b the original was trained with
    (Guo et al.'s removal step and residual bound need it).
    ``forward`` returns (n, K) float64 logits:
      - binary: [-s/2, +s/2] with s = w^T x, so softmax(logits)[:, 1] = sigmoid(s) exactly and
        the log-odds of class 1 vs 0 is s (the audit's logit-scaled confidence stays meaningful);
      - one-vs-rest: the K scores w_k^T x. argmax is the OvR prediction; softmax over them is a
        convenient probability, not the product of the K independent sigmoids.
    With ``normalise`` (default) inputs pass through ``normalise_features(mode=norm_mode)`` first,
    the same per-example map used for training, so ||x|| <= 1 holds at train and test time.
    """

    model_kind = "logreg"  # certified removal applies to it; network methods do not (checks.check_applies)

    def __init__(self, in_channels: int, num_classes: int = 2, image_size: int = 1, lam: float = 1e-3,
                 sigma: float = 0.0, normalise: bool = True, norm_mode: str = "unit"):
        super().__init__()
        if num_classes < 2:
            raise ValueError("num_classes must be >= 2")
        if lam <= 0:
            raise ValueError("lam must be > 0 (the certificates need strong convexity)")
        if sigma < 0:
            raise ValueError("sigma must be >= 0")
        self.in_features = int(in_channels) * int(image_size) ** 2
        self.num_classes, self.lam, self.sigma = num_classes, float(lam), float(sigma)
        self.normalise, self.norm_mode = normalise, norm_mode
        cols = 1 if num_classes == 2 else num_classes
        self.weight = nn.Parameter(torch.zeros(self.in_features, cols, dtype=DTYPE))
        self.register_buffer("b", torch.zeros(self.in_features, cols, dtype=DTYPE))

    def features(self, x: Tensor) -> Tensor:
        """Flattened float64 inputs, normalised as in training."""
        if self.normalise:
            return normalise_features(x, self.norm_mode)
        return x.reshape(x.shape[0], math.prod(x.shape[1:])).to(DTYPE)

    def forward(self, x: Tensor) -> Tensor:
        s = self.features(x) @ self.weight
        if self.num_classes == 2:
            return torch.cat([-s / 2, s / 2], dim=1)
        return s

    def targets(self, labels: Tensor) -> Tensor:
        """Internal +-1 targets for integer labels: (n,) binary or (n, K) one-vs-rest."""
        return to_pm1(labels, self.num_classes)

    @property
    def solver_shape(self) -> int | tuple[int, int]:
        """Shape of the solver's weight (and of b): D for binary, (D, K) for one-vs-rest."""
        return self.in_features if self.num_classes == 2 else (self.in_features, self.num_classes)

    def weight_vector(self) -> Tensor:
        """The solver's view of the weight: (D,) for binary, (D, K) for one-vs-rest."""
        w = self.weight.detach()
        return w[:, 0] if self.num_classes == 2 else w

    def perturbation(self) -> Tensor:
        """The loss-perturbation b the weights were fitted with, shaped like weight_vector()."""
        b = self.b.detach()
        return b[:, 0] if self.num_classes == 2 else b

    @torch.no_grad()
    def set_weight(self, w: Tensor) -> None:
        self.weight.copy_(w.reshape(self.weight.shape).to(DTYPE))

    @torch.no_grad()
    def set_perturbation(self, b: Tensor | None) -> None:
        if b is None:
            self.b.zero_()
        else:
            self.b.copy_(b.reshape(self.b.shape).to(DTYPE))

    @torch.no_grad()
    def fit(self, x: Tensor, labels: Tensor, b: Tensor | None = None, tol: float = 1e-10,
            max_iter: int = 100) -> "LogisticRegression":
        """Exact (loss-perturbed if b is given) fit on integer labels; b shaped like weight_vector()
        and stored in the ``b`` buffer."""
        feats, y = self.features(x).cpu(), self.targets(labels.cpu())
        w = fit_exact(feats, y, self.lam, b=None if b is None else b.cpu(), tol=tol, max_iter=max_iter)
        self.set_weight(w)
        self.set_perturbation(b)
        return self
