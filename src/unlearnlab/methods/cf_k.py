"""Catastrophic forgetting of the last k blocks (CF-k; Goel, Prabhu, Sanyal, Lim, Torr,
Kumaraguru 2022, "Towards Adversarial Evaluation for Inexact Machine Unlearning"): freeze all but
the last k blocks and the classifier, fine-tune those on retain.

Checked against: xcadet/deepunlearn munl/unlearning/catastrophic_forgetting_k.py
(CatastrophicForgettingK: num_blocks 1, learning_rate 0.01, num_epochs 10, batch 256,
sgda_decay_rate 0.1, sgda_weight_decay 0.1; the last blocks + the classifier unfrozen) and
munl/unlearning/scrub_utils.py (fk_finetune, run_train_epoch, l2_penalty: plain SGD without
momentum or weight decay; loss = CE + (λ/2)·‖θ − θ_start‖² over the trainable parameters;
the learning rate ×0.1 after epochs int(0.5·E), int(0.8·E), int(0.9·E) via repdistiller's
adjust_learning_rate), "adapted from" meghdadk/SCRUB small_scale_unlearning.ipynb.

Blocks (helpers.last_blocks): a ResNet's stages (layer4 for k = 1, as the source), otherwise
conv + BatchNorm units. Sequence (run): every parameter outside the last `blocks` blocks and the
classifier stops taking gradients (requires_grad off); phase "finetune", `epochs` epochs of CE on
retain + (`l2_to_start`/2)·‖θ − θ_start‖², θ_start the trainable weights when the fit starts;
SGD on the trainable parameters, learning rate `lr`·`lr_decay_rate`^(number of milestones m with
epoch > m), the milestones int(f·epochs) for f in `lr_decay_fractions`.
Known deviations: the source trains with model.eval() (SCRUB's run_train_epoch; its small-scale
models have BatchNorm disabled); here every fit is in train mode, so BatchNorm normalises with
batch statistics and updates its running statistics — in the frozen blocks too, whose weights
stay fixed. (The SCRUB notebook itself unfreezes only layer4, not the classifier, and never
decays its learning rate within CF-k's 10 epochs.)
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from unlearnlab.errors import ConfigError
from unlearnlab.methods.finetune import Finetune
from unlearnlab.methods.helpers import classifier, last_blocks
from unlearnlab.training import OptimSettings


def step_decay(epochs: int, fractions, rate: float):
    """Per-epoch factor of repdistiller's adjust_learning_rate with milestones int(f·epochs)."""
    milestones = [int(f * epochs) for f in fractions]

    def factor(epoch: int) -> float:
        return float(rate) ** sum(epoch > m for m in milestones)

    return factor


class CFk(Finetune):
    reads: ClassVar[frozenset[str]] = frozenset({"retain"})
    model_kinds: ClassVar[frozenset[str]] = frozenset({"network"})  # it trains the last blocks of a network

    def __init__(self, model, data, blocks: int = 1, l2_to_start: float = 0.1,
                 lr_decay_fractions: tuple[float, ...] = (0.5, 0.8, 0.9), lr_decay_rate: float = 0.1,
                 **hparams) -> None:
        super().__init__(model, data, **hparams)
        if blocks < 0 or l2_to_start < 0:
            raise ConfigError(f"method: need blocks ≥ 0 and l2_to_start ≥ 0 (got {blocks}, {l2_to_start})")
        self.blocks, self.l2_to_start = int(blocks), float(l2_to_start)
        self.lr_decay_fractions, self.lr_decay_rate = tuple(float(f) for f in lr_decay_fractions), float(lr_decay_rate)
        self.trainable: list[str] = []  # the module names that train
        self._start: list[tuple[torch.nn.Parameter, torch.Tensor]] = []

    def trained_modules(self) -> list[tuple[str, torch.nn.Module]]:
        """The last `blocks` blocks' modules, then the classifier."""
        return [m for block in last_blocks(self.model, self.blocks) for m in block] + [classifier(self.model)]

    def prepare(self) -> None:
        """Before the fit: freeze everything but the trained modules (EU-k also re-initialises them)."""
        modules = self.trained_modules()
        self.model.requires_grad_(False)
        for _, module in modules:
            module.requires_grad_(True)
        self.trainable = [name for name, _ in modules]

    def run(self, make_trainer) -> None:
        self.prepare()
        self._start = [(p, p.detach().clone()) for p in self.model.parameters() if p.requires_grad]
        self.phase = "finetune"
        if self.epochs > 0:
            make_trainer(max_epochs=self.epochs, phase=self.phase).fit(self)
        self.model.requires_grad_(True)

    def training_step(self, batch, batch_idx):
        x, y = batch
        ce = F.cross_entropy(self.model(x), y)
        l2 = sum((((p - p0.to(p.device)) ** 2).sum() for p, p0 in self._start), ce.new_zeros(()))
        loss = ce + self.l2_to_start / 2 * l2
        self.track(loss=loss, ce=ce, l2_to_start=l2)
        return loss

    def configure_optimizers(self):
        o = self.optim
        params = [p for p in self.model.parameters() if p.requires_grad]
        opt = OptimSettings(o.optimizer, o.lr, o.momentum, o.weight_decay, "none").build(params, None, None)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, step_decay(self.epochs, self.lr_decay_fractions, self.lr_decay_rate))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
