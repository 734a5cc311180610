"""What unlearnlab relies on in Hydra's private API (src/unlearnlab/hydra_internals.py, the one module
that touches `hydra._internal`). An upgrade of hydra-core that changes any of it fails here first,
with the Hydra version in the message, instead of in a user's run."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from unlearnlab import hydra_internals as hi

SRC = Path(__file__).resolve().parents[1] / "src"
VERSION = f"hydra-core {hi.hydra_version()} (pinned in pyproject.toml) changed"


def test_locate_resolves_as_instantiate_does():
    from unlearnlab.methods.finetune import Finetune

    try:
        assert hi.locate("unlearnlab.methods.finetune.Finetune") is Finetune
        with pytest.raises(ImportError):
            hi.locate("unlearnlab.methods.nosuch.Method")
    except (ImportError, AttributeError, AssertionError) as err:
        if isinstance(err, ImportError) and "nosuch" in str(err):
            raise
        pytest.fail(f"{VERSION} hydra._internal.utils._locate: {err}")


def test_the_config_loader_still_takes_from_shell():
    params = inspect.signature(hi.loader_class().load_configuration).parameters
    assert {"config_name", "overrides", "run_mode", "from_shell"} <= set(params), \
        f"{VERSION} ConfigLoaderImpl.load_configuration's signature: {list(params)}"


def test_the_load_hook_sees_every_compose_and_is_removable():
    from hydra import compose, initialize_config_dir

    from unlearnlab.plugins import config_dir

    seen = []
    saved = hi.saved_loader()
    try:
        hi.install_load_hook(lambda loader, load, from_shell: seen.append(from_shell) or load())
        assert hi.load_hook_installed()
        with initialize_config_dir(config_dir(), version_base="1.3"):
            cfg = compose("config", overrides=["debug=tiny"])
    finally:
        hi.restore_loader(saved)
    assert seen == [False] and list(cfg.methods) == ["finetune"], f"{VERSION} the config loader's hook: {seen}"
    assert not hi.load_hook_installed()


def test_hydra_s_argument_parser_knows_the_flags_the_cli_reads():
    args, _ = hi.args_parser().parse_known_args(["--help", "x=1"])
    for flag in ("cfg", "help", "hydra_help", "info", "shell_completion"):
        assert hasattr(args, flag), f"{VERSION} hydra._internal.utils.get_args_parser: no --{flag.replace('_', '-')}"
    assert args.help


def test_the_sweep_splits_as_basic_sweeper_does():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(["a=1,2", "b=x"])
    assert hi.split_sweep(parsed) == [["a=1", "b=x"], ["a=2", "b=x"]], f"{VERSION} BasicSweeper.split_arguments"


def test_hydra_s_own_launcher_and_sweeper_live_where_the_allowlist_expects():
    from unlearnlab.registry import target_problem

    for target in ("basic_launcher.BasicLauncher", "basic_sweeper.BasicSweeper"):
        assert target_problem(hi.CORE_PLUGINS + target) is None, f"{VERSION} {hi.CORE_PLUGINS}{target}"


def test_no_other_module_touches_hydra_internal():
    users = []
    for path in SRC.rglob("*.py"):
        if path.name == "hydra_internals.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            users += [f"{path.relative_to(SRC)}:{node.lineno}" for n in names if n.startswith("hydra._internal")]
    assert users == []
