"""Loss-free (label-free) Selective Synaptic Dampening (LFSSD; Foster, Schoepf, Brintrup 2024,
"Loss-Free Machine Unlearning", ICLR Tiny Papers): SSD with importances that need no labels.

Checked against: the paper's abstract (the Fisher diagonal replaced by "the gradient of the l2
norm of the model output", as in Memory Aware Synapses) and the authors' label-free importance in
if-loops/towards_poison_unlearning src/utils.py (ParameterPerturber.calc_importance with
label_free=True, x_D=False: loss = mean over the batch of ‖f(x)‖₂², "actual one"; importance +=
|gradient|, averaged over batches). The paper's own repository is not public here.

Everything else is SSD's (ssd.py): eval mode, batches of `batch_size`, I_f on forget and I_D on
retain then forget, and θ ← θ·min(λ·I_D/I_f, 1) where I_f > α·I_D. Labels are never read.
Hyperparameters: α = 10, λ = 1 are SSD's random-forgetting values (forget_random_main.py); the LF
paper's own values could not be checked here.
Known deviations: none known beyond the unchecked α, λ.
"""

from __future__ import annotations

import torch

from unlearnlab.methods.ssd import SSD


class LFSSD(SSD):
    def importance_loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        del y  # label-free
        return logits.pow(2).sum(dim=1).mean()

    def accumulate(self, grad: torch.Tensor) -> torch.Tensor:
        return grad.abs()
