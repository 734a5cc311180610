"""unlearnlab: Hydra-configured machine-unlearning studies, audited by the NeurIPS 2023 ε.

As a library (notebooks, scripts), with the command line's checks:

    import unlearnlab
    cfg = unlearnlab.compose(["method=[identity,retrain,my_method]", "n_models=8"])   # a DictConfig
    results = unlearnlab.run(["method=[identity,retrain,my_method]", "n_models=8"])   # results.json's content

Importing the package imports nothing else (torch included): `unlearnlab --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__version__ = "0.1.0"


def compose(overrides: list[str] | tuple[str, ...] = ()) -> Any:
    """The config `unlearnlab OVERRIDES` would run (a DictConfig, `hydra` node removed), checked
    as the command line checks it; a bad config raises unlearnlab.errors.ConfigError (one line)."""
    from unlearnlab.api import compose as _compose

    return _compose(list(overrides))


def run(overrides: list[str] | tuple[str, ...] = (), output_dir: str | Path | None = None) -> dict[str, Any]:
    """Run `unlearnlab OVERRIDES` in this process and return the content of its results.json.
    Output goes to OUTPUT_DIR (default: hydra.run.dir, as the command line does)."""
    from unlearnlab.api import run as _run

    return _run(list(overrides), output_dir)
