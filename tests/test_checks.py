"""Start-up checks (issue 15 class 5, issue 14 item 4): everything checkable is refused in the
first seconds, before data is loaded or the original trains, with one line naming the fix."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from unlearnlab.checks import (
    accepted_arguments, bind_arguments, check_applies, check_config, method_model_kinds, model_kind,
)
from unlearnlab.errors import ConfigError
from unlearnlab.methods.base import UnlearningMethod

REPO = Path(__file__).resolve().parents[1]


def cfg(*overrides: str):
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


def refused(*overrides: str) -> str:
    with pytest.raises(ConfigError) as err:
        check_config(cfg(*overrides))
    text = str(err.value)
    assert "\n" not in text, text
    return text


# -- the examples ---------------------------------------------------------------------------
@pytest.mark.parametrize("overrides, expected", [
    (["audit=[]"], "no audit selected (audit is empty), so the cells would train and nothing would measure them; "
                   "pick at least one, e.g. audit=[competition]"),
    (["trainer.precision=bogus"], "trainer.precision=bogus is not a Lightning precision: Precision 'bogus' is invalid"),
    (["+trainer.max_epoch=3"], "trainer.max_epoch is not a lightning.Trainer argument; did you mean trainer.max_epochs?"),
    (["+trainer.max_epochs=3"], "trainer.max_epochs is set by each fit"),
    (["method=finetune", "+methods.finetune.lrr=0.1"],
     "methods.finetune.lrr is not an argument of unlearnlab.methods.finetune.Finetune; did you mean methods.finetune.lr?"),
    (["+methods.neggrad_plus_digits.alpah=0.5"], "methods.neggrad_plus_digits.alpah is not an argument of"),
    (["+audit.competition.deltaa=1e-5"],
     "audit.competition.deltaa is not an argument of unlearnlab.audits.competition.CompetitionAudit; did you mean audit.competition.delta?"),
    (["+model.widht=8"], "model.widht is not an argument of unlearnlab.models.small_cnn.SmallCNN; did you mean model.width?"),
    (["paths.store="], "paths.store is empty; set paths.store=DIR"),
    (["paths.root="], "paths.root is empty"),
    (["method=newton"], "method newton (Newton) applies to logreg models, but model=small_cnn is a network model; "
                        "use model=logreg recipe=exact"),
    (["split=index_file"], "split.path has no value (???); set it, e.g. split.path=VALUE"),
    (["+paths.lock_timeout=-5"], "paths.lock_timeout=-5 must be a number of seconds > 0, or null"),
])
def test_mistake_is_refused_in_one_line(overrides, expected):
    assert expected in refused(*overrides)


def test_store_path_that_is_a_file(tmp_path):
    f = tmp_path / "store"
    f.write_text("not a folder")
    line = refused(f"paths.store={f}")
    assert line == f"paths.store={f} is a file, not a folder; point paths.store at a folder (new or existing)"


class NeedsBudget(UnlearningMethod):
    def __init__(self, model, data, epsilon: float, **hparams) -> None:
        super().__init__(model, data, **hparams)


def test_a_required_argument_nobody_gives():
    with pytest.raises(ConfigError, match=re.escape(
            f"method.epsilon is required by {__name__}.NeedsBudget; add method.epsilon=VALUE")):
        bind_arguments(NeedsBudget, {"lr": 0.1}, ("model", "data"), "method")
    bind_arguments(NeedsBudget, {"epsilon": 1.0, "lr": 0.1}, ("model", "data"), "method")


def test_audit_list_may_be_empty_for_tasks_that_do_not_audit():
    check_config(cfg("audit=[]", "task=verify"))


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed", "32-true", "32", "64-true"])
def test_lightning_precisions_pass(precision):
    check_config(cfg(f"trainer.precision={precision}"))


# -- one place for sizes ----------------------------------------------------------------------------
@pytest.mark.parametrize("overrides, expected", [
    (["n_models=1"], "n_models=1 must be a whole number ≥ 2"),
    (["n_models=2.5"], "n_models=2.5 must be a whole number ≥ 2"),
    (["workers=0"], "workers=0 must be auto or a whole number ≥ 1, e.g. workers=auto"),
    (["workers=two"], "workers=two must be auto or a whole number ≥ 1, e.g. workers=auto"),
    (["recipe.epochs=-1"], "recipe.epochs=-1 must be ≥ 0"),
    (["recipe.epochs=1.5"], "recipe.epochs=1.5 must be ≥ 0, a whole number"),
    (["recipe.batch_size=0"], "recipe.batch_size=0 must be ≥ 1"),
    (["recipe.lr=inf"], "recipe.lr=inf must be a finite number ≥ 0"),
    (["recipe.weight_decay=-1"], "recipe.weight_decay=-1 must be a finite number ≥ 0"),
    (["method=finetune", "methods.finetune.epochs=-2"], "methods.finetune.epochs=-2 must be ≥ 0"),
    (["method=finetune", "methods.finetune.batch_size=0"], "methods.finetune.batch_size=0 must be ≥ 1"),
    (["method=finetune", "methods.finetune.lr=nan"], "methods.finetune.lr=nan must be a finite number ≥ 0"),
    (["methods.finetune.lr=-1"], "methods.finetune.lr=-1 must be a finite number ≥ 0"),
    (["method=[]"], "no method selected (method is empty); choose some: method=NAME or method=[NAME,NAME]"),
    (["objective=scrub"], "objective=scrub is not a method of this study; add it: method=[identity,retrain,finetune,neggrad_plus_digits,scrub]"),
    (["method=[finetune,noisy_newton]", "model=logreg", "recipe=exact", "+methods.noisy_newton.reference=ref"],
     "method noisy_newton is audited against reference 'ref', which is not in this study; add it to the method list"),
])
def test_sizes_and_rates_are_checked_in_one_place(overrides, expected):
    assert expected in refused(*overrides)


def test_numbers_given_as_strings_are_numbers():
    check_config(cfg("n_models='4'", "method=finetune", "methods.finetune.lr='0.5'", "recipe.epochs='2'"))
    assert "must be a whole number ≥ 2" in refused("n_models='1'")


# -- every shipped option passes: tests/test_configs.py checks each option on the config it composes
# for its other checks (one compose per option)


# -- model kinds ----------------------------------------------------------------------------------
class NetworkOnly(UnlearningMethod):
    """A method that only makes sense on a network (e.g. one that re-initialises conv layers)."""

    model_kinds = frozenset({"network"})


def test_model_kind_declarations():
    from unlearnlab.methods.finetune import Finetune
    from unlearnlab.methods.newton import Newton
    from unlearnlab.models.logreg import LogisticRegression
    from unlearnlab.models.resnet import resnet18
    from unlearnlab.models.small_cnn import SmallCNN

    assert model_kind(SmallCNN) == model_kind(resnet18) == "network" and model_kind(LogisticRegression) == "logreg"
    assert method_model_kinds(Finetune) is None  # the safe default: applies to any model
    assert method_model_kinds(Newton) == {"logreg"} and method_model_kinds(NetworkOnly) == {"network"}
    check_applies(NetworkOnly, SmallCNN, "net_only", "small_cnn")
    check_applies(Finetune, LogisticRegression, "finetune", "logreg")
    with pytest.raises(ConfigError, match=re.escape(
            "method net_only (NetworkOnly) applies to network models, but model=logreg is a logreg model; "
            "use a network model (e.g. model=small_cnn), or a method for logreg models")):
        check_applies(NetworkOnly, LogisticRegression, "net_only", "logreg")


# -- binding to signatures ----------------------------------------------------------------------------
def test_arguments_follow_kwargs_to_the_base_class():
    from unlearnlab.methods.l1_sparse import L1Sparse

    names, required, open_ = accepted_arguments(L1Sparse)
    assert {"alpha", "lr", "epochs", "batch_size", "model", "data"} <= set(names) and not open_
    assert required == ["model", "data"]
    bind_arguments(L1Sparse, {"alpha": 1e-4, "lr": 0.1}, ("model", "data"), "method")
    with pytest.raises(ConfigError, match=r"^method\.model is given by the framework"):
        bind_arguments(L1Sparse, {"model": 1}, ("model", "data"), "method")


def test_a_typo_fails_before_any_data_loads(monkeypatch):
    """check_config refuses from the config alone (no data, no model): what makes it fast, said
    without a timing that a busy machine would break."""
    import unlearnlab.data as data
    import unlearnlab.models as models

    def forbidden(*args, **kwargs):
        raise AssertionError("check_config loaded data or built a model")

    monkeypatch.setattr(data, "load_source", forbidden)
    monkeypatch.setattr(models, "build_model", forbidden)
    with pytest.raises(ConfigError, match="lrr"):
        check_config(cfg("method=finetune", "+methods.finetune.lrr=0.1"))


