"""unlearnlab as a library: `unlearnlab.compose` and `unlearnlab.run`, with the command line's checks."""

from __future__ import annotations

import json

import pytest
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

import unlearnlab
from unlearnlab.errors import ConfigError
from unlearnlab.plugins import config_dir


def test_compose_gives_the_config_a_task_receives():
    cfg = unlearnlab.compose(["debug=tiny", "n_models=3", "methods.finetune.lr=0.05"])
    assert "hydra" not in cfg and cfg.n_models == 3 and cfg.methods.finetune.lr == 0.05
    assert list(cfg.methods) == ["finetune"]


@pytest.mark.parametrize("overrides, message", [
    (["methods.finetune.lrr=0.1", "debug=tiny"], "methods.finetune.lrr is not a config key; did you mean methods.finetune.lr?"),
    (["method=finetun"], "Could not find 'method/finetun'"),
    (["n_models=1"], "n_models=1 must be a whole number ≥ 2"),
    (["debug=tiny", "methods.finetune._target_=os.system"], "_target_ 'os.system' is not allowed"),
])
def test_compose_refuses_what_the_cli_refuses_in_one_line(overrides, message):
    with pytest.raises(ConfigError) as err:
        unlearnlab.compose(overrides)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_compose_puts_back_the_caller_s_hydra():
    with initialize_config_dir(config_dir(), version_base="1.3"):
        before = GlobalHydra.instance().hydra
        unlearnlab.compose(["debug=tiny"])
        assert GlobalHydra.instance().hydra is before
    assert not GlobalHydra.instance().is_initialized()


def test_run_returns_what_results_json_holds(tmp_path):
    results = unlearnlab.run(["debug=tiny", f"paths.root={tmp_path}"], output_dir=tmp_path / "out")
    assert results == json.loads((tmp_path / "out" / "results.json").read_text())
    assert list(results["methods"]) == ["finetune"] and results["n_models"] == 2
    assert isinstance(results["methods"]["finetune"]["audit/F"], float)


def test_run_refuses_a_task_that_writes_no_results(tmp_path):
    with pytest.raises(ConfigError, match="task=plan writes none"):
        unlearnlab.run(["debug=tiny", "task=plan", f"paths.root={tmp_path}"])
    assert not (tmp_path / "store").exists()
