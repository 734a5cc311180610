"""Hydra instantiation restricted to the code a config is meant to name.

A config is input too: a `_target_` may name any importable callable, so a shared or
downloaded config could run arbitrary code. Every `_target_` passes two checks, before
anything is built:

1. its dotted name starts with a package of a rule (RULES, plus one rule per installed plugin,
   unlearnlab.plugins), so nothing else is even imported;
2. the name is resolved the way Hydra resolves it (hydra_internals.locate, through module
   attributes), and the object it reaches must be *defined* in that package (`__module__`) and
   be what the package is allowed for: an unlearning method, model or audit of unlearnlab or of
   an installed plugin (a plugin may also add dataset sources), a torch.optim optimiser or
   scheduler, a torchvision dataset class or registered model builder, a Hydra launcher or
   sweeper, an Optuna sampler, one of unlearnlab's Hydra callback classes. So
   `unlearnlab.methods.finetune.torch.save` (a function imported into an allowed module) and
   `torchvision.datasets.utils.download_url` (a utility defined there) are refused.

Everything is recognised by what it is, nothing is listed: a method is a subclass of
UnlearningMethod, an audit a class called on an AuditInput that declares its `metrics`, a model a
torch.nn.Module subclass *or a function annotated to return one* (`def resnet18(...) -> nn.Module`),
a dataset source a function annotated to return a data.sources.Source.

`check_targets` walks a whole config (lists too); `checks.check_config` runs it over the composed
config, `hydra.*` included, and cli.py runs that before Hydra instantiates anything. check_config
runs the first check alone (`imports=False`) before anything is imported, so a package no plugin
registered is refused in about a second: importing this module imports neither torch nor Lightning
(the classes a target is judged against are imported when one is judged).
"""

from __future__ import annotations

import functools
import inspect
import typing
from dataclasses import dataclass
from typing import Any, Callable

import hydra.utils
from omegaconf import DictConfig, ListConfig, OmegaConf

from unlearnlab import plugins
from unlearnlab.errors import ConfigError
from unlearnlab.hydra_internals import CORE_PLUGINS, locate
from unlearnlab.metrics import Metric


def _subclass(obj: Any, base: Callable[[], type | tuple[type, ...]]) -> bool:
    return isinstance(obj, type) and issubclass(obj, base())


def _returns(obj: Any, base: Callable[[], type]) -> bool:
    """A function whose return annotation is BASE or a subclass: a builder of BASE, by what it says it builds."""
    if not inspect.isfunction(obj):
        return False
    try:
        returned = typing.get_type_hints(obj).get("return")
    except Exception:  # noqa: BLE001 - an annotation that does not resolve says nothing
        return False
    return isinstance(returned, type) and issubclass(returned, base())


# The base classes are imported when a target is judged, not with this module: the start-up checks
# import it, and refuse a name no rule allows before torch or Lightning is imported.
def _module_class() -> type:
    import torch.nn

    return torch.nn.Module


def _method_class() -> type:
    from unlearnlab.methods.base import UnlearningMethod

    return UnlearningMethod


def _source_class() -> type:
    from unlearnlab.data.sources import Source

    return Source


def _is_method(obj: Any) -> bool:
    return _subclass(obj, _method_class)


def _is_model(obj: Any) -> bool:
    """A torch.nn.Module subclass, or a function annotated to return one (a model builder)."""
    return _subclass(obj, _module_class) or _returns(obj, _module_class)


def _is_audit(obj: Any) -> bool:
    """A class whose instances are called on an AuditInput and that declares its metrics (audits.base.Audit)."""
    declared = getattr(obj, "metrics", None)
    return (isinstance(obj, type) and any("__call__" in k.__dict__ for k in obj.__mro__[:-1])
            and isinstance(declared, tuple) and all(isinstance(m, Metric) for m in declared))


def _is_source(obj: Any) -> bool:
    """A dataset loader: a function annotated to return a data.sources.Source."""
    return _returns(obj, _source_class)


def _is_plugin_code(obj: Any) -> bool:
    return _is_method(obj) or _is_model(obj) or _is_audit(obj) or _is_source(obj)


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
    Rule("unlearnlab.models.", "a model class or a function annotated to return a torch.nn.Module", _is_model),
    Rule("unlearnlab.audits.", "an audit class (called on an AuditInput, declaring its metrics)", _is_audit),
    Rule("unlearnlab.", "one of unlearnlab's Hydra callback classes", _is_callback),  # after the three above
    Rule("torch.optim.", "an optimiser or LR scheduler class", _is_optim),
    Rule("torchvision.datasets.", "a dataset class", _is_dataset),
    Rule("torchvision.models.", "a model class or registered model builder", _is_tv_model),
    Rule("hydra_plugins.", "a Hydra launcher or sweeper class", _is_hydra_plugin),
    Rule(CORE_PLUGINS, "a Hydra launcher or sweeper class", _is_hydra_plugin),
    Rule("optuna.samplers.", "an Optuna sampler class", _is_sampler),
)
ALLOWED = ("unlearnlab methods/models/audits/Hydra callbacks, torch.optim, torchvision datasets/models, "
           "Hydra launchers/sweepers, Optuna samplers, installed unlearnlab plugins")
PLUGIN_KINDS = "an UnlearningMethod, model, audit or dataset source"


def plugin_rules(installed: tuple[plugins.Plugin, ...]) -> tuple[Rule, ...]:
    """One rule per installed plugin: its own package, for the kinds of code a plugin may add."""
    return tuple(Rule(f"{p.package}.", f"{PLUGIN_KINDS} of {p.label}", _is_plugin_code) for p in installed)


def rules() -> tuple[Rule, ...]:
    return RULES + plugin_rules(plugins.installed())


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}"


def target_problem(target: str, imports: bool = True) -> str | None:
    """Why TARGET may not be instantiated, or None when it may. IMPORTS=False: only what its name
    says (no rule's package), importing nothing; None then means it has yet to be resolved."""
    if not imports:
        return _name_problem(target, plugins.installed())
    return _target_problem(target, plugins.installed())


def _rule(target: str, installed: tuple[plugins.Plugin, ...]) -> Rule | None:
    return next((r for r in RULES + plugin_rules(installed) if target.startswith(r.prefix)), None)


def _name_problem(target: str, installed: tuple[plugins.Plugin, ...]) -> str | None:
    if _rule(target, installed) is not None:
        return None
    top = target.split(".")[0]
    return (f"it is outside the allowed packages ({ALLOWED}): no installed plugin registered {top} "
            f"(a package becomes a plugin by its entry point in group {plugins.ENTRY_POINT_GROUP}, "
            f"installed with pip)")


@functools.lru_cache(maxsize=None)
def _target_problem(target: str, installed: tuple[plugins.Plugin, ...]) -> str | None:
    rule = _rule(target, installed)
    if rule is None:
        return _name_problem(target, installed)
    try:
        obj = locate(target)
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


def check_targets(node: Any, where: str = "config", imports: bool = True) -> None:
    """Refuse any `_target_` in NODE (a config or plain container, resolved or not) that the
    rules do not allow. An interpolated `_target_` is refused: the name must be readable as it is.
    IMPORTS=False: only what the names say, importing nothing (checks.check_config runs that over
    the whole config first, so a package no plugin registered is refused before torch is imported)."""
    if isinstance(node, (DictConfig, ListConfig)):
        node = OmegaConf.to_container(node, resolve=False)
    if isinstance(node, dict):
        target = node.get("_target_")
        if target is not None:
            if not isinstance(target, str) or "${" in target:
                raise ConfigError(f"{where}: _target_ {target!r} must be a plain dotted name, not an interpolation")
            why = target_problem(target, imports)
            if why is not None:
                raise ConfigError(f"{where}: _target_ {target!r} is not allowed: {why}")
        for key, value in node.items():
            check_targets(value, f"{where}.{key}", imports)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            check_targets(value, f"{where}[{i}]", imports)


def target_object(target: str, where: str) -> Any:
    """The allowed object a `_target_` names (checked first)."""
    check_targets({"_target_": target}, where)
    return locate(target)


def instantiate(cfg: DictConfig | dict, where: str = "config", **kwargs: Any) -> Any:
    plain = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    check_targets(plain, where)
    return hydra.utils.instantiate(plain, **kwargs)


def source_loader(dataset_cfg: Any) -> Callable[..., Any] | None:
    """The loader a `dataset=` option names with `_target_` (checked), or None for a built-in source."""
    target = dataset_cfg.get("_target_") if dataset_cfg is not None else None
    return None if target is None else target_object(str(target), "config.dataset")
