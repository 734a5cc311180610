"""unlearnlab: Hydra-configured machine-unlearning studies, audited by the NeurIPS 2023 ε."""

from pathlib import Path

__version__ = "0.1.0"


def config_dir() -> str:
    """conf/ beside the package in a wheel, or at the repository root in an editable install."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parents[1] / "conf"):
        if (candidate / "config.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"unlearnlab's conf/ not found beside {here}; reinstall the package")
