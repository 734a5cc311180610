"""Influence unlearning with a WoodFisher inverse-Hessian (IU; Izzo et al. 2021 / Koh & Liang
2017, in the WoodFisher form of Singh & Alistarh 2020), as SalUn's and Unlearn-Sparse's `wfisher`
baseline: no training — one Newton-like step that removes the forget set's influence.

Checked against: OPTML-Group/Unlearn-Saliency Classification/unlearn/Wfisher.py (Wfisher,
woodfisher, sam_grad, apply_perturb; the same in OPTML-Group/Unlearn-Sparse unlearn/Wfisher.py,
whose README runs IU as `--unlearn wfisher --alpha ${alpha}`; arg_parser.py: alpha 0.2, batch
256), and xcadet/deepunlearn munl/unlearning/iu.py (the same code, alpha 0.2).

run (no Trainer fit), the model in eval mode, every parameter in one flat vector:
  1. G_f = Σ over forget batches of (mean CE gradient × batch size), G_r the same over retain,
     unshuffled batches of `batch_size`; with n_f, n_r the set sizes,
     v = G_f/(n_f + n_r) − G_r·n_f/((n_f + n_r)·n_r).
  2. WoodFisher (the source's loop, over retain one example at a time, unshuffled, N =
     `n_samples`): k = v, o = g₁; for each later example's gradient g: t = o·g,
     k ← k − (k·g / (N + t))·o, o ← o − (t / (N + t))·o; it stops after example N + 2.
  3. θ ← θ + `alpha`·k.
Known deviations: none (the recursion is the source's, including its update of o, which is not
the textbook WoodFisher rank-one update).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from unlearnlab.errors import ConfigError
from unlearnlab.methods.base import UnlearningMethod


class WFisher(UnlearningMethod):
    reads: ClassVar[frozenset[str]] = frozenset({"forget", "retain"})
    trains: ClassVar[bool] = False

    def __init__(self, model, data, alpha: float = 0.2, n_samples: int = 1000, **hparams) -> None:
        super().__init__(model, data, **{**hparams, "epochs": 0})
        if n_samples < 1:
            raise ConfigError(f"method.n_samples={n_samples} must be ≥ 1")
        self.alpha, self.n_samples = float(alpha), int(n_samples)
        self.direction: torch.Tensor | None = None  # k, before scaling by alpha
        self.examples_used = 0

    def flat_grad(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        params = [p for p in self.model.parameters() if p.requires_grad]
        grads = torch.autograd.grad(F.cross_entropy(self.model(x), y), params)
        return torch.cat([g.reshape(-1) for g in grads])

    def summed_grad(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        total = None
        for start in range(0, len(y), self.batch_size):
            xb, yb = x[start : start + self.batch_size], y[start : start + self.batch_size]
            g = self.flat_grad(xb, yb) * len(yb)
            total = g if total is None else total + g
        return total

    def woodfisher(self, v: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        n = float(self.n_samples)
        k, o = v.clone(), None
        for i in range(len(y)):
            g = self.flat_grad(x[i : i + 1], y[i : i + 1])
            self.examples_used = i + 1
            if o is None:
                o = g.clone()
            else:
                t = torch.dot(o, g)
                k -= (torch.dot(k, g) / (n + t)) * o
                o -= (t / (n + t)) * o
            if i > self.n_samples:
                break
        return k

    def run(self, make_trainer) -> None:
        del make_trainer  # no Trainer: the weights change in closed form
        xf, yf = self.data.tensors("forget")
        xr, yr = self.data.tensors("retain")
        self.model.to(yf.device).eval()
        n_f, n_r = len(yf), len(yr)
        v = self.summed_grad(xf, yf) / (n_f + n_r) - self.summed_grad(xr, yr) * (n_f / ((n_f + n_r) * n_r))
        self.direction = self.woodfisher(v, xr, yr)
        with torch.no_grad():
            offset = 0
            for p in self.model.parameters():
                if p.requires_grad:
                    p.add_(self.alpha * self.direction[offset : offset + p.numel()].view_as(p))
                    offset += p.numel()
