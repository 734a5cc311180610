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


def _check_targets(node: Any, where: str = "config") -> None:
    if isinstance(node, dict):
        target = node.get("_target_")
        if target is not None and not str(target).startswith(ALLOWED_TARGET_PREFIXES):
            raise ConfigError(
                f"{where}: _target_ {target!r} is not allowed; use a class under "
                + ", ".join(p.rstrip(".") for p in ALLOWED_TARGET_PREFIXES)
            )
        for key, value in node.items():
            _check_targets(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _check_targets(value, f"{where}[{i}]")


def instantiate(cfg: DictConfig | dict, where: str = "config", **kwargs: Any) -> Any:
    plain = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    _check_targets(plain, where)
    return hydra.utils.instantiate(plain, **kwargs)
