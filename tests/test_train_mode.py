"""The train-mode guarantee (issue #11 item 1): at the start of every fit of every registered
method, the model being unlearned is in train mode — even when something left it in eval mode
before — and every frozen teacher the method declares is in eval mode. Lightning 2.x does not
switch modules to train mode itself; EpochMetrics.on_fit_start does."""

from __future__ import annotations

import warnings
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import method_config, quick_trainer

from unlearnlab.methods.base import MethodData
from unlearnlab.models.small_cnn import SmallCNN

METHODS = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "conf" / "method").glob("*.yaml"))


class ModeRecorder(L.Callback):
    """At each fit's start: the modes of the unlearned model's modules and of the teachers."""

    def __init__(self) -> None:
        self.fits: list[dict] = []

    def on_train_start(self, trainer, pl_module) -> None:
        self.fits.append({
            "model": {n: m.training for n, m in pl_module.model.named_modules()},
            "tree_in_eval": [n for n, m in pl_module.named_modules() if not m.training],
            "teachers": {t: [m.training for m in mod.modules()] for t, mod in pl_module.teachers.items()},
        })


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


@pytest.mark.parametrize("name", METHODS)
def test_every_fit_starts_with_the_model_in_train_mode_and_teachers_in_eval(name, digits_data, trained_small_cnn):
    from unlearnlab.methods.newton import ClosedFormRemoval, ExactRetrain

    cls, method = None, None
    from unlearnlab.cells import method_class

    cls = method_class({k: v for k, v in method_config(name).items() if k != "name"}, name)
    if issubclass(cls, (ClosedFormRemoval, ExactRetrain)):
        pytest.skip(f"{name}: closed-form removal on logreg features, no Trainer fit")
    cls, method = _build(name, digits_data, trained_small_cnn)
    recorder = ModeRecorder()

    def make_trainer(max_epochs, phase="train"):
        return quick_trainer(max_epochs, callbacks=[recorder], limit_train_batches=1)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        method.run(make_trainer)
    if not recorder.fits:
        assert not cls.trains, f"{name} ran no fit"
        pytest.skip(f"{name} runs no fit (trains = False: it changes the weights in closed form, or not at all)")
    for fit in recorder.fits:
        assert all(fit["model"].values()), f"{name}: modules in eval mode at fit start: " + str(
            [n for n, t in fit["model"].items() if not t])
        assert fit["tree_in_eval"] == [], f"{name}: the LightningModule tree holds eval modules {fit['tree_in_eval']}"
        for teacher, modes in fit["teachers"].items():
            assert not any(modes), f"{name}: teacher {teacher!r} is in train mode at fit start"
    assert not [w for w in caught if "in eval mode" in str(w.message)], f"{name}: Lightning warned about eval mode"


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
