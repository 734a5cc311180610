"""The train-mode guarantee (issue #11 item 1): at the start of every fit of every method, the model
being unlearned is in train mode — even when something left it in eval mode before — and every
frozen teacher the method declares is in eval mode. Lightning 2.x does not switch modules to train
mode itself; EpochMetrics.on_fit_start does. That every installed method keeps it (each option of
conf/method/ and of every plugin, discovered) is checked by tests/test_methods_contract.py with the
test kit's ModeRecorder (unlearnlab.testing); here, how the guarantee is made."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from conftest import method_config, quick_trainer

from unlearnlab.methods.base import MethodData
from unlearnlab.models.small_cnn import SmallCNN


def _build(name, digits_data, state_dict, seed=0):
    from unlearnlab.cells import method_class
    from unlearnlab.registry import instantiate

    cfg = {k: v for k, v in method_config(name).items() if k != "name"}
    cls = method_class(cfg, name)
    L.seed_everything(seed, verbose=False)
    model = SmallCNN(1, 10, 8, width=16)
    model.load_state_dict(state_dict)
    model.eval()  # as a scoring pass would leave it: the framework must undo this at every fit
    return cls, instantiate(cfg, model=model, data=MethodData(digits_data, cls.reads, seed, name))


def test_teachers_are_declared_where_methods_distil(digits_data, trained_small_cnn):
    expected = {"scrub": {"teacher"}, "bad_teacher": {"good", "bad"}, "boundary_shrink": {"probe"},
                "cyclic_reinit_mse": {"teacher"}, "prune_reinit": {"teacher"}, "reset_distill": {"teacher"}}
    for name, teachers in expected.items():
        _, method = _build(name, digits_data, trained_small_cnn)
        assert set(method.teachers) == teachers, name
        assert all(not p.requires_grad for t in method.teachers.values() for p in t.parameters())
        # outside the module tree: never trained, never in the method's state_dict
        assert not any(k.startswith(tuple(teachers)) for k in method.state_dict())


def test_overriding_on_fit_start_is_refused():
    from unlearnlab.methods.base import UnlearningMethod

    with pytest.raises(TypeError, match="before_fit"):
        type("Sneaky", (UnlearningMethod,), {"on_fit_start": lambda self: None})


def test_grad_reinit_moves_batchnorm_statistics(digits_data, trained_small_cnn):
    """Issue #11: grad_reinit's unlearned BatchNorm statistics were bit-identical to the original's."""
    _, method = _build("grad_reinit", digits_data, trained_small_cnn)
    method.run(lambda max_epochs, phase="train": quick_trainer(1, limit_train_batches=5))
    after = method.model.state_dict()
    stats = [k for k in after if k.endswith(("running_mean", "running_var"))]
    assert len(stats) == 6
    for k in stats:
        assert not torch.equal(after[k], trained_small_cnn[k]), k
