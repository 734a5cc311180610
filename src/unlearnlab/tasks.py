"""What `task=NAME` runs: the start-up checks, then the task's function, imported only when chosen."""

from __future__ import annotations

import importlib
from pathlib import Path

from omegaconf import DictConfig

from unlearnlab.errors import ConfigError

TASKS = {
    "study": "unlearnlab.study:run_study",
    "cell": "unlearnlab.sweep:cell_task",
    "audit": "unlearnlab.sweep:audit_task",
    "plan": "unlearnlab.plan_task:plan_task",
    "bench": "unlearnlab.bench:bench_task",
    "verify": "unlearnlab.verify:verify_task",
    "audit_files": "unlearnlab.audit_files:audit_files_task",
    "logits": "unlearnlab.logits_task:logits_task",
    "export": "unlearnlab.bundle:export_task",
    "import": "unlearnlab.bundle:import_task",
}


# Config values that name files or folders the user gave, relative to where the command started.
PATH_KEYS = ("paths.root", "paths.store", "paths.data", "dataset.root", "dataset.csv", "split.path", "bench_file",
             "trainer.default_root_dir")


def absolute_paths(cfg: DictConfig) -> DictConfig:
    """Every relative path in PATH_KEYS made absolute against the folder the command was started
    in (Hydra's runtime.cwd), in place. With `hydra.job.chdir=true` Hydra runs each job inside its
    output folder, and a relative store (the default, ./store) then became a new store per run and
    per sweep job."""
    from hydra.utils import to_absolute_path
    from omegaconf import OmegaConf, read_write

    resolved = {}
    for key in PATH_KEYS:
        value = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
        if isinstance(value, str) and value.strip() and not Path(value).expanduser().is_absolute():
            resolved[key] = to_absolute_path(value)  # every value first: paths.store may interpolate paths.root
    with read_write(cfg):
        for key, value in resolved.items():
            OmegaConf.update(cfg, key, value, merge=False)
    return cfg


def run_task(cfg: DictConfig):
    from unlearnlab.checks import check_config
    from unlearnlab.pipeline import quiet_lightning

    absolute_paths(cfg)  # before anything reads a path: relative to where the command started
    check_config(cfg)  # untrusted _target_s and out-of-range values, before any work
    quiet_lightning()
    task = str(cfg.get("task", "study"))
    if task not in TASKS:
        raise ConfigError(f"task={task} is unknown; use one of {sorted(TASKS)}")
    module, name = TASKS[task].split(":")
    return getattr(importlib.import_module(module), name)(cfg)


def run_composed(overrides: list[str], output_dir: Path, config_name: str = "config"):
    """`unlearnlab OVERRIDES` in this process, output dir OUTPUT_DIR (tests; Hydra initialised)."""
    from unlearnlab.pipeline import run_composed as compose_and_run

    return compose_and_run(overrides, output_dir, run_task, config_name)
