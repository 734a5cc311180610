"""Hydra instantiation restricted to code we trust.

A config is input too: a `_target_` may name any importable callable, so a shared or
downloaded config could run arbitrary code. Only these prefixes are instantiated.
"""

from __future__ import annotations

from typing import Any

import hydra.utils
from omegaconf import DictConfig, OmegaConf

from unlearnlab.errors import ConfigError

ALLOWED_TARGET_PREFIXES = (
    "unlearnlab.",
    "torch.optim.",
    "torchvision.datasets.",
    "torchvision.models.",
)


def check_targets(node: Any, where: str = "config") -> None:
    if isinstance(node, dict):
        target = node.get("_target_")
        if target is not None and not str(target).startswith(ALLOWED_TARGET_PREFIXES):
            raise ConfigError(
                f"{where}: _target_ {target!r} is not allowed; use a class under "
                + ", ".join(p.rstrip(".") for p in ALLOWED_TARGET_PREFIXES)
            )
        for key, value in node.items():
            check_targets(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            check_targets(value, f"{where}[{i}]")


def _numbers(node: Any, where: str) -> None:
    """Hyperparameters every recipe and method shares: learning rates, epochs, batch sizes."""
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        name = f"{where}.{key}"
        if key == "lr" or key.endswith("_lr"):
            if not (value >= 0 and value != float("inf")):
                raise ConfigError(f"{name}={value} must be a finite number ≥ 0, e.g. {name}=0.01")
        elif key == "epochs" or key.endswith("_epochs"):
            if value < 0:
                raise ConfigError(f"{name}={value} must be ≥ 0")
        elif key == "batch_size" or key.endswith("_batch_size"):
            if value < 1:
                raise ConfigError(f"{name}={value} must be ≥ 1")
        elif key == "weight_decay" and value < 0:
            raise ConfigError(f"{name}={value} must be ≥ 0")


def check_config(cfg: DictConfig | dict) -> None:
    """Refuse, before any work starts, a config that names code outside the allowlist or holds
    an out-of-range study size, recipe or method hyperparameter. One ConfigError, one line."""
    plain = OmegaConf.to_container(cfg, resolve=False) if isinstance(cfg, DictConfig) else dict(cfg)
    plain.pop("hydra", None)
    check_targets(plain)
    n = plain.get("n_models")
    if isinstance(n, int) and not isinstance(n, bool) and n < 2:
        raise ConfigError(f"n_models={n} must be ≥ 2: the audit compares two samples of models")

    def resolved(key: str) -> Any:  # only the parts checked here (paths need Hydra's runtime)
        node = cfg.get(key)
        return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node

    _numbers(resolved("train"), "train")
    _numbers(resolved("method"), "method")
    for name, mcfg in (resolved("methods") or {}).items():
        _numbers(mcfg, f"methods.{name}")


def instantiate(cfg: DictConfig | dict, where: str = "config", **kwargs: Any) -> Any:
    plain = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    check_targets(plain, where)
    return hydra.utils.instantiate(plain, **kwargs)
