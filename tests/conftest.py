"""Shared fixtures: W&B kept offline inside a temp dir, digits data, a method runner.

torch and Lightning are imported where they are used, not at the top: pytest-xdist's controlling
process loads this file too, and it starts the two workers only after (~6 s of imports saved
while one core waits)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from omegaconf import OmegaConf

if TYPE_CHECKING:
    import lightning as L

from unlearnlab import schemas

REPO = Path(__file__).resolve().parents[1]

# The config groups' schemas (unlearnlab.schemas), which conf/*/*.yaml extend: in the ConfigStore
# before any test composes a config with Hydra's compose API.
schemas.register()


def _parse_each_config_text_once() -> None:
    """Hydra reads and parses every config file again at every compose (~20 files: a fifth of a
    compose's ~0.15 s), and the suite composes ~500 times. The same text gives the same DictConfig:
    here each distinct text is parsed once per process and every load gets a deep copy of it (a
    file that changes is new text, parsed anew; one that does not parse raises as before)."""
    import copy
    import io

    parse = OmegaConf.load
    parsed: dict = {}

    def load(file_):
        if not hasattr(file_, "read"):  # a path: not Hydra's config sources
            return parse(file_)
        text = file_.read()
        if text not in parsed:
            parsed[text] = parse(io.BytesIO(text) if isinstance(text, bytes) else io.StringIO(text))
        return copy.deepcopy(parsed[text])

    OmegaConf.load = staticmethod(load)  # type: ignore[method-assign]


_parse_each_config_text_once()


@pytest.fixture(autouse=True, scope="session")
def _offline_wandb(tmp_path_factory):
    """Nothing a test logs may leave this machine or land in $HOME."""
    wb = tmp_path_factory.mktemp("wandb")
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR"):
        os.environ[var] = str(wb)
    os.environ["WANDB_MODE"] = "offline"
    os.environ["WANDB_SILENT"] = "true"
    import torch

    if os.environ.get("PYTEST_XDIST_WORKER"):  # pytest -n 2: one core per worker, children included
        os.environ["OMP_NUM_THREADS"] = "1"
        torch.set_num_threads(1)
    else:
        torch.set_num_threads(min(2, os.cpu_count() or 1))
    yield


DIGITS = {"name": "digits", "root": "data", "download": False}
RANDOM10 = {"name": "random0.1", "kind": "random", "fraction": 0.1, "seed": 0, "val_fraction": 0.5, "val_seed": 42}


@pytest.fixture(scope="session")
def digits_data():
    from unlearnlab.data import load_study_data

    return load_study_data(OmegaConf.create(DIGITS), OmegaConf.create(RANDOM10))


@pytest.fixture(scope="session")
def trained_small_cnn(digits_data):
    """An original model trained briefly on all of digits' train part (shared, never mutated)."""
    import lightning as L

    from unlearnlab.models.small_cnn import SmallCNN
    from unlearnlab.training import OptimSettings, SupervisedModule

    L.seed_everything(0, verbose=False)
    model = SmallCNN(1, 10, 8, width=16)
    batches = digits_data.batches("train", 64, seed=0)
    quick_trainer(3).fit(SupervisedModule(model, batches, 3, OptimSettings(lr=0.05)))
    return {k: v.clone() for k, v in model.state_dict().items()}


def quick_trainer(max_epochs: int, **kw) -> L.Trainer:
    import lightning as L

    return L.Trainer(
        accelerator="cpu", devices=1, max_epochs=max_epochs, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, deterministic=True, **kw,
    )


def make_trainer(max_epochs: int, phase: str = "train", **kw) -> L.Trainer:
    """The MakeTrainer a method's run() receives, as the framework builds it (minus logging)."""
    return quick_trainer(max_epochs, **kw)


def method_config(name: str, **overrides) -> dict:
    """conf/method/NAME.yaml (with its defaults list applied), resolved against a digits study."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"method={name}", *[f"methods.{name}.{k}={v}" for k, v in overrides.items()]])
    return OmegaConf.to_container(cfg.methods[name], resolve=True)


def run_method(name: str, digits_data, state_dict, seed: int = 0, **overrides):
    """Build method NAME from its config on a copy of the original model, run it, return it."""
    import lightning as L

    from unlearnlab.cells import method_class
    from unlearnlab.methods.base import MethodData
    from unlearnlab.models.small_cnn import SmallCNN
    from unlearnlab.registry import instantiate

    cfg = {k: v for k, v in method_config(name, **overrides).items() if k != "name"}
    L.seed_everything(seed, verbose=False)
    model = SmallCNN(1, 10, 8, width=16)
    model.load_state_dict(state_dict)
    cls = method_class(cfg, name)
    cls.check_reads()
    method = instantiate(cfg, model=model, data=MethodData(digits_data, cls.reads, seed, name))
    method.run(make_trainer)
    return method


def unlearnlab_inprocess(out: Path, *overrides: str):
    """`unlearnlab OVERRIDES` in this process (no ~8 s interpreter start-up), output dir OUT.
    Returns the task's return value; errors propagate as their exception types."""
    from hydra import initialize_config_dir

    from unlearnlab.tasks import run_composed

    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        return run_composed(list(overrides), out)


@contextlib.contextmanager
def cli_config_check():
    """The CLI's start-up check (`cli.install_config_check`, on Hydra's config loader) for this block
    only: a config the CLI refuses before Hydra makes the run dir makes `compose` raise here."""
    from unlearnlab.cli import install_config_check
    from unlearnlab.hydra_internals import restore_loader, saved_loader

    original = saved_loader()
    install_config_check()
    try:
        yield
    finally:
        restore_loader(original)


def inprocess_error(out: Path, *overrides: str) -> BaseException:
    """`unlearnlab OVERRIDES` in this process, which must fail as the CLI's one-line error: the
    exception is one the CLI prints as `error: MESSAGE` (`cli.one_line_errors`), MESSAGE one line.
    (The printing itself is tested once per kind through the real CLI.)"""
    from unlearnlab.cli import one_line_errors

    with cli_config_check():
        try:
            unlearnlab_inprocess(out, *overrides)
        except one_line_errors() as err:
            assert "\n" not in str(err), str(err)
            return err
    raise AssertionError(f"unlearnlab {' '.join(overrides)} did not fail")


# Every file that takes more than ~2 s, longest first (per-file sums of the tests' wall times, whole
# suite, this 2-core machine: ~83, ~80, ~64, ~46, ~45, ~40, ~32, ~20 s, …; the rest < 2 s each).
LONGEST_FILES = (
    "test_reliability.py", "test_sweeps_slices.py", "test_sweeps.py", "test_certified_methods.py",
    "test_methods_contract.py", "test_configs.py", "test_study_e2e.py", "test_report.py", "test_external_cells.py",
    "test_originals.py", "test_mislabeled.py", "test_tracking.py", "test_speed.py", "test_plan_task.py",
    "test_checks.py", "test_plugins.py", "test_schedules.py", "test_schemas.py", "test_example_forget.py",
    "test_methods_peers.py", "test_logits_task.py", "test_security.py", "test_audits_extra.py",
    "test_methods_challenge.py", "test_sources.py", "test_api.py", "test_methods_peers_more.py",
    "test_audit_files.py", "test_audit_stats.py", "test_data_fingerprint.py", "test_audit_competition.py",
    "test_store.py",
)


def pytest_collection_modifyitems(session, config, items):
    """The longest files first, in order: pytest-xdist hands out whole files (--dist loadfile) in
    this order, so the two workers end within a few seconds of each other, on small files, instead
    of one of them finishing a long file alone (longest-first scheduling). Only with
    --no-loadscope-reorder (pyproject's addopts): by default xdist re-sorts files by their number
    of tests, which put the two longest files on one worker (331 s against 291 s)."""
    rank = {name: i for i, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: order within a file is kept
