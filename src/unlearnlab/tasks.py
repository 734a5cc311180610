"""What `task=NAME` runs. Each task reads the composed config and nothing else."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from rich.console import Console

from unlearnlab.errors import ConfigError


def output_dir(cfg: DictConfig) -> Path:
    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path(cfg.paths.output_dir)


def training_device(trainer_cfg) -> torch.device:
    """Fail before any work when the trainer asks for a GPU this machine lacks."""
    accel = str(trainer_cfg.get("accelerator", "cpu"))
    if accel in ("gpu", "cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"trainer.accelerator={accel} needs CUDA, but none is available here; use trainer=cpu")
        return torch.device("cuda")
    if accel == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if accel == "cpu":
        return torch.device("cpu")
    raise ConfigError(f"trainer.accelerator={accel} is not supported; use cpu, gpu or auto")


# The certificate beside the empirical ε in the terminal; every cert/* metric is in the report.
CERT_COLUMNS = (
    "audit/eps_mean", "cert/epsilon", "audit/eps_above_cert", "audit/eps_above_cert_control",
    "cert/residual", "cert/residual_bound", "cert/retrains", "cost/rte",
)


def print_group_tables(console: Console, results: dict) -> None:
    """After the headline table: one small table per further group of metrics."""
    from unlearnlab.report import grouped_tables
    from unlearnlab.study import TABLE_COLUMNS, rows_table

    rows = [{"method": name, **row} for name, row in results["methods"].items()]
    for title, group in grouped_tables(results):
        if title == "Certified removal":
            columns = [c for c in CERT_COLUMNS if any(c in r for r in rows)]
        else:
            columns = [c for c in group[0] if c != "method" and c not in TABLE_COLUMNS]
        if columns:
            console.print(rows_table(title, rows, columns))


def study(cfg: DictConfig, compute: bool = True) -> float | None:
    """Run (or, with compute=False, only fetch) a study's cells; audit; table, results, report, W&B."""
    from unlearnlab.cells import CellRunner
    from unlearnlab.data import load_study_data
    from unlearnlab.report import write_report
    from unlearnlab.store import Store
    from unlearnlab.study import Study, config_dict, results_table, write_results
    from unlearnlab.tracking import Tracker

    console = Console() if sys.stdout.isatty() else Console(width=200)  # logs: don't squeeze the table
    device = training_device(cfg.trainer)
    out = output_dir(cfg)
    data = load_study_data(cfg.dataset, cfg.split).to(device)
    tracker = Tracker(config_dict(cfg.logger), str(cfg.study_name), out, config_dict(cfg))
    runner = CellRunner(cfg, data, Store(cfg.paths.store), tracker)
    study = Study(cfg, runner, data, console)
    results = study.run(compute=compute)
    path = write_results(results, out)
    console.print(results_table(results))
    print_group_tables(console, results)
    report = write_report(results, cfg, out)
    tracker.audit(f"audit-{cfg.study_name}", report.scalars, report.rows, report.histograms, report.images)
    console.print(f"results: {path}\nreport:  {report.markdown}")
    if cfg.get("method") is not None:
        return results["methods"][cfg.method.name].get("audit/score")
    return None


# Other tasks live in their own modules, imported only when chosen.
TASKS = {
    "study": study,
    "cell": "unlearnlab.sweep:cell_task",
    "audit": "unlearnlab.sweep:audit_task",
    "bench": "unlearnlab.bench:bench_task",
    "verify": "unlearnlab.verify:verify_task",
}


def quiet_lightning() -> None:
    """Lightning's per-fit INFO lines (GPU available, tips) drown the study's progress bar."""
    import warnings

    import lightning  # noqa: F401 - creates its loggers, whose levels are then lowered

    for name in list(logging.root.manager.loggerDict):
        if name.startswith(("lightning", "pytorch_lightning")):
            logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*`srun` command is available.*")
    warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode.*")  # frozen teachers, on purpose


def run_task(cfg: DictConfig):
    from unlearnlab.registry import check_config

    check_config(cfg)  # untrusted _target_s and out-of-range values, before any work
    quiet_lightning()
    task = str(cfg.get("task", "study"))
    if task not in TASKS:
        raise ConfigError(f"task={task} is unknown; use one of {sorted(TASKS)}")
    fn = TASKS[task]
    if isinstance(fn, str):
        import importlib

        module, name = fn.split(":")
        fn = getattr(importlib.import_module(module), name)
    return fn(cfg)
