"""unlearnlab as a library: `compose` and `run` for notebooks and scripts (`unlearnlab.compose`,
`unlearnlab.run`), with exactly the command line's start-up checks.

`compose(overrides)` is the config `unlearnlab OVERRIDES` would run; `run(overrides)` runs it in
this process and returns what the run wrote to results.json. Both search unlearnlab's conf/ and
every installed plugin's (the SearchPathPlugin in src/hydra_plugins), and refuse a bad config
with one ConfigError before anything trains, as the CLI does (checks.check_config, Hydra's own
refusals turned into one line). Hydra's global state (a notebook may hold its own) is put back.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Iterator

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from unlearnlab.checks import check_config, composition_error
from unlearnlab.errors import ConfigError
from unlearnlab.pipeline import run_config
from unlearnlab.plugins import config_dir
from unlearnlab.schemas import register
from unlearnlab.tasks import run_task

RESULT_TASKS = ("study", "audit")  # the tasks that write results.json


@contextlib.contextmanager
def hydra_on_unlearnlab() -> Iterator[None]:
    """Hydra initialised on unlearnlab's conf/ (plugins' conf/ join through the SearchPathPlugin)
    for this block; whatever Hydra state the caller had is restored afterwards."""
    register()
    gh = GlobalHydra.instance()
    previous = gh.hydra if gh.is_initialized() else None
    gh.clear()
    try:
        with initialize_config_dir(config_dir(), version_base="1.3"):
            yield
    finally:
        now = GlobalHydra.instance()  # initialize_config_dir put back a copy of the (cleared) singleton
        now.clear()
        if previous is not None:
            now.initialize(previous)


def composed(overrides: list[str]) -> DictConfig:
    """The config with its `hydra` node, checked as the CLI checks it (Hydra initialised)."""
    try:
        cfg = hydra_compose(config_name="config", overrides=list(overrides), return_hydra_config=True)
    except (ConfigCompositionException, MissingConfigException) as err:
        line = composition_error(err)
        hydra_says = str(err).split("\nConfig search path")[0]  # Hydra's words, without its search path listing
        raise (line or ConfigError(" ".join(hydra_says.split()))) from None
    check_config(cfg)
    return cfg


def compose(overrides: list[str]) -> DictConfig:
    """`unlearnlab OVERRIDES`'s config, checked, without the `hydra` node (what a task receives)."""
    with hydra_on_unlearnlab():
        cfg = composed(overrides)
    with read_write(cfg), open_dict(cfg):
        del cfg["hydra"]
    return cfg


def run(overrides: list[str], output_dir: str | Path | None = None) -> dict[str, Any]:
    """Run `unlearnlab OVERRIDES` here; the content of the run's results.json. OUTPUT_DIR defaults
    to hydra.run.dir (outputs/DATE/TIME under paths.root), as on the command line."""
    with hydra_on_unlearnlab():
        cfg = composed(overrides)
        task = str(cfg.get("task", "study"))
        if task not in RESULT_TASKS:
            raise ConfigError(f"unlearnlab.run runs the tasks that write results.json ({', '.join(RESULT_TASKS)}); "
                              f"task={task} writes none: run it from the command line")
        out = Path(output_dir) if output_dir is not None else Path(str(OmegaConf.select(cfg, "hydra.run.dir")))
        run_config(cfg, out, run_task)
    return json.loads((out / "results.json").read_text())
