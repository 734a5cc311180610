"""The method contract, for every method installed — each option of unlearnlab's conf/method/ and of
every installed plugin's conf/method/, found by discovery (unlearnlab.testing.method_options), never
listed here — checked with the test kit plugin authors use (unlearnlab.testing): one implementation.

A new method (a file and a config, in the tree or in a plugin) is covered by every test below
without a line changed here: its config composes and binds to its class, it reads only the parts it
declares (never test), every fit starts in train mode with its teachers in eval mode, one seed gives
bit-identical weights, and it runs in a `debug=tiny` study beside every other method."""

from __future__ import annotations

import collections

import pytest
import torch

from unlearnlab import api, testing
from unlearnlab.errors import ConfigError
from unlearnlab.methods.base import METHOD_PARTS, DataAccessError

METHODS = testing.method_options()

# Arguments that bound a loop no Trainer cap reaches (UNSIR's noise optimisation, WoodFisher's
# per-example gradients, descent-to-delete's gradient steps per update, the certified methods'
# removals: one Newton step per forget point by default): small wherever a method's config has
# one, so every run below stays a contract check (found by key, never by method).
INNER_LOOPS = {"noise_steps": 1, "n_samples": 8, "steps": 5, "removal_batch": 48}


def caps(name: str) -> list[str]:
    cfg = testing.check_config(name).methods[name]
    return [f"methods.{name}.{key}={value}" for key, value in INNER_LOOPS.items() if key in cfg]


@pytest.fixture(scope="module", autouse=True)
def _composed_once():
    """Every method's config composed and checked in one `method=[...]` per model kind (the kit's
    check_configs), instead of once per method: composing is most of this file's cost."""
    testing.check_configs(METHODS)


def test_presets_are_found_by_their_defaults_list():
    assert ("neggrad_plus_digits", "neggrad_plus") in PRESETS and ("scrub_digits", "scrub") in PRESETS
    assert not [p for p, _ in PRESETS if p in ("neggrad_plus", "noisy_newton_reference", "finetune")]


def test_discovery_finds_every_method_file_and_plugin():
    from pathlib import Path

    from unlearnlab import plugins

    own = sorted(p.stem for p in (Path(plugins.config_dir()) / "method").glob("*.yaml"))
    assert set(own) <= set(METHODS) and len(own) >= 30
    assert set(METHODS) - set(own) == set(testing.plugin_method_options())


@pytest.mark.parametrize("name", METHODS)
def test_every_method_keeps_the_contract(name):
    """Composes and binds, reads only what it declares, every fit in train mode (from a model left in
    eval mode), same seed → same weights. Every fit is capped at two steps: the contract, not the result
    (each fit still starts, builds its batches and steps). A preset (NAME_digits: NAME's class, other
    values) is run once; its method's options run twice."""
    run = testing.check_run(name, caps(name), limit_batches=1, max_steps=2)
    assert run.method.data.allowed == run.method.reads and run.method.reads <= METHOD_PARTS  # never test
    if run.fits:  # a method that trains changes the model (the identity control runs no fit)
        original = testing.original_state(name)
        assert any(not torch.equal(run.state[k], original[k]) for k in original), f"{name} changed no weight"
    if testing.preset_of(name) is None:
        testing.check_reproducible(name, caps(name), limit_batches=1, first=run, max_steps=2)


PRESETS = [(name, testing.preset_of(name)) for name in METHODS if testing.preset_of(name)]


@pytest.mark.parametrize(("preset", "base"), PRESETS, ids=[p for p, _ in PRESETS])
def test_every_preset_keeps_its_method_s_class_and_arguments(preset, base):
    """NAME_digits, NAME_cifar10, …: NAME's class and every argument NAME sets (values may differ)."""
    p, b = (testing.check_config(n).methods[n] for n in (preset, base))
    assert p._target_ == b._target_ and set(b) <= set(p), (preset, base)  # extra keys: the class's own (bound)


def test_every_method_runs_in_a_debug_tiny_study(tmp_path):
    """`unlearnlab debug=tiny` with every method that is not a preset at once (one study per model
    kind: the certified methods need model=logreg recipe=exact): cells, audit, results.json, a row
    each. A preset (NAME_digits, …) is its method's class with other values (checked above); each
    preset's own run is test_every_method_keeps_the_contract[PRESET]. Fits capped at one step and
    the audit is the lower bound (the competition's 49 relabellings cost ~2 s a method): this
    checks that each method runs end to end, not what it scores."""
    presets = {p for p, _ in PRESETS}
    groups: dict[tuple[str, ...], list[str]] = collections.defaultdict(list)
    for name in METHODS:
        if name not in presets:
            groups[tuple(testing.method_overrides(name)[3:])].append(name)
    assert sum(len(g) for g in groups.values()) == len(METHODS) - len(presets) and len(presets) >= 10
    for i, (kind, names) in enumerate(sorted(groups.items())):
        results = api.run(["debug=tiny", f"method=[{','.join(names)}]", *kind, "audit=[lower_bound]",
                           "trainer.limit_train_batches=1", "trainer.max_steps=1", f"paths.root={tmp_path / str(i)}",
                           *(cap for name in names for cap in caps(name))],
                          output_dir=tmp_path / str(i) / "out")
        assert sorted(results["methods"]) == sorted(names)
        for name in names:
            assert isinstance(results["methods"][name]["retain/acc"], float), name


def test_the_kit_catches_a_method_that_reads_an_undeclared_part(monkeypatch):
    """A method reading a part it did not declare: the kit names the method and the fix."""
    from unlearnlab.methods.finetune import Finetune

    monkeypatch.setattr(Finetune, "reads", frozenset({"forget"}))  # finetune reads retain
    with pytest.raises(AssertionError, match=r"method=finetune: method 'finetune' read 'retain' but declares "
                                             r"reads=\['forget'\]; add 'retain' to its `reads`"):
        testing.check_run("finetune", limit_batches=1)


def test_a_method_declaring_test_is_refused_at_start_up(monkeypatch):
    from unlearnlab.methods.finetune import Finetune

    monkeypatch.setattr(Finetune, "reads", frozenset({"retain", "test"}))
    with pytest.raises(ConfigError, match="test data is never available to a method"):
        api.compose(["debug=tiny"])


def test_the_data_guard_raises_at_the_read():
    with pytest.raises(DataAccessError, match="add 'forget' to its `reads`"):
        testing.run_method("finetune", limit_batches=1, reads=["retain", "val"]).method.data.batches("forget", 8)
