"""A run never writes into a folder another run owns.

Hydra names a run's folder `outputs/DATE/TIME` and a sweep's `multirun/DATE/TIME`, and creates it
with `exist_ok`: two studies started in the same second shared one folder (one study's results
were silently replaced), and a study given an existing `hydra.run.dir` wrote its config beside
the previous study's results.json.

`RunDirCallback` (conf/hydra/callbacks/audit.yaml, on by default) claims the folder before Hydra
creates it: `on_run_start` for `hydra.run.dir`, `on_multirun_start` for `hydra.sweep.dir`. A run
owns a folder once it has created the marker file `.unlearnlab-run` in it (O_EXCL: of two
processes, one wins). A folder that has a marker or another run's files (`.hydra/`,
results.json, ...) belongs to that run:
- the folder from the config's pattern: this run takes the next free `NAME-2`, `NAME-3`, ...;
- a folder given on the command line (`hydra.run.dir=...`): refused in one line (exit 2), since
  writing elsewhere than asked would be a surprise; give a new folder or remove the old one.
A sweep's jobs recompose their config from the sweep's overrides, so a renamed sweep folder is
added to them (`hydra.sweep.dir=...`). Folders inside a claimed one (a sweep's job folders, the
end-of-sweep audits) belong to its run.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from unlearnlab import interrupts
from unlearnlab.errors import ConfigError, check_path_length

MARK = ".unlearnlab-run"
RUN_FILES = (MARK, ".hydra", "multirun.yaml", "results.json", "report.md", "cells.json", "bench.json")
MAX_TRIES = 1000


def owned(folder: Path) -> str | None:
    """The first sign that FOLDER belongs to a run (a marker or a run's file), or None."""
    return next((name for name in RUN_FILES if os.path.lexists(folder / name)), None)


def claim(path: Path, may_rename: bool, what: str) -> Path:
    """PATH (or, when MAY_RENAME, the first free PATH-N) created and marked as this run's."""
    check_path_length(path, what)
    for n in range(1, MAX_TRIES + 1):
        candidate = path if n == 1 else path.with_name(f"{path.name}-{n}")
        try:
            candidate.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(f"{what}={candidate} cannot be created ({err.strerror or err}); choose another folder") from None
        sign = owned(candidate)
        if sign is None:
            try:
                fd = os.open(candidate / MARK, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                sign = MARK  # another process claimed it a moment ago
            except OSError as err:
                raise ConfigError(f"{what}={candidate} is not writable ({err.strerror or err}); choose another folder") from None
            else:
                with os.fdopen(fd, "w") as f:
                    f.write(f"{socket.gethostname()} {os.getpid()} {time.strftime('%Y-%m-%dT%H:%M:%S')}\n")
                return candidate
        if not may_rename:
            raise ConfigError(
                f"{what}={candidate} already holds another run's output ({sign}); a run never writes into another "
                f"run's folder: give a new {what}, or remove that folder"
            )
    raise ConfigError(f"{what}: {path} and {MAX_TRIES - 1} numbered variants all belong to other runs; "
                      f"give a new {what}")


def _typed(config: DictConfig, key: str) -> bool:
    """Whether KEY was given on the command line (as opposed to the config's pattern)."""
    typed = {str(o).split("=", 1)[0].lstrip("+~") for o in (config.hydra.overrides.get("hydra") or [])}
    return key in typed


def _quoted(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def claim_output_dir(config: DictConfig, kind: str) -> Path:
    """Claim hydra.KIND.dir (KIND: run | sweep) for this run and point the config at what was claimed."""
    key = f"hydra.{kind}.dir"
    path = Path(str(OmegaConf.select(config, key)))
    got = claim(path, may_rename=not _typed(config, key), what=key)
    if got != path:
        with read_write(config.hydra), open_dict(config.hydra):
            config.hydra[kind].dir = str(got)
            if kind == "sweep":  # each job recomposes its config from these overrides
                config.hydra.overrides.hydra.append(f"{key}={_quoted(str(got))}")
    return got


try:
    from hydra.experimental.callback import Callback as _HydraCallback
except ImportError:  # pragma: no cover
    _HydraCallback = object  # type: ignore[misc,assignment]


class RunDirCallback(_HydraCallback):  # type: ignore[misc,valid-type]
    """Claims the run's (or the sweep's) output folder before Hydra creates it (see the module)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._claim(config, "run")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._claim(config, "sweep")
        interrupts.background(f"running the sweep's jobs (output {config.hydra.sweep.dir})")

    @staticmethod
    def _claim(config: DictConfig, kind: str) -> None:
        try:
            claim_output_dir(config, kind)
        except ConfigError as err:
            print(f"error: {err}", file=sys.stderr, flush=True)
            sys.exit(2)
