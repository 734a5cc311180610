"""The one wiring every task shares: data → store → tracker → planner → cell runner.

`open_pipeline(cfg)` is what `task=study`, `task=cell`, `task=audit`, `task=plan` and the bench
call; nothing else builds a CellRunner. Read this file, then plan.py (which cells), cells.py
(computing one) and study.py (running many and auditing them).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from unlearnlab.cells import CellRunner
from unlearnlab.cores import job_cores
from unlearnlab.data import StudyData, load_study_data
from unlearnlab.errors import ConfigError
from unlearnlab.plan import Planner
from unlearnlab.registry import source_loader
from unlearnlab.schemas import register
from unlearnlab.store import Store
from unlearnlab.tracking import Tracker


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


def threads_per_worker(workers: int) -> int:
    """torch's threads for the work around cells in each of a job's W workers (a cell itself
    always runs on one: cells.py)."""
    return max(1, job_cores() // workers)


def quiet_lightning() -> None:
    """Lightning's per-fit INFO lines (GPU available, tips) drown the study's progress bar."""
    import lightning  # noqa: F401 - creates its loggers, whose levels are then lowered

    for name in list(logging.root.manager.loggerDict):
        if name.startswith(("lightning", "pytorch_lightning")):
            logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*`srun` command is available.*")


def run_composed(overrides: list[str], output_dir: Path, fn: Callable[[DictConfig], Any],
                 config_name: str = "config") -> Any:
    """Compose the config `unlearnlab OVERRIDES` would get and call FN on it with its output dir
    at OUTPUT_DIR, in this process. Hydra must be initialised (inside a multirun, or
    `hydra.initialize_config_dir`); its global state is restored afterwards."""
    from hydra import compose

    register()  # the groups' schemas, which conf/ extends (idempotent)
    cfg = compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)
    return run_config(cfg, output_dir, fn)


def run_config(cfg: DictConfig, output_dir: Path, fn: Callable[[DictConfig], Any]) -> Any:
    """Call FN on CFG (a config composed with its `hydra` node) less that node, with its output dir
    at OUTPUT_DIR, in this process; Hydra's global state is restored afterwards."""
    from omegaconf import open_dict, read_write

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
        return fn(task_cfg)
    finally:
        HydraConfig.instance().cfg = saved  # type: ignore[assignment]


def config_dict(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def data_id(data: StudyData) -> str:
    """What the cell keys say about the data: the loaded content's fingerprint."""
    return data.fingerprint()


@dataclass
class Pipeline:
    cfg: DictConfig
    data: StudyData
    store: Store
    tracker: Tracker
    planner: Planner
    runner: CellRunner
    output_dir: Path


def open_pipeline(cfg: DictConfig, *, store: Store | None = None, tracker: Tracker | None = None,
                  out: Path | None = None, device: torch.device | str | None = None) -> Pipeline:
    """Load the data on the training device (DEVICE instead: where a task that never trains reads
    it, e.g. an audit or a plan on a machine without the study's GPU) and wire the pieces; trains
    nothing. The cells are planned from CFG as it is, so their keys are the study's wherever the
    data sits."""
    device = training_device(cfg.trainer) if device is None else torch.device(device)
    out = Path(out) if out is not None else output_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    data = load_study_data(cfg.dataset, cfg.split, source_loader(cfg.dataset)).to(device)
    store = store or Store(cfg.paths.store, lock_timeout=cfg.paths.get("lock_timeout"))
    tracker = tracker or Tracker(config_dict(cfg.logger), str(cfg.study_name), out, config_dict(cfg))
    planner = Planner(cfg, data_id(data))
    return Pipeline(cfg, data, store, tracker, planner, CellRunner(cfg, data, store, tracker), out)
