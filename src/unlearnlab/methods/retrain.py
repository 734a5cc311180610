"""Control: retraining from scratch on the retain set, run as if it were an unlearning method.

Its seeds differ from the reference retrained models', so the audit sees two independent
samples of the same distribution — the best case, and the floor of the estimator's bias.
"""

from __future__ import annotations

from unlearnlab.methods.finetune import Finetune


def reinitialise(model) -> None:
    for module in model.modules():
        if hasattr(module, "reset_parameters") and module is not model:
            module.reset_parameters()


class Retrain(Finetune):
    def __init__(self, model, data, **hparams) -> None:
        reinitialise(model)
        super().__init__(model, data, **hparams)
