"""The `unlearnlab` command: compose the Hydra config, run one task. Thin on purpose."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from unlearnlab.errors import ConfigError


def config_dir() -> str:
    """conf/ beside the package in a wheel, or at the repository root in an editable install."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parents[1] / "conf"):
        if (candidate / "config.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"unlearnlab's conf/ not found beside {here}; reinstall the package")


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")
def app(cfg: DictConfig) -> float | None:
    from unlearnlab.store import CorruptEntryError
    from unlearnlab.tasks import run_task
    from unlearnlab.training import DivergedError

    try:
        return run_task(cfg)
    except (ConfigError, DivergedError, CorruptEntryError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
