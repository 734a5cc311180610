"""Prune, then fine-tune (Jia et al. 2023, "Model Sparsity Can Simplify Machine Unlearning",
NeurIPS 2023): one-shot global magnitude pruning of the conv weights, then fine-tuning on the
retain set with the pruning mask fixed — the paper's "prune first, then unlearn" with its FT
unlearner, on a sparse model. An example plugin method: small, real, one file.

Checked against: OPTML-Group/Unlearn-Sparse (commit 80ba55d)
- `pruner/utils.py` `pruning_model`: `prune.global_unstructured` over the `weight` of every
  `nn.Conv2d`, `pruning_method=prune.L1Unstructured`, `amount=px` (the classifier and BatchNorm
  are never pruned); `arg_parser.py` `--rate` default 0.95 (the paper's 95% sparsity);
- `unlearn/FT.py` `FT_iter` (cross-entropy on the retain loader, model in train mode) run by
  `unlearn/impl.py` `_iterative_unlearn_impl` on the masked model: SGD over every parameter with
  `unlearn_lr`, `momentum`, `weight_decay`, MultiStepLR(`decreasing_lr`, γ 0.1) stepped per
  epoch; `arg_parser.py` defaults momentum 0.9, weight decay 5e-4, batch 256, decreasing_lr
  "91,136" (never reached in 10 epochs: constant lr), and README.MD's FT command `--unlearn_lr
  0.01 --unlearn_epochs 10`. In the source the mask stays on the model as torch's prune
  reparametrisation (weight = weight_orig · weight_mask), so pruned weights stay 0.

Here the mask is computed by the same `global_unstructured` call on a throwaway copy of the
model, and enforced on the model itself: pruned weights are set to 0, their gradients are zeroed
before every optimiser step and the weights re-zeroed after it. The unpruned weights follow the
same updates as under the reparametrisation, and the model leaves the method with plain weight
tensors (zeros where pruned), so its state dict has the keys of the model the framework builds
from config — no `weight_orig`/`weight_mask`.

Known deviations: in the paper the ORIGINAL model is pruned before unlearning (OMP: train, prune,
rewind and retrain — `pruner/omp.py`), so the model arriving to be unlearned is already sparse and
accurate; here the model arriving is dense, so the pruning happens at unlearning time and the 10
fine-tuning epochs must also recover what pruning cost. The source unlearns on CIFAR with crop +
flip augmentation; here augmentation is the method config's (none by default).
"""

from __future__ import annotations

import copy
from typing import ClassVar

import torch
from torch import nn
from torch.nn.utils import prune

from unlearnlab.errors import ConfigError
from unlearnlab.methods.finetune import Finetune


def conv_layers(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """The modules the source prunes: every nn.Conv2d, by name."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def l1_global_masks(model: nn.Module, amount: float) -> dict[str, torch.Tensor]:
    """The source's `pruning_model(model, amount)` masks (True: kept), computed on a copy so the
    model itself never carries torch's pruning reparametrisation."""
    shadow = copy.deepcopy(model)
    convs = conv_layers(shadow)
    prune.global_unstructured([(m, "weight") for _, m in convs], pruning_method=prune.L1Unstructured,
                              amount=amount)
    return {name: m.weight_mask.bool() for name, m in convs}


class OmpFinetune(Finetune):
    """Cross-entropy on retain (Finetune's loop) after pruning; the mask holds through the fit."""

    reads: ClassVar[frozenset[str]] = frozenset({"retain"})  # never forget, val or test
    model_kinds: ClassVar[frozenset[str]] = frozenset({"network"})  # it prunes conv weights

    def __init__(self, model, data, sparsity: float = 0.95, **hparams) -> None:
        super().__init__(model, data, **hparams)
        if not 0.0 <= float(sparsity) < 1.0:
            raise ConfigError(f"omp_finetune: sparsity is the fraction of conv weights pruned; need 0 ≤ sparsity < 1 "
                              f"(got {sparsity})")
        if not conv_layers(model):
            raise ConfigError("omp_finetune: the model has no nn.Conv2d to prune; use a convolutional model "
                              "(model=small_cnn, resnet18, fastnet)")
        self.sparsity = float(sparsity)
        self._kept: list[tuple[nn.Parameter, torch.Tensor]] = []  # (conv weight, mask): outside the module tree

    @torch.no_grad()
    def prune_weights(self) -> None:
        masks = l1_global_masks(self.model, self.sparsity)
        self._kept = [(m.weight, masks[name]) for name, m in conv_layers(self.model)]
        self._apply_mask()

    @torch.no_grad()
    def _apply_mask(self) -> None:
        for weight, kept in self._kept:
            weight.masked_fill_(~kept, 0.0)

    def run(self, make_trainer) -> None:
        self.prune_weights()
        super().run(make_trainer)

    def before_fit(self) -> None:  # the masks follow the model to the fit's device
        self._kept = [(w, kept.to(w.device)) for w, kept in self._kept]

    def on_before_optimizer_step(self, optimizer) -> None:
        for weight, kept in self._kept:
            if weight.grad is not None:
                weight.grad.masked_fill_(~kept, 0.0)

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        self._apply_mask()  # exact zeros whatever the optimiser does with a zero gradient
