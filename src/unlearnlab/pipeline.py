"""The one wiring every task shares: data → store → tracker → planner → cell runner.

`open_pipeline(cfg)` is what `task=study`, `task=cell`, `task=audit`, `task=plan` and the bench
call; nothing else builds a CellRunner. Read this file, then plan.py (which cells), cells.py
(computing one) and study.py (running many and auditing them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from unlearnlab.cells import CellRunner
from unlearnlab.data import StudyData, load_study_data
from unlearnlab.errors import ConfigError
from unlearnlab.plan import Planner
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
                  out: Path | None = None) -> Pipeline:
    """Load the data on the training device and wire the pieces; trains nothing."""
    device = training_device(cfg.trainer)
    out = Path(out) if out is not None else output_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    data = load_study_data(cfg.dataset, cfg.split).to(device)
    store = store or Store(cfg.paths.store, lock_timeout=cfg.paths.get("lock_timeout"))
    tracker = tracker or Tracker(config_dict(cfg.logger), str(cfg.study_name), out, config_dict(cfg))
    planner = Planner(cfg, data_id(data))
    return Pipeline(cfg, data, store, tracker, planner, CellRunner(cfg, data, store, tracker), out)
