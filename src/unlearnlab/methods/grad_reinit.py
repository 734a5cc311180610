"""NeurIPS 2023 unlearning challenge, 2nd place: re-initialise the conv weights
where the retain and forget gradients nearly cancel, then retrain on retain with the untouched
weights slowed down.

Checked against: xcadet/deepunlearn munl/unlearning/kgltop2.py (KGLTop2: get_grads_for_snip,
re_init_model_snip_ver2_little_grad, MaskConv2d, LinearAnnealingLR).

Sequence (run):
  1. scoring (no fit): on a seeded retain sample as large as the forget set, in batches of 64,
     backpropagate mean CE per batch; then on the forget set, in batches of `batch_size`,
     backpropagate −mean CE per batch; the gradients accumulate (retain gradient minus forget
     gradient). As in the source the model is in train mode here (BatchNorm normalises with
     batch statistics and updates its running statistics).
  2. in every Conv2d separately, the round(`init_rate`·numel) individual weights with the
     smallest |accumulated gradient| get fresh kaiming-normal values (fan_out, relu); all other
     weights keep theirs.
  3. phase "retrain", `epochs` epochs of CE on retain (SGD lr, momentum, weight decay); the
     learning rate steps per epoch by the source's LinearAnnealingLR (5 epochs: ⅓, ⅔, 1, ⅔, ⅓ ×
     lr); the loss gradient of every conv weight that was not re-initialised is multiplied by
     `keep_grad_scale` (0.1) — the source's MaskConv2d backward mask; weight decay is added by
     the optimiser afterwards, unscaled, as there.
Known deviations: none in the algorithm. (A conv bias, absent in the models here, would be
reset entirely by the source's fresh MaskConv2d; here biases are left alone.)
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from unlearnlab.methods.helpers import TensorBatches, generator
from unlearnlab.methods.finetune import Finetune
from unlearnlab.training import OptimSettings


def warmup_linear(epochs: int):
    """Per-epoch factor of the source's LinearAnnealingLR (annealing steps (epochs+1)//2, total
    epochs+1): linear warm-up, then linear decay."""
    warm, total = (epochs + 1) // 2, epochs + 1

    def factor(e: int) -> float:
        s = e + 1
        return s / warm if s <= warm else max(0.0, (total - s) / max(1, total - warm))

    return factor


class GradReinit(Finetune):
    reads: ClassVar[frozenset[str]] = frozenset({"forget", "retain"})
    model_kinds: ClassVar[frozenset[str]] = frozenset({"network"})  # it re-initialises conv weights, which a logistic regression has none of

    def __init__(self, model, data, init_rate: float = 0.3, keep_grad_scale: float = 0.1,
                 score_batch_size: int = 64, **hparams) -> None:
        super().__init__(model, data, **hparams)
        self.init_rate, self.keep_grad_scale = float(init_rate), float(keep_grad_scale)
        self.score_batch_size = int(score_batch_size)
        self.reinit_masks: dict[str, torch.Tensor] = {}  # conv name -> bool mask over its weights
        self._grad_scales: list[tuple[nn.Parameter, torch.Tensor]] = []

    # -- non-gradient work -------------------------------------------------------------------
    def accumulate_scores(self) -> None:
        """Leave retain-minus-forget gradients in every parameter's .grad (the source's
        get_grads_for_snip): per-batch mean CE, summed over batches."""
        xf, yf = self.data.tensors("forget")
        xr, yr = self.data.tensors("retain")
        pick = torch.randperm(len(yr), generator=generator(self.data.seed + 7))[: len(yf)].to(yr.device)
        retain = TensorBatches((xr[pick], yr[pick]), self.score_batch_size, self.data.seed + 8)
        forget = TensorBatches((xf, yf), self.batch_size, self.data.seed + 9)
        self.model.to(yf.device).train()
        self.model.zero_grad(set_to_none=True)
        for batches, sign in ((retain, 1.0), (forget, -1.0)):
            for x, y in batches:
                (sign * F.cross_entropy(self.model(x), y)).backward()

    @torch.no_grad()
    def reinit(self) -> None:
        gen = generator(self.data.seed + 11)
        for name, m in self.model.named_modules():
            if not isinstance(m, nn.Conv2d):
                continue
            g = m.weight.grad if m.weight.grad is not None else torch.zeros_like(m.weight)
            k = int(round(self.init_rate * m.weight.numel()))
            mask = torch.zeros(m.weight.numel(), dtype=torch.bool, device=m.weight.device)
            if k > 0:
                mask[torch.topk(-g.abs().flatten(), k).indices] = True
            mask = mask.view_as(m.weight)
            fresh = torch.empty(m.weight.shape)
            nn.init.kaiming_normal_(fresh, mode="fan_out", nonlinearity="relu", generator=gen)
            m.weight[mask] = fresh.to(m.weight.device, m.weight.dtype)[mask]
            self.reinit_masks[name] = mask.cpu()
            scale = torch.where(mask, 1.0, self.keep_grad_scale).to(m.weight.dtype)
            self._grad_scales.append((m.weight, scale))
        self.model.zero_grad(set_to_none=True)

    def run(self, make_trainer) -> None:
        self.accumulate_scores()
        self.reinit()
        self.phase = "retrain"
        if self.epochs > 0:
            make_trainer(max_epochs=self.epochs, phase=self.phase).fit(self)

    # -- the fit -----------------------------------------------------------------------------
    # train_dataloader / training_step: Finetune's (CE on retain)

    def on_before_optimizer_step(self, optimizer) -> None:
        for param, scale in self._grad_scales:
            if param.grad is not None:
                param.grad.mul_(scale.to(param.grad.device))

    def configure_optimizers(self):
        o = self.optim
        opt = OptimSettings(o.optimizer, o.lr, o.momentum, o.weight_decay, "none").build(self.model.parameters(), None, None)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_linear(self.epochs))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
