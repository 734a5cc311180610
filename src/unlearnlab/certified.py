"""Certified removal for L2-regularised logistic regression: the math, as pure float64 functions.

Three mechanisms, each with the noise that turns an approximate removal into an (eps, delta)
guarantee (Guo et al. 2020, after differential privacy):

* ``newton_removal`` / ``NewtonRemover``: Guo, Goldstein, Hannun, van der Maaten 2020, "Certified
  Data Removal from Machine Learning Models", checked against facebookresearch/certified-removal
  (test_removal.py). Loss perturbation b ~ N(0, sigma^2 I) at training time; a Newton step per
  removal; a data-dependent bound beta on the gradient residual; certificate eps = c beta / sigma
  with c = sqrt(2 log(1.5/delta)); retrain when the budget would be exceeded.
* ``noisy_newton_removal``: Sekhari, Acharya, Kamath, Suresh 2021, "Remember What You Want to
  Forget" (unlearning algorithm with the stored Hessian): Newton step, then Gaussian output noise.
* ``descent_to_delete``: Neel, Roth, Sharifi-Malvajerdi 2021, "Descent-to-Delete" (perturbed
  projected gradient descent for strongly convex, smooth, Lipschitz losses).

Scaling (see ``unlearnlab.models.logreg``): L(w; D) = sum_i l(w^T x_i, y_i) + (lam n/2)||w||^2 +
b^T w, n = |D|, i.e. n times the repo's mean objective. The per-example loss of Sekhari/Neel is
f(w, z) = l(w^T x, y) + (lam/2)||w||^2 (lam-strongly convex), their F = L/n with b = None.

One-vs-rest: w is (D, K), y is (n, K) +-1, b is (D, K); every mechanism runs per column. The
certificate is for the whole matrix and composes by the SUM over columns: for Guo, the stacked
residual satisfies ||r|| <= sum_k ||r_k|| <= sum_k beta_k, and certified-removal sums the per-class
bounds (``grad_norm_approx[i] += ...`` inside the class loop); Sekhari/D2D noise is scaled by
``columns`` (sensitivity of the stacked vector <= sum of per-column sensitivities). Summing is
conservative (the L2 combination, sqrt(K), would also be valid).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import torch
from torch import Tensor

from unlearnlab.data.loader import normalise
from unlearnlab.models.logreg import (
    DTYPE, check_pm1, fit_exact, grad_sum, hessian_sum, loss_perturbation,
)

# Lipschitz constant of l''(z) = s(z)(1 - s(z)) used by Guo et al. for the logistic loss (the repo
# divides by 4). The exact sup |s''| is 1/(6 sqrt 3) ~ 0.0962, so 1/4 is valid and conservative.
LOGISTIC_GAMMA = 0.25


# --------------------------------------------------------------------------------------------
# constants


@dataclass(frozen=True)
class LogisticConstants:
    """Constants of f(w, z) = log(1 + e^{-y w.x}) + lam/2 ||w||^2 on {||w|| <= radius}, ||x|| <= x_norm.

    lipschitz L = x_norm + lam * radius          (|l'| <= 1, plus the regulariser's lam ||w||)
    smoothness   = x_norm^2 / 4 + lam            (l'' <= 1/4)
    strong_convexity = lam
    hessian_lipschitz M = LOGISTIC_GAMMA * x_norm^3   (|l'''| <= 1/4 conservatively, see above)
    The default radius x_norm / lam contains the unregularised-b minimiser of the mean objective
    (lam ||w*|| = ||mean grad l|| <= x_norm), so projecting onto it does not move the ERM.
    """

    lam: float
    radius: float
    x_norm: float = 1.0
    lipschitz: float = field(init=False)
    smoothness: float = field(init=False)
    strong_convexity: float = field(init=False)
    hessian_lipschitz: float = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "lipschitz", self.x_norm + self.lam * self.radius)
        object.__setattr__(self, "smoothness", self.x_norm ** 2 / 4 + self.lam)
        object.__setattr__(self, "strong_convexity", self.lam)
        object.__setattr__(self, "hessian_lipschitz", LOGISTIC_GAMMA * self.x_norm ** 3)


def logistic_constants(lam: float, radius: float | None = None, x_norm: float = 1.0) -> LogisticConstants:
    """Constants for the per-example regularised logistic loss; radius defaults to x_norm / lam."""
    return LogisticConstants(lam=lam, radius=x_norm / lam if radius is None else radius, x_norm=x_norm)


# --------------------------------------------------------------------------------------------
# helpers


def feature_norm(X: Tensor) -> float:
    """max(1, max_i ||x_i||): the x_norm the constants must use. The certificates assume rows in the
    unit ball (``normalise_features``); a model built with ``normalise: false`` may break that, and
    then every constant is taken at the data's actual norm instead of silently assuming 1."""
    X = _f64(X)
    norm = float(X.norm(dim=1).max()) if X.shape[0] else 0.0
    return 1.0 if norm <= 1.0 + 1e-9 else norm  # unit-normalised rows round to 1 ± 1e-16


def _f64(t: Tensor | None) -> Tensor | None:
    return None if t is None else torch.as_tensor(t).to(DTYPE)


def _cols(w: Tensor) -> int:
    return 1 if w.dim() == 1 else w.shape[1]


def _col(t: Tensor | None, k: int, w: Tensor) -> Tensor | None:
    """Column k of a per-class tensor, or the tensor itself for a binary (1-D) w."""
    if t is None or w.dim() == 1:
        return t
    return t[:, k] if t.dim() == 2 else t[k]


def _stack(cols: list[Tensor], like: Tensor) -> Tensor:
    return cols[0] if like.dim() == 1 else torch.stack(cols, dim=1)


def _as2d(t: Tensor) -> Tensor:
    """A per-column tensor as a matrix: (D,) -> (D, 1), (n,) -> (n, 1); 2-D unchanged."""
    return t.unsqueeze(1) if t.dim() == 1 else t


class single_thread:
    """Run small float64 linear algebra on one intra-op thread (restored afterwards): these problems
    are tiny, and on a shared CPU extra threads only add contention (measured: removal 20x slower
    at load 7 per core with the default thread count)."""

    def __enter__(self):
        self._before = torch.get_num_threads()
        torch.set_num_threads(1)
        return self

    def __exit__(self, *exc):
        torch.set_num_threads(self._before)
        return False


def _solve_spd(H: Tensor, g: Tensor) -> Tensor:
    return torch.cholesky_solve(g.unsqueeze(1), torch.linalg.cholesky(H)).squeeze(1)


def gradient_residual(w: Tensor, X: Tensor, y: Tensor, lam: float, b: Tensor | None = None) -> Tensor:
    """Per-column ||grad L(w_k; D)|| (sum scaling, with b): shape (1,) binary or (K,)."""
    w, X, y, b = _f64(w), _f64(X), check_pm1(y), _f64(b)
    return torch.stack([
        grad_sum(_col(w, k, w), X, _col(y, k, w), lam, _col(b, k, w)).norm() for k in range(_cols(w))
    ])


def spectral_norm(X: Tensor) -> float:
    """||X||_2 = sqrt(largest eigenvalue of X^T X), computed exactly (symmetric eigensolver on the
    D x D Gram matrix, cheaper than an n x D SVD). The repo uses 20 power iterations, which can
    only under-estimate it; the exact value (inflated by 1e-12 relative, above the eigensolver's
    rounding) keeps the bound a bound."""
    if X.shape[0] == 0:
        return 0.0
    return math.sqrt(max(0.0, float(torch.linalg.eigvalsh(X.T @ X)[-1]))) * (1.0 + 1e-12)


# --------------------------------------------------------------------------------------------
# Guo et al.: Newton removal with loss perturbation


def certificate_constant(delta: float) -> float:
    """c = sqrt(2 log(1.5 / delta)): Guo et al. certify (eps, delta) with delta = 1.5 exp(-c^2/2) when
    b ~ N(0, (c eps'/eps)^2 I) and the residual is <= eps' (their Theorem 3; number not re-checked)."""
    return math.sqrt(2.0 * math.log(1.5 / delta))


def certificate_epsilon(beta: float, sigma: float, delta: float) -> float:
    """eps certified for a gradient-residual bound beta under loss perturbation sigma: c beta / sigma."""
    return certificate_constant(delta) * float(beta) / sigma


def beta_budget(eps: float, sigma: float, delta: float) -> float:
    """Largest residual bound that keeps the certificate at eps: sigma eps / c."""
    return sigma * eps / certificate_constant(delta)


def newton_removal(
    w: Tensor, X_keep: Tensor, y_keep: Tensor, X_remove: Tensor, y_remove: Tensor,
    lam: float, b: Tensor | None = None, gamma: float = LOGISTIC_GAMMA,
) -> tuple[Tensor, dict]:
    """One Newton step removing (X_remove, y_remove) from a model of D = keep + remove.

    Per column: Delta = grad of the removed terms at w = sum_{removed} grad l + lam m w (their
    share of the lam n/2 ||w||^2 regulariser; b stays, it is not data); H = Hessian of L on the
    remaining data at w (lam * n_keep on the diagonal); w_new = w + H^{-1} Delta. Exactly the
    repo's lr_grad / lr_hessian_inv step (a batch is the sum of the single-point Deltas).

    info["beta_inc"]: sum over columns of gamma * ||X_keep||_2 * ||H^-1 Delta|| * ||X_keep H^-1 Delta||
    (Guo et al.'s data-dependent bound, as in the repo's grad_norm_approx), multiplied by
    max(1, max_i ||x_i||) so that it stays valid for rows outside the unit ball (the derivation
    uses |x_i^T s| <= ||x_i|| ||s||). It bounds the *increase* of the gradient residual, so
    residuals of a sequence of removals are bounded by the running sum.
    info["residual"]: actual ||grad L(w_new; D')|| of the stacked matrix (with b).
    Removing nothing returns an unchanged copy of w (bit-identical).
    """
    w, X_keep, X_remove, b = _f64(w), _f64(X_keep), _f64(X_remove), _f64(b)
    y_keep, y_remove = check_pm1(y_keep), check_pm1(y_remove)
    K = _cols(w)
    if X_remove.shape[0] == 0:
        res = gradient_residual(w, X_keep, y_keep, lam, b)
        zeros = torch.zeros(K, dtype=DTYPE)
        return w.clone(), {"beta_inc": 0.0, "beta_inc_per_class": zeros, "residual": float(res.norm()),
                           "residual_per_class": res, "spectral_norm": spectral_norm(X_keep), "step_norm": 0.0}
    spec = spectral_norm(X_keep)
    row_scale = max(1.0, float(X_keep.norm(dim=1).max())) if X_keep.shape[0] else 1.0
    # all one-vs-rest columns at once (batched Hessians and solves); per column this is exactly
    # Delta_k = grad_sum(w_k, X_remove, y_k, lam), step_k = H_k^-1 Delta_k, H_k = hessian_sum(w_k, X_keep, ...)
    W, Yk, Yr = _as2d(w), _as2d(y_keep), _as2d(y_remove)
    B = None if b is None else _as2d(b)
    Delta = X_remove.T @ (-Yr * torch.sigmoid(-Yr * (X_remove @ W))) + lam * X_remove.shape[0] * W
    S = torch.sigmoid(Yk * (X_keep @ W))
    H = (X_keep.T.unsqueeze(0) * (S * (1 - S)).T.unsqueeze(1)) @ X_keep  # (K, D, D)
    H.diagonal(dim1=1, dim2=2).add_(lam * X_keep.shape[0])
    steps = torch.cholesky_solve(Delta.T.unsqueeze(2), torch.linalg.cholesky(H)).squeeze(2).T  # (D, K)
    W_new = W + steps
    incs = gamma * row_scale * spec * steps.norm(dim=0) * (X_keep @ steps).norm(dim=0)
    G = X_keep.T @ (-Yk * torch.sigmoid(-Yk * (X_keep @ W_new))) + lam * X_keep.shape[0] * W_new
    res = (G if B is None else G + B).norm(dim=0)
    info = {"beta_inc": float(incs.sum()), "beta_inc_per_class": incs, "residual": float(res.norm()),
            "residual_per_class": res, "spectral_norm": spec, "step_norm": float(steps.norm())}
    return (W_new[:, 0] if w.dim() == 1 else W_new), info


class NewtonRemover:
    """Sequential / batched certified removal with a residual budget (Guo et al., repeated removal).

    Trains w = argmin L(w; D) + b^T w with b ~ N(0, sigma^2 I) (unless w and b are given), then
    removes points in batches of ``batch_size``. Before applying a batch it computes the Newton
    step and its bound increment; if beta + beta_inc would exceed the budget sigma eps / c it
    instead retrains exactly (``fit_exact`` on the remaining data, from scratch) and resets beta.
    The reset is to the retrained model's actual residual (<= tol), not to 0, and beta starts at
    the initial fit's residual, so beta always bounds the true residual.

    ``resample_b`` (default True) draws a fresh b for a retrain. The paper/repo do not pin this
    down (the repo never retrains); a fresh draw is the conservative choice: reusing b would let
    anyone holding the exact retrained model read b off its gradient and strip the noise from the
    approximate models released before it.

    Records: ``num_retrains``; ``retrain_at`` = stream positions (0-based, over all points passed
    to ``remove``) of the first point of each batch that triggered a retrain; ``history`` = one
    dict per batch.
    """

    def __init__(
        self, X: Tensor, y: Tensor, lam: float, sigma: float, eps: float, delta: float,
        batch_size: int = 1, generator: torch.Generator | None = None, resample_b: bool = True,
        w: Tensor | None = None, b: Tensor | None = None, gamma: float = LOGISTIC_GAMMA, tol: float = 1e-10,
    ):
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.X, self.y = _f64(X), check_pm1(y)
        self.lam, self.sigma, self.eps, self.delta = lam, sigma, eps, delta
        self.batch_size, self.generator, self.resample_b = batch_size, generator, resample_b
        self.gamma, self.tol = gamma, tol
        self._shape = self.X.shape[1] if self.y.dim() == 1 else (self.X.shape[1], self.y.shape[1])
        self.b = loss_perturbation(self._shape, sigma, generator) if b is None else _f64(b)
        self.w = fit_exact(self.X, self.y, lam, self.b, tol=tol) if w is None else _f64(w).clone()
        self.keep = torch.ones(self.X.shape[0], dtype=torch.bool)
        self.beta = float(gradient_residual(self.w, self.X, self.y, lam, self.b).sum())
        self.budget = beta_budget(eps, sigma, delta)
        self.num_retrains, self.retrain_at, self.history, self.position = 0, [], [], 0

    @property
    def epsilon(self) -> float:
        """The certificate of the current model: c beta / sigma."""
        return certificate_epsilon(self.beta, self.sigma, self.delta)

    def remove(self, indices) -> Tensor:
        """Remove the given row indices (of the original X), in order, batch by batch; returns w."""
        idx = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        if idx.numel() != idx.unique().numel():
            raise ValueError("duplicate indices")
        if idx.numel() and not bool(self.keep[idx].all()):
            raise ValueError("some indices were already removed")
        for start in range(0, idx.numel(), self.batch_size):
            self._remove_batch(idx[start:start + self.batch_size])
        return self.w

    def _remove_batch(self, batch: Tensor) -> None:
        keep_after = self.keep.clone()
        keep_after[batch] = False
        Xk, yk = self.X[keep_after], self.y[keep_after]
        w_new, info = newton_removal(self.w, Xk, yk, self.X[batch], self.y[batch], self.lam, self.b, self.gamma)
        retrained = self.beta + info["beta_inc"] > self.budget
        if retrained:
            if self.resample_b:
                self.b = loss_perturbation(self._shape, self.sigma, self.generator)
            self.w = fit_exact(Xk, yk, self.lam, self.b, tol=self.tol)
            res = gradient_residual(self.w, Xk, yk, self.lam, self.b)
            self.beta, residual = float(res.sum()), float(res.norm())
            self.num_retrains += 1
            self.retrain_at.append(self.position)
        else:
            self.w, self.beta, residual = w_new, self.beta + info["beta_inc"], info["residual"]
        self.history.append({"position": self.position, "size": int(batch.numel()), "beta_inc": info["beta_inc"],
                             "beta": self.beta, "residual": residual, "retrained": retrained})
        self.keep = keep_after
        self.position += int(batch.numel())


# --------------------------------------------------------------------------------------------
# Sekhari et al.: Newton step with the stored Hessian + output noise


def gaussian_mechanism_factor(eps: float, delta: float) -> float:
    """sqrt(2 ln(1.25/delta)) / eps: the classical Gaussian mechanism (valid for eps < 1)."""
    if eps >= 1:
        warnings.warn("the sqrt(2 ln(1.25/delta))/eps Gaussian mechanism is only proven for eps < 1", stacklevel=3)
    return math.sqrt(2.0 * math.log(1.25 / delta)) / eps


def sekhari_sigma(M: float, L: float, lam: float, n: int, m: int, eps: float, delta: float, columns: int = 1) -> float:
    """sigma = (gamma/eps) sqrt(2 ln(1.25/delta)), gamma = 2 M m^2 L^2 / (lam^3 n^2).

    Sekhari et al. 2021, unlearning algorithm (Algorithm 2, Theorem 3 of the NeurIPS version;
    numbering unverified here). gamma bounds ||w_bar - argmin F_{S minus U}||: the ERM moves by
    <= 2 m L/(lam n) and one Newton step squares that error times M/(2 lam); a secondary summary
    found during checking prints lam^2, but lam^3 is the dimensionally consistent form (and the
    larger one for lam < 1), so we use lam^3. ``columns``: one-vs-rest columns, summed.
    M, L, lam: Hessian-Lipschitz, Lipschitz and strong-convexity constants of f(w, z)
    (``logistic_constants``); n: training set size; m: number of deletions.
    """
    gamma = 2.0 * M * m ** 2 * L ** 2 / (lam ** 3 * n ** 2)
    return columns * gamma * gaussian_mechanism_factor(eps, delta)


def stored_hessian(w: Tensor, X: Tensor, y: Tensor, lam: float) -> Tensor:
    """The statistic Sekhari's learner stores: n * Hessian of F at w_hat = Hessian of L (sum
    scaling): (D, D), or (K, D, D) one-vs-rest."""
    w, X, y = _f64(w), _f64(X), check_pm1(y)
    Hs = [hessian_sum(_col(w, k, w), X, _col(y, k, w), lam) for k in range(_cols(w))]
    return Hs[0] if w.dim() == 1 else torch.stack(Hs)


def noisy_newton_removal(
    w: Tensor, X_all: Tensor, y_all: Tensor, remove_idx, lam: float, sigma: float,
    generator: torch.Generator | None = None, hessian_all: Tensor | None = None,
) -> tuple[Tensor, dict]:
    """Sekhari et al.'s unlearning step: w_bar = w + H_hat^{-1} sum_U grad f / (n - m), plus N(0, sigma^2 I).

    H_hat = (n Hess F(w) - sum_U Hess f(w, z)) / (n - m), so H_hat^{-1} g / (n - m) =
    (n Hess F - sum_U Hess f)^{-1} g; we solve that form (identical math). f includes lam/2||w||^2,
    so both the removed gradients and Hessians carry their regulariser share. w should be the
    un-perturbed ERM (fit_exact with b=None). ``hessian_all``: the stored n Hess F(w) (see
    ``stored_hessian``); only the removed points are then needed besides it. info has "w_bar".
    """
    w, X_all, y_all = _f64(w), _f64(X_all), check_pm1(y_all)
    idx = torch.as_tensor(remove_idx, dtype=torch.long).reshape(-1)
    n, m = X_all.shape[0], idx.numel()
    if m >= n:
        raise ValueError("cannot remove every point")
    if hessian_all is None:
        hessian_all = stored_hessian(w, X_all, y_all, lam)
    XU, yU = X_all[idx], y_all[idx]
    cols = []
    for k in range(_cols(w)):
        wk = _col(w, k, w)
        if m == 0:
            cols.append(wk.clone())
            continue
        ykU = _col(yU, k, w)
        H_keep = _col(hessian_all, k, w) - hessian_sum(wk, XU, ykU, lam)
        cols.append(wk + _solve_spd(H_keep, grad_sum(wk, XU, ykU, lam)))
    w_bar = _stack(cols, w)
    noise = torch.zeros_like(w_bar) if sigma == 0 else sigma * torch.randn(w_bar.shape, generator=generator, dtype=DTYPE)
    return w_bar + noise, {"w_bar": w_bar, "noise": noise, "n": n, "m": m}


# --------------------------------------------------------------------------------------------
# Neel et al.: Descent-to-Delete (perturbed projected gradient descent)


def d2d_contraction(m: float, M: float, lr: float | None = None) -> float:
    """Per-step contraction of projected GD on an m-strongly convex, M-smooth objective.

    lr = 2/(m+M) (default, Neel et al.'s choice) gives (M-m)/(M+m); any 0 < lr <= 2/(m+M) gives
    1 - lr m (standard co-coercivity argument; projection is non-expansive). Larger steps are
    refused: the contraction is not established for them.
    """
    lr = 2.0 / (m + M) if lr is None else lr
    if not 0 < lr <= 2.0 / (m + M) * (1 + 1e-12):
        raise ValueError(f"lr must lie in (0, 2/(m+M)] = (0, {2.0 / (m + M):.6g}]")
    return max(1.0 - lr * m, (M - m) / (M + m))


def d2d_sigma(L: float, m: float, M: float, n: int, steps: int, eps: float, delta: float,
              lr: float | None = None, columns: int = 1) -> float:
    """Noise of Descent-to-Delete after ``steps`` GD steps per update.

    sigma = 4 sqrt(2) L g^T / (m n (1 - g^T) (sqrt(ln(1/delta) + eps) - sqrt(ln(1/delta)))),
    g = ``d2d_contraction``. Neel, Roth, Sharifi-Malvajerdi 2021, Theorem 3.1 of arXiv:2007.02923
    (perturbed gradient descent, strongly convex case); checked against two public
    implementations (ChrisWaites/descent-to-delete ``compute_sigma``, which cites Theorem 3.1, and
    an author-style ``DescDel.set_Delta/set_sigma``: Delta = 8 L g^T/(m n (1-g^T)),
    sigma = Delta/sqrt(2)/(...)). The theorem number is from that citation, not the PDF.
    Pass the *current* (smallest) data set size as n: sigma grows as n shrinks, so this is the
    conservative reading for a deletion sequence. ``columns``: one-vs-rest columns, summed.
    """
    g = d2d_contraction(m, M, lr) ** steps
    denom = m * n * (1.0 - g) * (math.sqrt(math.log(1.0 / delta) + eps) - math.sqrt(math.log(1.0 / delta)))
    return columns * 4.0 * math.sqrt(2.0) * L * g / denom


def d2d_steps(target_sigma: float, L: float, m: float, M: float, n: int, eps: float, delta: float,
              lr: float | None = None, columns: int = 1) -> int:
    """Smallest number of GD steps per update whose ``d2d_sigma`` is <= target_sigma."""
    gamma = d2d_contraction(m, M, lr)
    if gamma == 0.0:
        return 1
    a = target_sigma * m * n * (math.sqrt(math.log(1.0 / delta) + eps) - math.sqrt(math.log(1.0 / delta)))
    a /= columns * 4.0 * math.sqrt(2.0) * L
    T = max(1, math.ceil(math.log(a / (1.0 + a)) / math.log(gamma)))
    while d2d_sigma(L, m, M, n, T, eps, delta, lr, columns) > target_sigma:  # guard float rounding
        T += 1
    while T > 1 and d2d_sigma(L, m, M, n, T - 1, eps, delta, lr, columns) <= target_sigma:
        T -= 1
    return T


def d2d_initial_steps(steps: int, L: float, m: float, M: float, n: int, radius: float, lr: float | None = None) -> int:
    """Steps for the initial training run: steps + log(D m n / (2 L)) / log(1/g), D = 2 radius.

    From Neel et al.'s Algorithm 1 (the first run must bring the iterate within the update
    sensitivity of the optimum; as in DescDel.set_start_grad_iter). Never fewer than ``steps``.
    """
    gamma = d2d_contraction(m, M, lr)
    extra = math.log(2.0 * radius * m * n / (2.0 * L)) / math.log(1.0 / gamma)
    return steps + max(0, math.ceil(extra))


def project_ball(w: Tensor, radius: float) -> Tensor:
    """Euclidean projection of each column onto {||w_k|| <= radius}."""
    norms = w.norm(dim=0, keepdim=w.dim() > 1)
    return w * (radius / norms.clamp_min(radius))


def projected_gd(w: Tensor, X: Tensor, y: Tensor, lam: float, steps: int, lr: float, radius: float,
                 b: Tensor | None = None) -> Tensor:
    """``steps`` projected GD steps on the mean objective F = L/n, per column (with b^T w / n when
    b is given: a fixed linear term, it changes neither smoothness nor strong convexity)."""
    w, X, y, b = _f64(w).clone(), _f64(X), check_pm1(y), _f64(b)
    n = X.shape[0]
    W, Y = _as2d(w), _as2d(y)  # all columns at once; the projection is per column
    B = None if b is None else _as2d(b)
    for _ in range(steps):
        G = X.T @ (-Y * torch.sigmoid(-Y * (X @ W))) + lam * n * W
        if B is not None:
            G = G + B
        W = project_ball(W - lr * G / n, radius)
    return W[:, 0] if w.dim() == 1 else W


def descent_to_delete(
    w: Tensor, X_keep: Tensor, y_keep: Tensor, lam: float, steps: int, lr: float | None, sigma: float,
    generator: torch.Generator | None = None, radius: float | None = None, b: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """One D2D update: ``steps`` projected GD steps from the current *secret* (un-noised) weights
    on the remaining data, then publish secret + N(0, sigma^2 I).

    Returns (secret, published); keep ``secret`` for the next update (Neel et al.'s Algorithm 1
    continues from the un-noised iterate). lr defaults to 2/(m+M) with the logistic constants;
    radius defaults to 1/lam (``logistic_constants``), which contains the minimiser; with a loss
    perturbation b (kept in the objective, as the original was fitted with it) pass a radius that
    contains the perturbed minimiser too (``d2d_radius``).
    """
    c = logistic_constants(lam, radius, x_norm=max(1.0, float(_f64(X_keep).norm(dim=1).max())))
    lr = 2.0 / (c.strong_convexity + c.smoothness) if lr is None else lr
    secret = projected_gd(w, X_keep, y_keep, lam, steps, lr, c.radius, b)
    noise = torch.zeros_like(secret) if sigma == 0 else sigma * torch.randn(secret.shape, generator=generator, dtype=DTYPE)
    return secret, secret + noise


def d2d_radius(lam: float, n: int, b: Tensor | None = None, x_norm: float = 1.0) -> float:
    """A ball that contains the minimiser of F = L/n with a loss perturbation b, for every column:
    lam ||w*|| = ||mean grad l + b/n|| <= x_norm + max_k ||b_k|| / n. Without b: x_norm / lam."""
    if b is None:
        return x_norm / lam
    b = _f64(b)
    bmax = float(b.norm()) if b.dim() == 1 else float(b.norm(dim=0).max())
    return (x_norm + bmax / n) / lam


# --------------------------------------------------------------------------------------------
# the "exact" training recipe (train.solver == "exact")


def exact_fit(model, x: Tensor, labels: Tensor, seed: int, tol: float = 1e-10, max_iter: int = 100) -> Tensor:
    """Fit a ``LogisticRegression`` exactly on (x, labels) with a fresh loss perturbation.

    b ~ N(0, model.sigma^2 I) from a torch.Generator seeded with ``seed`` (b = 0 when sigma = 0),
    then the exact float64 minimiser (damped Newton, ``fit_exact``) of the sum-form objective;
    weights and b are written into the model (b into its ``b`` buffer). Returns b.
    """
    gen = torch.Generator().manual_seed(int(seed))
    sigma = float(getattr(model, "sigma", 0.0))
    b = loss_perturbation(model.solver_shape, sigma, gen) if sigma > 0 else None
    with single_thread():
        model.fit(x.cpu(), labels.cpu(), b=b, tol=tol, max_iter=max_iter)
    return model.perturbation()


def fit_model_exact(model, data, part: str, train_cfg, seed: int) -> Tensor:
    """The ``solver: exact`` recipe of original / retrain cells (see cells.py).

    ``data``: a StudyData (or a MethodData); the part's images are normalised by the data
    pipeline, then the model flattens them and maps them into the unit ball. ``train_cfg`` may
    set ``tol`` (gradient-norm tolerance, default 1e-10) and ``max_iter`` (default 100). The
    minimiser is exact, so the recipe has no epochs, batches or optimiser. Returns b.
    """
    if hasattr(data, "tensors"):
        x, y = data.tensors(part)
    else:

        x, y = data.parts[part]
        x = normalise(x, data.mean, data.std)
    get = train_cfg.get if hasattr(train_cfg, "get") else (lambda k, d=None: d)
    return exact_fit(model, x, y, seed, tol=float(get("tol", 1e-10)), max_iter=int(get("max_iter", 100)))
