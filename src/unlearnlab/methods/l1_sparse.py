"""ℓ1-sparse unlearning (Jia et al. 2023, "Model Sparsity Can Simplify Machine Unlearning";
OPTML-Group/Unlearn-Sparse, FT_l1 in optim/unlearn/FT.py): fine-tune on retain with
CE + α_t‖θ‖₁, where α_t = α·(1 − epoch/epochs) decays linearly to 0 over the epochs (the
source's schedule, per epoch, no_l1_epochs = 0); ‖θ‖₁ sums every parameter."""

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
