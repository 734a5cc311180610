"""SalUn (Fan et al. 2024, "SalUn: Empowering Machine Unlearning via Gradient-based Weight
Saliency").

Checked against: OPTML-Group/Unlearn-Saliency Classification/generate_mask.py
(save_gradient_ratio) and Classification/unlearn/RL.py (masked random-label unlearning,
_apply_mask_to_grads, _restore_masked_params).

1. Saliency mask (before_fit, no gradient step): g = Σ over forget batches of ∇θ mean CE at the
   original weights (eval mode, one shuffled pass in batches of `batch_size`, with the forget
   loader's augmentation: the source's marked loader keeps CIFAR's train transform, so
   salun_cifar10 computes its mask on crop + flip images too); the mask keeps the top
   `mask_fraction` of |g| over *all* parameters pooled together (the source's hard mask 0.5).
2. Random-label unlearning (random_label.py: forget with random labels, then retain) that
   updates only masked weights: the gradients of masked-out weights are zeroed before each
   step, and after each step they are restored to their original values and their optimizer
   state (momentum) is cleared — weight decay inside the step cannot move them either.
   Masked-out parameters therefore end exactly where they started (BatchNorm running
   statistics are buffers, not weights, and do update, as in the source).
Known deviations: none (the source's −CE sign for the mask does not change |g|)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from unlearnlab.errors import ConfigError
from unlearnlab.methods.random_label import RandomLabel


class SalUn(RandomLabel):
    code_version = 2  # 2: the mask from one shuffled, augmented pass of the forget loader (issue 22)

    def __init__(self, model, data, mask_fraction: float = 0.5, **hparams) -> None:
        super().__init__(model, data, **hparams)
        if not 0.0 < float(mask_fraction) <= 1.0:
            raise ConfigError(f"method.mask_fraction={mask_fraction} must be in (0, 1]")
        self.mask_fraction = float(mask_fraction)
        self.mask: dict[str, torch.Tensor] | None = None
        self._theta0: dict[str, torch.Tensor] = {}

    # -- 1. the mask ------------------------------------------------------------------------
    def saliency_mask(self) -> dict[str, torch.Tensor]:
        params = dict(self.model.named_parameters())
        was_training = self.model.training
        self.model.eval()
        self.model.zero_grad(set_to_none=True)
        with torch.enable_grad():
            # one shuffled pass of the forget loader, augmented as the unlearning passes are
            for xb, yb in self.data.batches("forget", self.batch_size, augment=self.augment, seed_offset=2):
                F.cross_entropy(self.model(xb.to(self.device)), yb.to(self.device)).backward()
        self.model.train(was_training)
        grads = {n: (p.grad.abs() if p.grad is not None else torch.zeros_like(p)) for n, p in params.items()}
        self.model.zero_grad(set_to_none=True)
        flat = torch.cat([g.flatten() for g in grads.values()])
        k = int(round(self.mask_fraction * flat.numel()))
        keep = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
        keep[torch.topk(flat, k, sorted=False).indices] = True
        mask, start = {}, 0
        for name, g in grads.items():
            mask[name] = keep[start : start + g.numel()].view_as(g)
            start += g.numel()
        return mask

    def before_fit(self) -> None:
        if self.mask is None:
            self.mask = self.saliency_mask()
            self._theta0 = {n: p.detach().clone() for n, p in self.model.named_parameters()}

    # -- 2. masked updates ------------------------------------------------------------------
    def on_before_optimizer_step(self, optimizer) -> None:
        for name, p in self.model.named_parameters():
            if p.grad is not None:
                p.grad.mul_(self.mask[name])

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None) -> None:
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        with torch.no_grad():
            for name, p in self.model.named_parameters():
                m = self.mask[name]
                p.copy_(torch.where(m, p, self._theta0[name]))
                for value in optimizer.state.get(p, {}).values():
                    if torch.is_tensor(value) and value.shape == p.shape:
                        value.mul_(m)
