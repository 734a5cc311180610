"""NeurIPS 2023 unlearning challenge, 5th place: half of the unlearned models
retrain from the original with every Conv2d kernel transposed; the other half fine-tune with
pseudo-labels.

Checked against: xcadet/deepunlearn munl/unlearning/kgltop5.py (KGLTop5, the transpose branch
only: rotate_weight swapaxes(2, 3), SGD 1e-3, momentum 0.9, wd 5e-4, 3 epochs, batch 64,
CosineAnnealingLR(T_max=epochs) stepped per epoch). The pseudo-label branch is not in any public
code; it follows the challenge paper's one-line description (Triantafillou et al. 2024).

Branch per model (`branch: auto`): the parity of one draw from a generator seeded with the
cell seed — even: "transpose", odd: "pseudo" — so over many cells about half take each branch,
and a given cell always takes the same one. `branch: transpose|pseudo` forces one.

- transpose: every Conv2d weight (out, in, kh, kw) becomes its spatial transpose (kh ↔ kw;
  a non-square kernel also swaps kernel_size and padding), then phase "finetune": CE on
  retain with KGLTop5's optimiser and per-epoch cosine.
- pseudo: the original model labels the forget set once; the forget examples it predicts
  wrongly with confidence ≥ `confidence` keep that wrong prediction as their label, the others
  are dropped (the source gives no rule: chosen so that true forget labels are never
  re-taught). Phase "finetune": CE on retain + `pseudo_weight`·CE on those pseudo-labelled
  examples (one pseudo batch per retain batch, cycled), same optimiser.
Known deviations: the pseudo branch's details (confidence 0.9, weight 1) are not from a source.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import CombinedLoader
from torch import nn

from unlearnlab.errors import ConfigError
from unlearnlab.methods.helpers import TensorBatches, generator
from unlearnlab.methods.base import UnlearningMethod

BRANCHES = ("auto", "transpose", "pseudo")


def pick_branch(seed: int) -> str:
    draw = int(torch.randint(0, 2**31 - 1, (1,), generator=generator(seed)))
    return "transpose" if draw % 2 == 0 else "pseudo"


@torch.no_grad()
def transpose_conv_kernels(model: nn.Module) -> int:
    n = 0
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            m.weight.data = m.weight.data.transpose(2, 3).contiguous()
            if m.kernel_size[0] != m.kernel_size[1]:
                m.kernel_size = m.kernel_size[::-1]
                if isinstance(m.padding, tuple):
                    m.padding = m.padding[::-1]
            n += 1
    return n


class TransposedPseudo(UnlearningMethod):
    reads: ClassVar[frozenset[str]] = frozenset({"forget", "retain"})
    model_kinds: ClassVar[frozenset[str]] = frozenset({"network"})  # it transposes Conv2d kernels

    def __init__(self, model, data, branch: str = "auto", confidence: float = 0.9,
                 pseudo_weight: float = 1.0, **hparams) -> None:
        super().__init__(model, data, **hparams)
        if branch not in BRANCHES:
            raise ConfigError(f"method.branch={branch!r}: use one of {BRANCHES}")
        self.branch = pick_branch(data.seed) if branch == "auto" else branch
        self.confidence, self.pseudo_weight = float(confidence), float(pseudo_weight)
        self._pseudo: TensorBatches | None = None
        self.n_pseudo = 0

    @torch.no_grad()
    def _pseudo_labels(self) -> None:
        x, y = self.data.tensors("forget")
        self.model.to(y.device).eval()
        probs = torch.cat([F.softmax(self.model(x[i : i + 1024]), dim=1) for i in range(0, len(y), 1024)])
        conf, pred = probs.max(dim=1)
        keep = (pred != y) & (conf >= self.confidence)
        self.n_pseudo = int(keep.sum())
        if self.n_pseudo:
            self._pseudo = TensorBatches((x[keep], pred[keep]), self.batch_size, self.data.seed + 1)

    def run(self, make_trainer) -> None:
        if self.branch == "transpose":
            transpose_conv_kernels(self.model)
        else:
            self._pseudo_labels()
        self.phase = "finetune"
        if self.epochs > 0:
            make_trainer(max_epochs=self.epochs, phase=self.phase).fit(self)

    def train_dataloader(self):
        retain = self.data.batches("retain", self.batch_size, augment=self.augment)
        if self._pseudo is None:
            return retain
        return CombinedLoader({"retain": retain, "pseudo": self._pseudo}, mode="max_size_cycle")

    def training_step(self, batch, batch_idx):
        if isinstance(batch, dict):
            (x, y), (xp, yp) = batch["retain"], batch["pseudo"]
            ce = F.cross_entropy(self.model(x), y)
            ce_p = F.cross_entropy(self.model(xp), yp)
            loss = ce + self.pseudo_weight * ce_p
            self.track(loss=loss, ce_retain=ce, ce_pseudo=ce_p)
            return loss
        x, y = batch
        loss = F.cross_entropy(self.model(x), y)
        self.track(loss=loss)
        return loss

    def configure_optimizers(self):
        return self.optim.build_for(self.model.parameters(), self.trainer)
