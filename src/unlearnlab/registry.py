"""Hydra instantiation restricted to the code a config is meant to name.

A config is input too: a `_target_` may name any importable callable, so a shared or
downloaded config could run arbitrary code. Every `_target_` passes two checks, before
anything is built:

1. its dotted name starts with a package listed in RULES, so nothing else is even imported;
2. the name is resolved the way Hydra resolves it (Hydra's `_locate`, through module
   attributes), and the object it reaches must be *defined* in that package (`__module__`) and
   be what the package is allowed for: an unlearning method, model or audit class of
   unlearnlab, a listed model builder, a torch.optim optimiser or scheduler, a torchvision
   dataset class or registered model builder, a Hydra launcher or sweeper, an Optuna sampler,
   one of unlearnlab's Hydra callback classes. So `unlearnlab.methods.finetune.torch.save` (a function
   imported into an allowed module) and `torchvision.datasets.utils.download_url` (a utility
   defined there) are refused.

`check_targets` walks a whole config (lists too); `checks.check_config` runs it over the composed
config, `hydra.*` included, and cli.py runs that before Hydra instantiates anything.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Any, Callable

import hydra.utils
from hydra._internal.utils import _locate  # what hydra.utils.instantiate resolves a _target_ with
from omegaconf import DictConfig, ListConfig, OmegaConf

from unlearnlab.errors import ConfigError
from unlearnlab.methods.base import UnlearningMethod

# Model builders that are functions, not classes (a class needs no listing).
MODEL_BUILDERS = frozenset({"unlearnlab.models.resnet.resnet18", "unlearnlab.models.resnet.resnet18_cifar"})


def _subclass(obj: Any, base: Callable[[], type | tuple[type, ...]]) -> bool:
    return isinstance(obj, type) and issubclass(obj, base())


def _is_method(obj: Any) -> bool:
    return _subclass(obj, lambda: UnlearningMethod)


def _is_model(obj: Any) -> bool:
    import torch.nn

    return _subclass(obj, lambda: torch.nn.Module) or _qualname(obj) in MODEL_BUILDERS


def _is_audit(obj: Any) -> bool:
    """A class whose instances are called on an AuditInput (audits follow audits.base.Audit)."""
    return isinstance(obj, type) and any("__call__" in k.__dict__ for k in obj.__mro__[:-1])


def _is_optim(obj: Any) -> bool:
    import torch.optim

    return _subclass(obj, lambda: (torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler))


def _is_dataset(obj: Any) -> bool:
    import torch.utils.data

    return _subclass(obj, lambda: torch.utils.data.Dataset)


def _is_tv_model(obj: Any) -> bool:
    import torch.nn
    import torchvision.models

    builders = {_qualname(torchvision.models.get_model_builder(n)) for n in torchvision.models.list_models()}
    return _subclass(obj, lambda: torch.nn.Module) or _qualname(obj) in builders


def _is_hydra_plugin(obj: Any) -> bool:
    from hydra.plugins.launcher import Launcher
    from hydra.plugins.sweeper import Sweeper

    return _subclass(obj, lambda: (Launcher, Sweeper))


def _is_sampler(obj: Any) -> bool:
    import optuna.samplers

    return _subclass(obj, lambda: optuna.samplers.BaseSampler)


def _is_callback(obj: Any) -> bool:
    from hydra.experimental.callback import Callback

    return _subclass(obj, lambda: Callback)


@dataclass(frozen=True)
class Rule:
    prefix: str  # the dotted name must start with it, and the object must be defined under it
    what: str  # for messages
    accept: Callable[[Any], bool]


RULES = (
    Rule("unlearnlab.methods.", "an UnlearningMethod class", _is_method),
    Rule("unlearnlab.models.", "a model class (or a builder listed in registry.MODEL_BUILDERS)", _is_model),
    Rule("unlearnlab.audits.", "an audit class", _is_audit),
    Rule("unlearnlab.", "one of unlearnlab's Hydra callback classes", _is_callback),  # after the three above
    Rule("torch.optim.", "an optimiser or LR scheduler class", _is_optim),
    Rule("torchvision.datasets.", "a dataset class", _is_dataset),
    Rule("torchvision.models.", "a model class or registered model builder", _is_tv_model),
    Rule("hydra_plugins.", "a Hydra launcher or sweeper class", _is_hydra_plugin),
    Rule("hydra._internal.core_plugins.", "a Hydra launcher or sweeper class", _is_hydra_plugin),
    Rule("optuna.samplers.", "an Optuna sampler class", _is_sampler),
)
ALLOWED = ("unlearnlab methods/models/audits/Hydra callbacks, torch.optim, torchvision datasets/models, "
           "Hydra launchers/sweepers, Optuna samplers")


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}"


@functools.lru_cache(maxsize=None)
def target_problem(target: str) -> str | None:
    """Why TARGET may not be instantiated, or None when it may."""
    rule = next((r for r in RULES if target.startswith(r.prefix)), None)
    if rule is None:
        return f"it is outside the allowed packages ({ALLOWED})"
    try:
        obj = _locate(target)
    except Exception as err:  # noqa: BLE001 - any failure to resolve is a refusal
        cause = err.__cause__ or err
        return f"it cannot be imported ({type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''})"
    module = getattr(obj, "__module__", None) or ""
    if not (module + ".").startswith(rule.prefix):
        return f"it resolves to {_qualname(obj)}, which is not defined in {rule.prefix.rstrip('.')}"
    if not rule.accept(obj):
        kind = "class" if isinstance(obj, type) else "function" if inspect.isfunction(obj) else type(obj).__name__
        return f"it resolves to the {kind} {_qualname(obj)}, not {rule.what}"
    return None


def check_targets(node: Any, where: str = "config") -> None:
    """Refuse any `_target_` in NODE (a config or plain container, resolved or not) that the
    rules do not allow. An interpolated `_target_` is refused: the name must be readable as it is."""
    if isinstance(node, (DictConfig, ListConfig)):
        node = OmegaConf.to_container(node, resolve=False)
    if isinstance(node, dict):
        target = node.get("_target_")
        if target is not None:
            if not isinstance(target, str) or "${" in target:
                raise ConfigError(f"{where}: _target_ {target!r} must be a plain dotted name, not an interpolation")
            why = target_problem(target)
            if why is not None:
                raise ConfigError(f"{where}: _target_ {target!r} is not allowed: {why}")
        for key, value in node.items():
            check_targets(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            check_targets(value, f"{where}[{i}]")


def target_object(target: str, where: str) -> Any:
    """The allowed object a `_target_` names (checked first)."""
    check_targets({"_target_": target}, where)
    return _locate(target)


def instantiate(cfg: DictConfig | dict, where: str = "config", **kwargs: Any) -> Any:
    plain = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    check_targets(plain, where)
    return hydra.utils.instantiate(plain, **kwargs)
