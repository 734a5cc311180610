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


def run_task(cfg: DictConfig):
    from unlearnlab.checks import check_config
    from unlearnlab.pipeline import quiet_lightning

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
