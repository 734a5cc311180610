"""ℓ1-sparse unlearning (Jia et al. 2023, "Model Sparsity Can Simplify Machine Unlearning").

Checked against: OPTML-Group/Unlearn-Sparse unlearn/FT.py (FT_iter with_l1, l1_regularization)
and README.MD (FT: unlearn_lr 0.01, 10 epochs).

Fine-tune on retain with CE + α_t‖θ‖₁, where α_t = α·(1 − epoch/epochs) decays linearly to 0
over the epochs (the source's schedule, per epoch, no_l1_epochs = 0); ‖θ‖₁ sums |p| over every
parameter (torch.linalg.norm(cat, ord=1) in the source).
Known deviations: none in the algorithm; α = 5e-4 is the paper's value — the repository's
scripts pass --alpha per run, so the default is not checked against code."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from unlearnlab.methods.finetune import Finetune


def l1_norm(model: torch.nn.Module) -> torch.Tensor:
    return sum(p.abs().sum() for p in model.parameters())


class L1Sparse(Finetune):
    def __init__(self, model, data, alpha: float = 5e-4, **hparams) -> None:
        super().__init__(model, data, **hparams)
        self.alpha = float(alpha)

    def training_step(self, batch, batch_idx):
        x, y = batch
        ce = F.cross_entropy(self.model(x), y)
        alpha_t = self.alpha * (1 - self.current_epoch / max(1, self.epochs))
        l1 = l1_norm(self.model)
        loss = ce + alpha_t * l1
        self.track(loss=loss, ce_retain=ce, l1=l1)
        return loss
