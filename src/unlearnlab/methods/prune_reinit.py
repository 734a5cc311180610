"""NeurIPS 2023 unlearning challenge, 4th place ("PRMQ": prune, retrain, mask,
quantise): reset almost every weight, then fine-tune on retain toward the original model's
confidence.

Checked against: xcadet/deepunlearn munl/unlearning/kgltop4.py (KGLTop4: prune_model,
entropy_loss_fn, get_class_weights, the fp16 round trip).

Sequence (run):
  1. reset (no fit): global L1 ranking over every Conv2d/Linear weight and bias; the
     `prune_amount` (99%) smallest |w| are reset — weights to U(±1/√fan_in) (the source's
     rand_init, the layer's default-init distribution), biases to 0.
  2. phase "finetune" on retain for `epochs` epochs (3.2: fractional, as the source — it stops
     after int(batches per epoch · epochs) + 1 steps): loss = CE with class weights N_c^−0.1
     (N_c: retain count of class c) + MSE(H(f(x)), H(f_orig(x))), H the softmax entropy; SGD
     5e-4, momentum 0.9, wd 5e-4, batch 64, no schedule.
  3. quantise: every floating tensor of the model goes through fp16 and back (net.to(half)
     then to(float) in the source).
Known deviations: none.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F

from unlearnlab.methods.helpers import default_init, entropy, weight_layers
from unlearnlab.methods.base import UnlearningMethod


class PruneReinit(UnlearningMethod):
    reads: ClassVar[frozenset[str]] = frozenset({"retain"})

    def __init__(self, model, data, prune_amount: float = 0.99, class_weight_power: float = -0.1,
                 epochs: float = 3.2, **hparams) -> None:
        super().__init__(model, data, epochs=math.ceil(float(epochs)), **hparams)
        self.epoch_budget = float(epochs)
        self.max_steps = 0
        self.prune_amount, self.class_weight_power = float(prune_amount), float(class_weight_power)
        self.add_teacher("teacher", model)
        self.reset_fraction = 0.0

    @torch.no_grad()
    def _reset(self) -> None:
        tensors = [(m, n, p) for _, m in weight_layers(self.model) for n, p in m.named_parameters(recurse=False)]
        magnitudes = torch.cat([p.detach().abs().flatten().cpu() for _, _, p in tensors])
        k = int(round(self.prune_amount * magnitudes.numel()))
        if k == 0:
            return
        # ties at the threshold are broken by position (stable sort): exactly k entries are reset
        order = torch.argsort(magnitudes, stable=True)
        reset = torch.zeros(magnitudes.numel(), dtype=torch.bool)
        reset[order[:k]] = True
        offset = 0
        for i, (module, name, p) in enumerate(tensors):
            mask = reset[offset : offset + p.numel()].view_as(p).to(p.device)
            offset += p.numel()
            if name == "bias":
                p[mask] = 0.0
            else:
                fresh = default_init(module, self.data.seed * 1000 + i)[name]
                p[mask] = fresh[mask]
        self.reset_fraction = k / magnitudes.numel()

    def run(self, make_trainer) -> None:
        self._reset()
        y = self.data.tensors("retain")[1]
        counts = torch.bincount(y, minlength=self.data.num_classes).float().clamp_min(1.0)
        self.class_weights = counts.pow(self.class_weight_power)
        self.phase = "finetune"
        if self.epochs > 0:
            batches = -(-self.data.size("retain") // self.batch_size)
            self.max_steps = int(batches * self.epoch_budget) + 1
            make_trainer(max_epochs=self.epochs, phase=self.phase).fit(self)
        with torch.no_grad():
            for t in self.model.state_dict().values():
                if t.is_floating_point():
                    t.copy_(t.half().float())

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if self.global_step >= self.max_steps:
            self.trainer.should_stop = True

    def train_dataloader(self):
        return self.data.batches("retain", self.batch_size, augment=self.augment)

    def training_step(self, batch, batch_idx):
        x, y = batch
        out, t_out = self.with_teacher(x)
        h_orig = entropy(t_out)
        ce = F.cross_entropy(out, y, weight=self.class_weights.to(out.device))
        ent = F.mse_loss(entropy(out), h_orig)
        loss = ce + ent
        self.track(loss=loss, ce=ce, entropy_mse=ent)
        return loss
