"""Every option of every config group, and every experiment, composes, names real code, passes the
start-up checks, and is typed by its group's schema.

The contributor guide (README, "Contributing") promises that adding a method / audit / dataset /
model is a file plus a config — in unlearnlab's conf/ or in an installed plugin's (README, "Bring
your own method"): the options are found, not listed, so this is the test that catches a config that
doesn't compose, a `_target_` that doesn't resolve, or an experiment that refers to a preset that is gone.
Each option is composed once, as the CLI composes it, and every per-option check reads that one
config (a compose is ~0.25 s: three files composing the same 100 options cost a minute of the suite).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import get_class, get_method
from omegaconf import OmegaConf

from unlearnlab import schemas
from unlearnlab.checks import TASK_OPTION_GROUPS, check_config, method_model_kinds
from unlearnlab.registry import target_problem
from unlearnlab.store import normalise

CONF = Path(__file__).resolve().parents[1] / "conf"
GROUPS = ["dataset", "split", "model", "recipe", "method", "audit", "trainer", "logger", "paths", "task", "bench",
          "experiment", "debug", "hparams_search", "files", "logits", "export", "import"]
# The task-option groups are composed with their task (conf/task/NAME.yaml, checks.TASK_OPTION_GROUPS),
# with what the task's start-up check requires (the files need not exist: that is checked when the task runs).
NEEDS = {"audit_files": ["files.labels=labels.npz", "files.reference=ref", "+files.methods.mine=mine"],
         "logits": ["logits.checkpoints=ckpts", "logits.out=npz"], "export": ["export.path=cells.tar"],
         "import": ["import.path=cells.tar"]}


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


def extra_overrides(group: str, option: str) -> list[str]:
    """What GROUP=OPTION needs beside it to compose and pass the start-up checks."""
    extra = ["split.path=/dev/null"] if option == "index_file" else []
    task = option if group == "task" else TASK_OPTION_GROUPS.get(group)
    if task is not None:
        extra += [*([] if group == "task" else [f"task={task}"]), *NEEDS.get(task, [])]
    return extra


def composed(group: str, option: str):
    """GROUP=OPTION as the CLI composes it (Hydra's own config included), in the study it needs: a
    method for logistic regression only with model=logreg recipe=exact, the index-file split with a
    file, a task's option group with its task."""
    extra = extra_overrides(group, option)
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[override(group, option), *extra], return_hydra_config=True)
        if group == "method" and method_model_kinds(get_class(cfg.methods[option]._target_)) == {"logreg"}:
            cfg = compose("config", overrides=[override(group, option), "model=logreg", "recipe=exact"],
                          return_hydra_config=True)
    return cfg


def own_keys(group: str, option: str) -> dict:
    """The keys an option file sets itself, and those of the option files it extends, unresolved."""
    raw = OmegaConf.to_container(OmegaConf.load(CONF / group / f"{option}.yaml"), resolve=False)
    out: dict = {}
    for parent in raw.pop("defaults", []):
        if parent != "_self_" and not parent.startswith("schema"):
            out.update(own_keys(group, parent))
    return {**out, **raw}


def check_schema(cfg, group: str, option: str) -> None:
    """The option extends its group's schema (unlearnlab.schemas), and the schema adds or changes
    nothing: the same keys and, as the cell keys see them, the same values, so no cell key changes."""
    node = cfg[group]
    schema = OmegaConf.get_type(node)
    assert schemas.is_schema(schema), f"conf/{group}/{option}.yaml extends no schema (defaults: [schema, _self_])"
    given = own_keys(group, option)
    plain = OmegaConf.to_container(node, resolve=False)
    if group in schemas.OPEN_GROUPS:  # the trainer: every schema flag, at Lightning's default unless set
        assert list(plain) == schemas.keys(schema)
        plain = {k: v for k, v in plain.items() if k in given}
    for override in extra_overrides(group, option):  # the values given beside the option, not its file's
        path = override.lstrip("+").split("=")[0].split(".")
        if path[0] == group:
            given[path[1]] = plain[path[1]]
    assert normalise(plain) == normalise(given)


@pytest.mark.parametrize(("group", "option"), list(cases()))
def test_every_option_composes_resolves_passes_the_checks_and_keeps_its_schema(group, option):
    cfg = composed(group, option)
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
    check_config(cfg)  # the CLI's start-up checks (tests/test_checks.py: what they refuse)
    if group in schemas.SCHEMAS and (CONF / group / f"{option}.yaml").exists():
        check_schema(cfg, group, option)


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
