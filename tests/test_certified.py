"""Certified removal math (unlearnlab.certified, unlearnlab.models.logreg) on small convex problems.

Problems: synthetic n=200, d=20 (labels from a noisy linear teacher) and sklearn digits 3 vs 8
(64 features, unit-normalised). Everything float64; the exact minimiser from fit_exact is the
"retrain" reference throughout.
"""

import math
import time

import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression as SkLogReg

from unlearnlab.certified import (
    LOGISTIC_GAMMA, NewtonRemover, beta_budget, certificate_epsilon, d2d_contraction, d2d_initial_steps,
    d2d_sigma, d2d_steps, descent_to_delete, gradient_residual, logistic_constants, newton_removal,
    noisy_newton_removal, projected_gd, sekhari_sigma, stored_hessian,
)
from unlearnlab.models.logreg import (
    LogisticRegression, fit_exact, grad_sum, loss_perturbation, normalise_features, to_pm1,
)

F64 = torch.float64


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """These problems are tiny: intra-op threads only add contention (and noise to the timing)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def synth():
    g = _gen(0)
    n, d = 200, 20
    X = normalise_features(torch.randn(n, d, generator=g, dtype=F64))
    teacher = 3 * torch.randn(d, generator=g, dtype=F64)
    y = torch.where(X @ teacher + 0.3 * torch.randn(n, generator=g, dtype=F64) > 0, 1.0, -1.0).to(F64)
    return X, y


@pytest.fixture(scope="module")
def digits38():
    data = load_digits()
    mask = (data.target == 3) | (data.target == 8)
    X = normalise_features(torch.tensor(data.data[mask], dtype=F64))
    labels = torch.tensor((data.target[mask] == 8).astype(int))
    return X, labels


def _keep_mask(n, removed):
    keep = torch.ones(n, dtype=torch.bool)
    keep[torch.as_tensor(removed, dtype=torch.long)] = False
    return keep


# ------------------------------------------------------------------------------ fit_exact


@pytest.mark.parametrize("lam", [1e-3, 1e-2, 1e-1])
def test_fit_exact_synthetic_gradient_and_sklearn(synth, lam):
    X, y = synth
    b = loss_perturbation(X.shape[1], 1.0, _gen(1))
    w = fit_exact(X, y, lam, b)
    assert float(grad_sum(w, X, y, lam, b).norm()) < 1e-9
    # independent check without b: sklearn's C * sum(loss) + ||w||^2/2 has the same minimiser
    # as sum(loss) + lam n/2 ||w||^2 when C = 1/(lam n)
    w0 = fit_exact(X, y, lam)
    sk = SkLogReg(C=1.0 / (lam * X.shape[0]), fit_intercept=False, tol=1e-12, max_iter=10_000).fit(X.numpy(), y.numpy())
    assert float((w0 - torch.tensor(sk.coef_[0])).norm()) < 1e-5 * float(w0.norm())


def test_fit_exact_digits(digits38):
    X, labels = digits38
    y = to_pm1(labels, 2)
    b = loss_perturbation(X.shape[1], 1.0, _gen(2))
    w = fit_exact(X, y, 1e-3, b)
    assert float(grad_sum(w, X, y, 1e-3, b).norm()) < 1e-9
    assert float(((X @ w > 0).long() == labels).double().mean()) > 0.95


def test_fit_exact_rejects_01_labels(synth):
    X, y = synth
    with pytest.raises(ValueError):
        fit_exact(X, (y > 0).to(F64), 1e-2)


# ------------------------------------------------------------------------------ Newton removal


@pytest.mark.parametrize("lam,k", [(1e-2, 1), (1e-2, 5), (1e-1, 5)])
def test_newton_removal_lands_on_exact_minimiser(synth, lam, k):
    X, y = synth
    b = loss_perturbation(X.shape[1], 1.0, _gen(3))
    w = fit_exact(X, y, lam, b)
    keep = _keep_mask(X.shape[0], range(k))
    w_new, info = newton_removal(w, X[keep], y[keep], X[~keep], y[~keep], lam, b)
    w_exact = fit_exact(X[keep], y[keep], lam, b)
    moved = float((w - w_exact).norm())
    err = float((w_new - w_exact).norm())
    print(f"\n[newton lam={lam} k={k}] |w-w*'|={moved:.3e} |w_newton-w*'|={err:.3e} "
          f"residual={info['residual']:.3e} beta_inc={info['beta_inc']:.3e} |w*'|={float(w_exact.norm()):.3f}")
    assert err < 1e-3 * float(w_exact.norm())
    assert err < 0.05 * moved  # the step removes >95% of the change retraining makes
    # gradient residual on D' is tiny compared with the gradient before the step (= |Delta|)
    assert info["residual"] < 1e-2 * float(gradient_residual(w, X[keep], y[keep], lam, b).norm())
    assert info["residual"] <= info["beta_inc"]
    assert abs(info["residual"] - float(gradient_residual(w_new, X[keep], y[keep], lam, b).norm())) < 1e-12


def test_newton_removal_of_nothing_is_identity(synth):
    X, y = synth
    b = loss_perturbation(X.shape[1], 1.0, _gen(4))
    w = fit_exact(X, y, 1e-2, b)
    w_new, info = newton_removal(w, X, y, X[:0], y[:0], 1e-2, b)
    assert torch.equal(w_new, w) and w_new is not w
    assert info["beta_inc"] == 0.0
    rem = NewtonRemover(X, y, 1e-2, sigma=1.0, eps=1.0, delta=1e-4, w=w, b=b)
    before = rem.w.clone()
    rem.remove([])
    assert torch.equal(rem.w, before) and rem.history == [] and rem.num_retrains == 0


def test_bound_dominates_residual_every_step_digits(digits38):
    """Sequential single removals then batches: tracked beta >= actual residual after each."""
    X, labels = digits38
    y = to_pm1(labels, 2)
    order = torch.randperm(X.shape[0], generator=_gen(5))[:40]
    rem = NewtonRemover(X, y, lam=1e-3, sigma=1.0, eps=math.inf, delta=1e-4, generator=_gen(6))
    rem.remove(order[:20])
    rem.batch_size = 5
    rem.remove(order[20:])
    assert rem.num_retrains == 0 and len(rem.history) == 20 + 4
    for h in rem.history:  # h["residual"] is the actual ||grad L(w; D')|| right after that batch
        assert 0 < h["residual"] <= h["beta"], h
    final = float(gradient_residual(rem.w, X[rem.keep], y[rem.keep], rem.lam, rem.b).norm())
    assert final == pytest.approx(rem.history[-1]["residual"], rel=1e-12) and final <= rem.beta
    ratios = [h["beta"] / h["residual"] for h in rem.history]
    print(f"\n[digits 3v8] 40 removals: final beta={rem.beta:.4e}, residual={rem.history[-1]['residual']:.4e}, "
          f"beta/residual min={min(ratios):.1f}, eps(sigma=1, delta=1e-4)={rem.epsilon:.4e}")
    # still close to retraining after 40 removals
    w_exact = fit_exact(X[rem.keep], y[rem.keep], rem.lam, rem.b)
    assert float((rem.w - w_exact).norm()) < 1e-3 * float(w_exact.norm())


def test_budget_trigger_fires_exactly_when_next_removal_would_exceed(synth):
    X, y = synth
    lam, sigma, delta = 1e-2, 1.0, 1e-4
    b = loss_perturbation(X.shape[1], sigma, _gen(7))
    order = list(range(10, 30))
    probe = NewtonRemover(X, y, lam, sigma, eps=math.inf, delta=delta, b=b)
    probe.remove(order)
    betas = [probe.history[0]["beta"] - probe.history[0]["beta_inc"]] + [h["beta"] for h in probe.history]
    trigger = 12  # choose eps so the budget sits strictly between beta after 12 and after 13 removals
    budget = 0.5 * (betas[trigger] + betas[trigger + 1])
    c = math.sqrt(2 * math.log(1.5 / delta))
    eps = budget * c / sigma
    assert abs(beta_budget(eps, sigma, delta) - budget) < 1e-15 * budget
    rem = NewtonRemover(X, y, lam, sigma, eps=eps, delta=delta, b=b, generator=_gen(8))
    rem.remove(order[:trigger])
    assert rem.num_retrains == 0 and rem.beta == pytest.approx(betas[trigger], rel=1e-12)
    assert rem.epsilon <= eps
    rem.remove(order[trigger:])
    assert rem.retrain_at[0] == trigger and rem.history[trigger]["retrained"]
    assert not any(h["retrained"] for h in rem.history[:trigger])
    assert all(h["beta"] <= budget for h in rem.history)
    # after the retrain the model is the exact minimiser on the remaining data with a fresh b
    first_after = rem.history[trigger]
    assert first_after["residual"] < 1e-9 and first_after["beta"] < 1e-9
    assert not torch.equal(rem.b, b)


def test_batch_removal_matches_sum_of_deltas(synth):
    X, y = synth
    lam = 1e-2
    b = loss_perturbation(X.shape[1], 1.0, _gen(9))
    rem = NewtonRemover(X, y, lam, sigma=1.0, eps=math.inf, delta=1e-4, b=b, batch_size=4)
    rem.remove(range(8))
    assert len(rem.history) == 2 and rem.history[1]["position"] == 4
    w_exact = fit_exact(X[8:], y[8:], lam, b)
    assert float((rem.w - w_exact).norm()) < 1e-3 * float(w_exact.norm())
    assert rem.history[-1]["residual"] <= rem.beta


# ------------------------------------------------------------------------------ one-vs-rest


def test_one_vs_rest_three_classes():
    data = load_digits()
    mask = data.target < 3
    X = normalise_features(torch.tensor(data.data[mask], dtype=F64))
    labels = torch.tensor(data.target[mask])
    model = LogisticRegression(64, num_classes=3, lam=1e-3)
    y = model.targets(labels)
    assert y.shape == (X.shape[0], 3)
    b = loss_perturbation((64, 3), 1.0, _gen(10))
    model.fit(X, labels, b=b)
    W = model.weight_vector()
    assert W.shape == (64, 3)
    assert float(gradient_residual(W, X, y, 1e-3, b).max()) < 1e-9
    logits = model(X)
    assert logits.shape == (X.shape[0], 3)
    assert float((logits.argmax(1) == labels).double().mean()) > 0.97
    rem = NewtonRemover(X, y, 1e-3, sigma=1.0, eps=math.inf, delta=1e-4, w=W, b=b, batch_size=3)
    rem.remove(range(9))
    W_exact = fit_exact(X[9:], y[9:], 1e-3, b)
    assert float((rem.w - W_exact).norm()) < 1e-3 * float(W_exact.norm())
    per_class = gradient_residual(rem.w, X[9:], y[9:], 1e-3, b)
    assert float(per_class.norm()) <= float(per_class.sum()) <= rem.beta
    # composition: the bound is the sum of the per-class bounds
    _, info = newton_removal(W, X[1:], y[1:], X[:1], y[:1], 1e-3, b)
    assert info["beta_inc_per_class"].shape == (3,)
    assert info["beta_inc"] == pytest.approx(float(info["beta_inc_per_class"].sum()), rel=1e-14)


def test_binary_forward_softmax_is_sigmoid(digits38):
    X, labels = digits38
    model = LogisticRegression(64, num_classes=2, lam=1e-2).fit(X, labels)
    p = torch.softmax(model(X), dim=1)[:, 1]
    assert torch.allclose(p, torch.sigmoid(X @ model.weight_vector()), atol=1e-15, rtol=0)
    # forward normalises raw (unnormalised) images the same way as training
    raw = torch.tensor(load_digits().data[:5], dtype=F64)
    assert torch.allclose(model(raw), model(normalise_features(raw)), atol=1e-13, rtol=0)
    assert to_pm1(torch.tensor([0, 1, 1]), 2).tolist() == [-1.0, 1.0, 1.0]


# ------------------------------------------------------------------------------ noise formulas


def test_noise_scales_match_hand_computed_values():
    # Guo: c = sqrt(2 ln(1.5/1e-4)) = sqrt(2 * 9.615805480084347) = 4.385386067402584; eps = c*0.1/10
    assert certificate_epsilon(0.1, 10.0, 1e-4) == pytest.approx(0.04385386067402584, rel=1e-13)
    assert beta_budget(0.04385386067402584, 10.0, 1e-4) == pytest.approx(0.1, rel=1e-13)
    # Sekhari: gamma = 2*0.25*10^2*2^2/(0.1^3*1000^2) = 200/1000 = 0.2;
    # sigma = 0.2/0.5 * sqrt(2 ln(125000)) = 0.4 * 4.844805262605388 = 1.9379221050421551
    assert sekhari_sigma(0.25, 2.0, 0.1, 1000, 10, 0.5, 1e-5) == pytest.approx(1.9379221050421551, rel=1e-13)
    assert sekhari_sigma(0.25, 2.0, 0.1, 1000, 10, 0.5, 1e-5, columns=3) == pytest.approx(3 * 1.9379221050421551, rel=1e-13)
    # D2D: m=0.1, M=0.35 -> g=(0.35-0.1)/(0.35+0.1)=5/9; g^10=0.0028... ;
    # sigma = 4 sqrt2 * 2 * g^10 / (0.1*1000*(1-g^10)*(sqrt(ln 1e5 + 1) - sqrt(ln 1e5))) = 0.0022022076797039...
    assert d2d_contraction(0.1, 0.35) == pytest.approx(5 / 9, rel=1e-15)
    assert d2d_sigma(2.0, 0.1, 0.35, 1000, 10, 1.0, 1e-5) == pytest.approx(0.0022022076797039124, rel=1e-12)
    # steps: the smallest T with sigma(T) <= target
    T = d2d_steps(1e-3, 2.0, 0.1, 0.35, 1000, 1.0, 1e-5)
    assert d2d_sigma(2.0, 0.1, 0.35, 1000, T, 1.0, 1e-5) <= 1e-3 < d2d_sigma(2.0, 0.1, 0.35, 1000, T - 1, 1.0, 1e-5)
    # initial run: 10 + ceil(ln(2*10*0.1*1000/(2*2)) / ln(9/5)) = 10 + ceil(ln 500 / ln 1.8) = 10 + 11
    assert d2d_initial_steps(10, 2.0, 0.1, 0.35, 1000, radius=10.0) == 21
    with pytest.raises(ValueError):
        d2d_contraction(0.1, 0.35, lr=5.0)


def test_logistic_constants_are_valid_bounds():
    c = logistic_constants(0.1)
    assert (c.radius, c.lipschitz, c.smoothness, c.strong_convexity, c.hessian_lipschitz) == (10.0, 2.0, 0.35, 0.1, 0.25)
    z = torch.linspace(-20, 20, 200_001, dtype=F64)
    s = torch.sigmoid(z)
    assert float((s * (1 - s) * (1 - 2 * s)).abs().max()) <= LOGISTIC_GAMMA  # |l'''| <= M = gamma
    assert float((s * (1 - s)).max()) <= 0.25  # l'' <= 1/4 (smoothness)
    # Lipschitz: per-example gradient norms on the ball of radius 1/lam, ||x|| = 1
    g = _gen(11)
    X = normalise_features(torch.randn(500, 10, generator=g, dtype=F64))
    W = torch.randn(10, 500, generator=g, dtype=F64)
    W = W / W.norm(dim=0) * c.radius
    for i in range(0, 500, 50):
        for j in range(0, 500, 50):
            gij = grad_sum(W[:, j], X[i:i + 1], torch.ones(1, dtype=F64), 0.1)
            assert float(gij.norm()) <= c.lipschitz + 1e-12


# ------------------------------------------------------------------------------ Sekhari, D2D


def test_noisy_newton_equals_guo_step_without_noise(synth):
    X, y = synth
    lam = 1e-2
    w = fit_exact(X, y, lam)
    idx = [3, 17, 42]
    H_all = stored_hessian(w, X, y, lam)
    w_tilde, info = noisy_newton_removal(w, X, y, idx, lam, sigma=0.0, hessian_all=H_all)
    keep = _keep_mask(X.shape[0], idx)
    w_guo, _ = newton_removal(w, X[keep], y[keep], X[~keep], y[~keep], lam)
    assert torch.equal(w_tilde, info["w_bar"])
    assert float((w_tilde - w_guo).norm()) < 1e-12 * float(w.norm())
    w_exact = fit_exact(X[keep], y[keep], lam)
    assert float((w_tilde - w_exact).norm()) < 1e-3 * float(w_exact.norm())
    # the guarantee's premise: ||w_bar - w*'|| <= gamma = 2 M m^2 L^2 / (lam^3 n^2)
    c = logistic_constants(lam)
    gamma = 2 * c.hessian_lipschitz * len(idx) ** 2 * c.lipschitz ** 2 / (lam ** 3 * X.shape[0] ** 2)
    assert float((w_tilde - w_exact).norm()) <= gamma
    # noise: N(0, sigma^2 I) on top of w_bar, reproducible with the generator
    a, _ = noisy_newton_removal(w, X, y, idx, lam, sigma=0.5, generator=_gen(12))
    b, _ = noisy_newton_removal(w, X, y, idx, lam, sigma=0.5, generator=_gen(12))
    assert torch.equal(a, b) and not torch.equal(a, w_tilde)
    same, _ = noisy_newton_removal(w, X, y, [], lam, sigma=0.0)
    assert torch.equal(same, w)


def test_descent_to_delete_contracts_towards_retrain(synth):
    X, y = synth
    lam = 1e-1
    c = logistic_constants(lam)
    w = projected_gd(torch.zeros(X.shape[1], dtype=F64), X, y, lam, 500, 2 / (c.smoothness + lam), c.radius)
    keep = _keep_mask(X.shape[0], range(5))
    w_star = fit_exact(X[keep], y[keep], lam)
    T = 20
    secret, published = descent_to_delete(w, X[keep], y[keep], lam, T, None, sigma=0.0)
    assert torch.equal(secret, published)
    rate = d2d_contraction(lam, c.smoothness)
    assert float((secret - w_star).norm()) <= rate ** T * float((w - w_star).norm()) * (1 + 1e-9)
    sigma = d2d_sigma(c.lipschitz, lam, c.smoothness, int(keep.sum()), T, 1.0, 1e-5)
    s1, p1 = descent_to_delete(w, X[keep], y[keep], lam, T, None, sigma, generator=_gen(13))
    assert torch.equal(s1, secret)
    assert float((p1 - s1).norm()) > 0 and (p1 - s1).std().item() == pytest.approx(sigma, rel=0.6)


# ------------------------------------------------------------------------------ cost


def test_report_removal_to_retrain_time_ratio(digits38):
    X, labels = digits38
    y = to_pm1(labels, 2)
    lam = 1e-3
    b = loss_perturbation(X.shape[1], 1.0, _gen(14))
    w = fit_exact(X, y, lam, b)
    keep = _keep_mask(X.shape[0], [0])
    reps = 20
    t0 = time.perf_counter()
    for _ in range(reps):
        fit_exact(X[keep], y[keep], lam, b)
    t_fit = (time.perf_counter() - t0) / reps
    t0 = time.perf_counter()
    for _ in range(reps):
        newton_removal(w, X[keep], y[keep], X[~keep], y[~keep], lam, b)
    t_rem = (time.perf_counter() - t0) / reps
    print(f"\n[time digits 3v8 n={X.shape[0]} d=64] fit_exact {t_fit * 1e3:.2f} ms, newton_removal "
          f"{t_rem * 1e3:.2f} ms, ratio removal/retrain = {t_rem / t_fit:.3f}")
