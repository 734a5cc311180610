"""Control: retraining from scratch on the retain set, run as if it were an unlearning method.

The model is re-initialised exactly as the reference retrained models are built (cells.py:
L.seed_everything(cell seed), then build_model(model config)), from this cell's seed, and trained
with the study's recipe. So the audit sees two independent samples of the same distribution —
the best case, and the floor of the estimator's bias.

Known deviations: none (checked against cells.py's retrain cells).
"""

from __future__ import annotations

from unlearnlab.methods.finetune import Finetune
from unlearnlab.methods.helpers import fresh_init


class Retrain(Finetune):
    def __init__(self, model, data, architecture, **hparams) -> None:
        super().__init__(model, data, **hparams)
        fresh_init(self.model, architecture, data.input_shape, data.num_classes, data.seed)
