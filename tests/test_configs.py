"""Every option of every config group, and every experiment, composes and names real code.

The contributor guide (README, "Contributing") promises that adding a method / audit / dataset /
model is a file plus a config — in unlearnlab's conf/ or in an installed plugin's (README, "Bring
your own method"): the options are found, not listed, so this is the test that catches a config that
doesn't compose, a `_target_` that doesn't resolve, or an experiment that refers to a preset that is gone.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import get_class, get_method
from omegaconf import OmegaConf

from unlearnlab.registry import target_problem

CONF = Path(__file__).resolve().parents[1] / "conf"
GROUPS = ["dataset", "split", "model", "recipe", "method", "audit", "trainer", "logger", "paths", "bench",
          "experiment", "debug", "hparams_search"]


def options(group: str) -> list[str]:
    """GROUP's options: unlearnlab's conf/GROUP/ and every installed plugin's."""
    from unlearnlab import plugins

    found = {p.stem for p in (CONF / group).glob("*.yaml")}
    for plugin in plugins.installed():
        found |= set(plugin.options().get(group, []))
    return sorted(found)


def override(group: str, option: str) -> str:
    return f"audit=[{option}]" if group == "audit" else f"{group}={option}"


def cases():
    for group in GROUPS:
        for option in options(group):
            marks = []
            if group == "hparams_search" and importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is None:
                marks.append(pytest.mark.skip(reason="the optuna extra is not installed (pip install -e '.[optuna]')"))
            yield pytest.param(group, option, marks=marks, id=f"{group}={option}")


def targets(node, where=""):
    """Every (_target_, path) in a plain config tree."""
    if isinstance(node, dict):
        if "_target_" in node:
            yield node["_target_"], where
        for k, v in node.items():
            yield from targets(v, f"{where}.{k}" if where else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from targets(v, f"{where}[{i}]")


def resolvable(cfg) -> dict:
    """The config without what needs Hydra's runtime (paths.output_dir, hydra.* but the sweeper), resolved."""
    plain = OmegaConf.to_container(cfg, resolve=False)
    plain.get("paths", {}).pop("output_dir", None)
    if "hydra" in plain:
        plain["hydra"] = {"sweeper": plain["hydra"].get("sweeper")}
    return OmegaConf.to_container(OmegaConf.create(plain), resolve=True)


@pytest.mark.parametrize(("group", "option"), list(cases()))
def test_every_option_composes_and_its_targets_resolve(group, option):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[override(group, option)], return_hydra_config=group == "hparams_search")
    plain = resolvable(cfg)
    found = list(targets({k: v for k, v in plain.items() if k != "hydra"}))
    for target, where in found:
        try:
            obj = get_class(target)
        except (ImportError, ValueError):
            obj = get_method(target)
        assert callable(obj), f"{where}._target_={target} is not callable"
        assert target_problem(target) is None, f"{where}._target_={target}: {target_problem(target)}"
    if group in ("method", "audit", "model", "dataset", "split", "recipe"):
        node = plain["audit"][option] if group == "audit" else plain["methods"][option] if group == "method" else plain[group]
        assert node, f"{group}={option} composed to an empty node"
    if group == "method":  # a method is composed under its own name, alone
        assert list(plain["methods"]) == [option] and plain["methods"][option]["name"] == option


def test_every_group_has_options_and_the_launchers_compose():
    for group in GROUPS:
        assert options(group), f"conf/{group}/ has no options"
    launchers = sorted(p.stem for p in (CONF / "hydra" / "launcher").glob("*.yaml"))
    assert launchers
    for name in launchers:
        with initialize_config_dir(str(CONF), version_base="1.3"):
            cfg = compose("config", overrides=[f"hydra/launcher={name}"], return_hydra_config=True)
        target = cfg.hydra.launcher._target_
        assert get_class(target).__name__.endswith("Launcher"), target
