"""Planted leaks with a computed true ε: where does the audit start to say "violated"?

The mechanism is newton (Guo et al. 2020) on digits' L2-regularised logistic regression, every cell
drawing its own loss perturbation b and refitting its original (the certified mechanism), against
loss-perturbed exact retraining. The leak: b drawn with σ = 10/k while the certificate is computed
for σ = 10. Its true ε: a Newton removal lands on the exact minimiser of L(D∖F) + (b − g)ᵀw, g its
gradient residual, and retraining on that of L(D∖F) + bᵀw; the weights are a bijective function of
the perturbation, so the two are a Gaussian mechanism whose means are μ = ‖g‖/σ standard
deviations apart (exact when g does not depend on b; its spread over the cells is printed beside
each row: 8% of its mean at k = 1, under 10⁻⁵ from k = 100 on): true ε(δ) =
lower_bound.gaussian_epsilon(μ, δ).

    python tests/planted_leak.py                       # the README's table (~10 min on 2 busy cores)
    python tests/planted_leak.py --k 1 10000 --n 16    # a quick look

Each leak size trains max(n) newton cells and as many exact retrains once; smaller N audit their
first N. tests/test_certified_methods.py runs the same mechanism at N = 16.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

LAM, SIGMA, DELTA = 0.01, 10.0, 1e-4  # certified_digits' λ and σ, the certificates' δ


def small_problem(digits_data, k: int):
    """digits with the first k forget examples as the forget set; train = retain + those k."""
    from unlearnlab.data import StudyData

    parts = dict(digits_data.parts)
    xf, yf = parts["forget"][0][:k], parts["forget"][1][:k]
    xr, yr = parts["retain"]
    parts.update(forget=(xf, yf), train=(torch.cat([xr, xf]), torch.cat([yr, yf])))
    return StudyData(digits_data.source, digits_data.split, digits_data.device, parts)


@dataclass
class Leak:
    """n newton cells and n exact retrains at loss-perturbation σ, as the audit sees them."""

    sigma: float
    retrain: object  # ModelOutputs (forget logits + weights)
    unlearn: object
    labels: dict
    residual: float  # mean ‖g‖ over the newton cells
    residual_spread: float  # its standard deviation
    certificate: float  # what newton certifies when σ is taken to be SIGMA (the largest β of the cells)

    @property
    def mu(self) -> float:
        return self.residual / self.sigma

    def true_epsilon(self, delta: float = DELTA) -> float:
        from unlearnlab.audits.lower_bound import gaussian_epsilon

        return gaussian_epsilon(self.mu, delta)

    def first(self, n: int) -> tuple:
        """AuditInput of the first n models per side."""
        from unlearnlab.audits.base import AuditInput, ModelOutputs

        def cut(o):
            return ModelOutputs(o.forget[:n], o.test[:n], o.retain[:n], weights=o.weights[:n])

        return AuditInput(self.labels, cut(self.retrain), cut(self.unlearn))


def newton_leak(data, n: int, sigma: float) -> Leak:
    from unlearnlab.audits.base import ModelOutputs
    from unlearnlab.certified import certificate_epsilon
    from unlearnlab.methods.base import MethodData
    from unlearnlab.methods.newton import ExactRetrain, Newton
    from unlearnlab.models.logreg import LogisticRegression

    x, y = MethodData(data, frozenset({"forget"}), 0, "t").tensors("forget")
    unlearned, retrained, residual, beta = [], [], [], []
    for i in range(n):
        model = LogisticRegression(1, 10, 8, lam=LAM, sigma=sigma)
        method = Newton(model=model, data=MethodData(data, Newton.reads, 1000 + i, "newton"), epsilon=math.inf,
                        delta=DELTA, resample_original=True)
        method.run(None)
        unlearned.append(model)
        residual.append(method.cell_metrics()["cert/residual"])
        beta.append(method.remover.beta)
        ref = LogisticRegression(1, 10, 8, lam=LAM, sigma=sigma)
        ExactRetrain(model=ref, data=MethodData(data, ExactRetrain.reads, 5000 + i, "retrain")).run(None)
        retrained.append(ref)

    def outputs(models) -> ModelOutputs:
        with torch.no_grad():
            logits = np.stack([m(x).double().numpy() for m in models])
        weights = np.stack([m.weight.detach().double().numpy().ravel() for m in models])  # not b: the secret noise
        empty = np.zeros((len(models), 0, logits.shape[-1]))
        return ModelOutputs(logits, empty, empty, weights=weights)

    labels = {"forget": y.numpy(), "test": np.zeros(0, int), "retain": np.zeros(0, int)}
    return Leak(sigma, outputs(retrained), outputs(unlearned), labels, float(np.mean(residual)),
                float(np.std(residual)), certificate_epsilon(max(beta), SIGMA, DELTA))


def audit(leak: Leak, n: int) -> dict:
    """The lower_bound audit at the certificates' δ on the first n models, and the verdict."""
    from unlearnlab.audits.lower_bound import LowerBoundAudit, certificate_verdict, gaussian_error, power_at_error

    out = LowerBoundAudit(delta=DELTA)(leak.first(n))
    verdict = certificate_verdict(out["audit/eps_lb"], out["audit/eps_lb_max"], leak.certificate, n, delta=DELTA)
    known = power_at_error(gaussian_error(leak.mu), leak.certificate, n, DELTA)
    return {**out, "verdict": verdict.verdict, "known_power": known}


def main(argv: list[str] | None = None) -> None:
    from omegaconf import OmegaConf

    from conftest import DIGITS, RANDOM10
    from unlearnlab.data import load_study_data

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", type=float, nargs="+", default=[1, 100, 1000, 3000, 10000, 30000],
                        help="leak sizes: the loss perturbation is SIGMA / k")
    parser.add_argument("--n", type=int, nargs="+", default=[16, 32, 64], help="models per side")
    parser.add_argument("--removals", type=int, default=20, help="forget examples removed (20: certificate ≈ 0.37)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    data = small_problem(load_study_data(OmegaConf.create(DIGITS), OmegaConf.create(RANDOM10)), args.removals)
    ns = sorted(args.n)
    print(f"newton, digits logreg one-vs-rest, λ = {LAM}, {args.removals} removals, certificate computed for "
          f"σ = {SIGMA}, δ = {DELTA}; the leak draws b with σ = {SIGMA}/k\n")
    head = "| k (σ = 10/k) | μ = ‖g‖/σ | true ε | certificate | " + " | ".join(f"N = {n}" for n in ns) + " |"
    print(head)
    print("|" + "---:|" * 4 + "---|" * len(ns))
    for k in args.k:
        start = time.perf_counter()
        leak = newton_leak(data, ns[-1], SIGMA / k)
        cells = []
        for n in ns:
            a = audit(leak, n)
            cells.append(f"{a['verdict']}: ε_lb {a['audit/eps_lb']:.2f} ({a['audit/eps_lb_statistic']}); "
                         f"known-mechanism power {100 * a['known_power']:.0f}%")
        print(f"| {k:g} | {leak.mu:.3g} | {leak.true_epsilon():.3g} | {leak.certificate:.2f} | " + " | ".join(cells)
              + " |", flush=True)
        seconds = time.perf_counter() - start
        print(f"<!-- k = {k:g}: {2 * ns[-1]} cells in {seconds:.0f} s; ‖g‖ {leak.residual:.3g} ± "
              f"{leak.residual_spread:.2g} -->", flush=True)


if __name__ == "__main__":
    main()
