"""Fisher forgetting (Golatkar, Achille, Soatto 2020, "Eternal Sunshine of the Spotless Net"),
as the FF baseline of Unlearn-Sparse and SalUn runs it: no training — add Gaussian noise to every
weight, scaled by the inverse of its Fisher information on the retain set.

Checked against: OPTML-Group/Unlearn-Saliency Classification/unlearn/fisher.py (`fisher_new`,
`hessian`, `get_mean_var`; identical in OPTML-Group/Unlearn-Sparse unlearn/fisher.py, whose
README runs FF as `--unlearn fisher_new --alpha ${alpha}`; arg_parser.py: alpha default 0.2),
and xcadet/deepunlearn munl/unlearning/fisher.py (FisherForgetting: the same fisher_new, alpha
0.2 "from Unlearn-Sparse arg_parser.py").

run (no Trainer fit), the model in eval mode:
  1. Fisher diagonal on retain (the source's `hessian`): in unshuffled batches of 32, for every
     class c, g = ∇θ mean CE(f(x), c) and F += mean_batch(p(c|x))·g²; then F /= #batches.
  2. per parameter tensor: var = min(1/(F + 1e-8), 1e3) — and at most 1e2 for a tensor whose
     first dimension is the number of classes (the classifier) — times `alpha`; a tensor of
     more than one dimension takes, per output unit, the mean of var over its second dimension;
     var ×10 for the classifier's tensors and for every other 1-d tensor (BatchNorm weights and
     biases, biases). Then θ ← θ + sqrt(var)·N(0, 1), the noise drawn from the cell seed.
The source's extra branch for class-wise forgetting on CIFAR (zeroing the forgotten class's
classifier row when exactly 4,500 / 450 examples are removed) applies to no split here.
Known deviations: none.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from unlearnlab.errors import ConfigError
from unlearnlab.methods.base import UnlearningMethod
from unlearnlab.methods.helpers import generator


class Fisher(UnlearningMethod):
    reads: ClassVar[frozenset[str]] = frozenset({"retain"})
    trains: ClassVar[bool] = False

    def __init__(self, model, data, alpha: float = 0.2, **hparams) -> None:
        super().__init__(model, data, **{**hparams, "epochs": 0})
        if alpha < 0:
            raise ConfigError(f"method.alpha={alpha} must be ≥ 0")
        self.alpha = float(alpha)
        self.fisher: dict[str, torch.Tensor] = {}
        self.variance: dict[str, torch.Tensor] = {}

    def fisher_diagonal(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        params = dict(self.model.named_parameters())
        acc = {n: torch.zeros_like(p) for n, p in params.items()}
        n_batches = 0
        for start in range(0, len(y), self.batch_size):
            out = self.model(x[start : start + self.batch_size])
            prob = F.softmax(out, dim=-1).detach()
            for c in range(out.shape[1]):
                target = torch.full((out.shape[0],), c, dtype=torch.long, device=out.device)
                grads = torch.autograd.grad(F.cross_entropy(out, target), list(params.values()), retain_graph=True)
                for (n, _), g in zip(params.items(), grads):
                    acc[n] += prob[:, c].mean() * g.pow(2)
            n_batches += 1
        return {n: a / max(1, n_batches) for n, a in acc.items()}

    def noise_variance(self, name: str, p: torch.Tensor) -> torch.Tensor:
        classes = self.data.num_classes
        var = (1.0 / (self.fisher[name] + 1e-8)).clamp(max=1e3)
        if p.shape[0] == classes:
            var = var.clamp(max=1e2)
        var = self.alpha * var
        if p.ndim > 1:
            var = var.mean(dim=1, keepdim=True).expand_as(p).clone()
        if p.shape[0] == classes or p.ndim == 1:
            var = var * 10
        return var

    def run(self, make_trainer) -> None:
        del make_trainer  # no Trainer: the weights change in closed form
        x, y = self.data.tensors("retain")
        self.model.to(y.device).eval()
        self.fisher = self.fisher_diagonal(x, y)
        gen = generator(self.data.seed, y.device)
        with torch.no_grad():
            for name, p in self.model.named_parameters():
                self.variance[name] = self.noise_variance(name, p)
                noise = torch.randn(p.shape, generator=gen, device=p.device, dtype=p.dtype)
                p.add_(self.variance[name].sqrt() * noise)
