"""NegGrad / gradient ascent (GA; Thudi et al. 2022).

Checked against: OPTML-Group/Unlearn-Saliency Classification/unlearn/GA.py (loss = −CE on the
forget loader, model.train(); OPTML-Group/Unlearn-Sparse unlearn/GA.py is the same without
SalUn's optional mask). The numbers are Unlearn-Sparse's README.MD GA command (unlearn_lr 1e-4,
5 epochs) and arg_parser.py (batch 256, momentum 0.9, wd 5e-4); SalUn's README gives none for GA.

Maximise cross-entropy on the forget set, loss = −CE_forget. Unbounded: keep the learning rate
small and the epochs few, or the model is destroyed. Known deviations: none."""

from __future__ import annotations

from typing import ClassVar

import torch

from unlearnlab.methods.finetune import Finetune


class NegGrad(Finetune):
    """Finetune's loop over the forget set, with the cross-entropy's sign flipped."""

    part: ClassVar[str] = "forget"
    reads: ClassVar[frozenset[str]] = frozenset({part})

    def objective(self, ce: torch.Tensor) -> torch.Tensor:
        self.track(loss=-ce, ce_forget=ce)
        return -ce
