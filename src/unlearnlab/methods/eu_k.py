"""Exact unlearning of the last k blocks (EU-k; Goel et al. 2022, "Towards Adversarial
Evaluation for Inexact Machine Unlearning"): re-initialise the last k blocks and the classifier,
freeze the rest, retrain the re-initialised part on retain.

Checked against: xcadet/deepunlearn munl/unlearning/exact_unlearning_k.py (ExactUnlearningK:
num_blocks 1, learning_rate 0.01, num_epochs 10, batch 256, sgda_decay_rate 0.1,
sgda_weight_decay 0.1; reinialize_modules on the last blocks + the classifier, then the
fk_finetune of scrub_utils.py) — the same training as cf_k.py, after the re-initialisation.

Sequence (run): the modules of the last `blocks` blocks and the classifier (helpers.last_blocks)
take the parameters and buffers a freshly built `architecture` has under the cell seed — the
initialisation the reference retrained models start from; then CF-k's fit (cf_k.py): the rest
frozen, CE + (`l2_to_start`/2)·‖θ − θ_start‖² with θ_start the re-initialised weights, plain SGD,
step decay after epochs int(0.5·E), int(0.8·E), int(0.9·E).
Known deviations: deepunlearn re-initialises with its own init_weights (kaiming-uniform fan-out
convs, xavier-uniform linears, BatchNorm 1/0, running statistics kept); here the modules get the
model's own initialisation and fresh BatchNorm statistics (the SCRUB notebook's EU-k likewise
copies the model's initial checkpoint into them). As CF-k, it trains in train mode where the
source runs model.eval(). The source's EU-k retrains on augmented retain data
(augmented_train_retain_loaders); on CIFAR set crop_padding: 4, flip: true.
"""

from __future__ import annotations

import copy

import torch

from unlearnlab.methods.cf_k import CFk
from unlearnlab.methods.helpers import fresh_init


class EUk(CFk):
    def __init__(self, model, data, architecture, **hparams) -> None:
        super().__init__(model, data, **hparams)
        self.architecture = architecture

    @torch.no_grad()
    def prepare(self) -> None:
        modules = self.trained_modules()
        fresh = copy.deepcopy(self.model)
        fresh_init(fresh, self.architecture, self.data.input_shape, self.data.num_classes, self.data.seed)
        for name, module in modules:
            module.load_state_dict(fresh.get_submodule(name).state_dict())
        super().prepare()
