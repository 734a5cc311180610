"""What `task=NAME` runs. Each task reads the composed config and nothing else."""

from __future__ import annotations

import importlib
import logging
import sys
import warnings
from pathlib import Path

import torch
from omegaconf import DictConfig
from rich.console import Console

from unlearnlab.errors import ConfigError


def study(cfg: DictConfig, compute: bool = True) -> float | None:
    """Run (or, with compute=False, only fetch) a study's cells; audit; table, results, report, W&B."""
    from unlearnlab.pipeline import open_pipeline
    from unlearnlab.report import write_report
    from unlearnlab.study import Study, write_results
    from unlearnlab.tables import print_results
    from unlearnlab.workers import threads_per_worker

    console = Console() if sys.stdout.isatty() else Console(width=200)  # logs: don't squeeze the table
    torch.set_num_threads(threads_per_worker(1))  # the cores this job owns (SLURM, joblib), not the machine's
    pipe = open_pipeline(cfg)
    results = Study(pipe, console).run(compute=compute)
    path = write_results(results, pipe.output_dir)
    print_results(console, results)
    report = write_report(results, cfg, pipe.output_dir)
    pipe.tracker.log_study(results, report, [path])  # one `audit` run per method + the `study` run (+ artifact)
    console.print(f"results: {path}\nreport:  {report.markdown}")
    if cfg.get("method") is not None:
        return results["methods"][cfg.method.name].get("audit/score")
    return None


# Other tasks live in their own modules, imported only when chosen.
TASKS = {
    "study": study,
    "cell": "unlearnlab.sweep:cell_task",
    "audit": "unlearnlab.sweep:audit_task",
    "plan": "unlearnlab.plan_task:plan_task",
    "bench": "unlearnlab.bench:bench_task",
    "verify": "unlearnlab.verify:verify_task",
}


def quiet_lightning() -> None:
    """Lightning's per-fit INFO lines (GPU available, tips) drown the study's progress bar."""
    import lightning  # noqa: F401 - creates its loggers, whose levels are then lowered

    for name in list(logging.root.manager.loggerDict):
        if name.startswith(("lightning", "pytorch_lightning")):
            logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*`srun` command is available.*")


def run_composed(overrides: list[str], output_dir: Path, config_name: str = "config"):
    """Run `unlearnlab OVERRIDES` in this process with its output dir at OUTPUT_DIR.

    Hydra must be initialised (inside a multirun, or `hydra.initialize_config_dir`); its global
    state is restored afterwards. The end-of-sweep audit and the in-process tests use this.
    """
    from hydra import compose
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict, read_write

    cfg = compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    with read_write(cfg.hydra.runtime), open_dict(cfg.hydra.runtime):
        cfg.hydra.runtime.output_dir = str(output_dir.resolve())
    saved = HydraConfig.instance().cfg
    HydraConfig.instance().set_config(cfg)
    try:
        task_cfg = cfg.copy()
        with read_write(task_cfg), open_dict(task_cfg):
            del task_cfg["hydra"]
        return run_task(task_cfg)
    finally:
        HydraConfig.instance().cfg = saved  # type: ignore[assignment]


def run_task(cfg: DictConfig):
    from unlearnlab.checks import check_config

    check_config(cfg)  # untrusted _target_s and out-of-range values, before any work
    quiet_lightning()
    task = str(cfg.get("task", "study"))
    if task not in TASKS:
        raise ConfigError(f"task={task} is unknown; use one of {sorted(TASKS)}")
    fn = TASKS[task]
    if isinstance(fn, str):
        module, name = fn.split(":")
        fn = getattr(importlib.import_module(module), name)
    return fn(cfg)
