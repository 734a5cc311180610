"""Planning: config (+ the loaded data's fingerprint) → the cells of a study and their keys.

Pure: nothing here trains, reads the store or opens a run, so the study, a sweep job, the
audit task, `task=plan` and the bench all plan the same cells the same way.

A cell's key covers every input of its computation, derived from what is handed to the code
rather than from a hand-kept list (`Planner`):
- the Trainer flags every fit receives (`trainer_flags`), minus the ones listed in
  TRAINER_NO_EFFECT, which change what is shown or saved, never a number;
- the model's and the method's constructor arguments as they are bound: the config's values and
  the signature's defaults for the rest (`bound_arguments`), so a default set in Python is in
  the key as much as one set in YAML, and moving a value between the two changes nothing;
- the code: `code_version` of the model and the method class (bump it when what the class
  computes changes; store.FORMAT does the same for the framework);
- dataset options, the loaded data's fingerprint, the split, the recipe, the seed, the original's key.
Never in a key: where data was read from, the logger, the output folder, the thread count.
"""

from __future__ import annotations

import hashlib
import inspect
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from omegaconf import DictConfig, OmegaConf

from unlearnlab.errors import ConfigError
from unlearnlab.registry import target_object
from unlearnlab.schemas import location_keys
from unlearnlab.store import SeededKeys, cell_key

RETRAIN = "retrain"  # the reference every method is audited against unless it names its own
# Keys of a method config that tell the framework how to plan/audit it; the method never sees them.
FRAMEWORK_KEYS = ("name", "reference")
# lightning.Trainer arguments that cannot change a cell's numbers: what is displayed, logged or
# saved beside it (tests/test_reliability.py holds each to lightning.Trainer's signature).
TRAINER_NO_EFFECT = ("enable_progress_bar", "enable_checkpointing", "enable_model_summary", "log_every_n_steps",
                     "default_root_dir", "profiler", "enable_autolog_hparams", "model_registry")
MODEL_INJECTED = ("in_channels", "num_classes", "image_size")  # models.build_model passes these
METHOD_INJECTED = ("model", "data")  # cells.CellRunner passes these


def derive_seed(base: int, *parts: Any) -> int:
    """Independent, stable seeds per (kind, name, index) from one study seed."""
    text = "/".join(str(p) for p in (base, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little") & 0x7FFFFFFF


def plain(cfg) -> Any:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


def trainer_flags(trainer_cfg) -> dict[str, Any]:
    """The lightning.Trainer arguments every fit of a cell receives (cells.trainer_factory)."""
    return dict(plain(trainer_cfg))


def trainer_key(trainer_cfg) -> dict[str, Any]:
    """What a cell key holds of the Trainer: every flag but TRAINER_NO_EFFECT, precision as
    Lightning reads it (`32` and `'32-true'` are one setting)."""
    from lightning.fabric.connector import _convert_precision_to_unified_args

    flags = {k: v for k, v in trainer_flags(trainer_cfg).items() if k not in TRAINER_NO_EFFECT}
    if flags.get("precision") is not None:
        try:
            flags["precision"] = str(_convert_precision_to_unified_args(flags["precision"]))
        except (ValueError, TypeError):
            pass  # refused at start-up (checks.check_trainer); kept as given
    return flags


def _key_value(value: Any) -> Any:
    """A signature default as a key holds it: plain values as they are, anything else by its
    repr, or its type's name when the repr is an address (it would differ in every process)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_key_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _key_value(v) for k, v in value.items()}
    text = repr(value)
    return f"{type(value).__module__}.{type(value).__qualname__}" if " at 0x" in text else text


def signature_defaults(obj: Any) -> dict[str, Any]:
    """The keyword arguments OBJ (a class or function) takes with a default, and the default; for a
    class, following `**kwargs` its __init__ passes on to the base classes (as checks.bind_arguments)."""
    if not isinstance(obj, type):
        inits = [obj]
    else:
        inits = [k.__dict__["__init__"] for k in obj.__mro__ if k is not object and "__init__" in k.__dict__]
    found: dict[str, Any] = {}
    for i, init in enumerate(inits):
        params = list(inspect.signature(init).parameters.values())[1 if isinstance(obj, type) else 0:]
        for p in params:
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in found:
                found[p.name] = p.default
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return {k: _key_value(v) for k, v in found.items() if v is not inspect.Parameter.empty}


def bound_arguments(given: dict[str, Any], injected: tuple[str, ...], where: str) -> dict[str, Any]:
    """GIVEN (a config with `_target_`) plus the target's default for every argument it does not
    give: the arguments the code runs with, as a key holds them. `code_version` is the class's
    (or function's) own, 1 when it declares none."""
    target = given.get("_target_")
    if not isinstance(target, str):
        return dict(given)
    obj = target_object(target, where)
    defaults = {k: v for k, v in signature_defaults(obj).items() if k not in given and k not in injected}
    return {**given, **defaults, "code_version": getattr(obj, "code_version", 1)}


@dataclass(frozen=True)
class Cell:
    kind: str  # original | retrain | unlearn
    name: str  # "original", "retrain" or the method's name
    index: int
    seed: int
    spec: dict[str, Any] = field(hash=False, compare=False)
    upstream: Cell | None = field(default=None, hash=False, compare=False, repr=False)  # the original
    args: dict[str, Any] | None = field(default=None, hash=False, compare=False, repr=False)  # the method's config
    known_key: str | None = field(default=None, hash=False, compare=False, repr=False)  # cell_key(spec), if computed

    @cached_property
    def key(self) -> str:
        return self.known_key or cell_key(self.spec)

    @property
    def label(self) -> str:
        return self.name if self.kind == "original" else f"{self.name}#{self.index}"

    @property
    def method_config(self) -> dict[str, Any]:
        """The method's config as given (framework keys removed): what the class is built with.
        The key holds these arguments bound to the signature (spec["method"])."""
        return {k: v for k, v in (self.args or {}).items() if k not in FRAMEWORK_KEYS}


def selected_methods(cfg: DictConfig) -> dict[str, DictConfig]:
    """The study's methods: `methods`, filled by the `method` group (`method=[identity,retrain,scrub]`).
    A method's `reference` (another method whose cells it is audited against) must be one of them."""
    chosen = dict(cfg.get("methods") or {})
    if not chosen:
        raise ConfigError("no method selected (method is empty); choose some: method=NAME or method=[NAME,NAME]")
    for name, mcfg in chosen.items():
        ref = mcfg.get("reference")
        if ref not in (None, RETRAIN) and ref not in chosen:
            raise ConfigError(
                f"method {name} is audited against reference {ref!r}, which is not in this study; "
                f"add it to the method list: method=[...,{name},{ref}]"
            )
    return chosen


class Planner:
    """Cells and keys of one study. `data_id` is the fingerprint of the loaded data, so a key
    covers the content every cell reads, never only where it was read from."""

    def __init__(self, cfg: DictConfig, data_id: str) -> None:
        self.cfg = cfg
        self._seed = cfg.seed  # read once: a config access per cell costs more than the cell's key
        # where the data was read from is not identity: the fingerprint covers what was read
        locations = location_keys(cfg.dataset)
        dataset = {k: v for k, v in plain(cfg.dataset).items() if k not in locations}
        model = plain(cfg.model)
        builder = {k: v for k, v in model.items() if k != "name"}
        self._common = {
            "dataset": dataset, "data": data_id,
            "model": {**model, **bound_arguments(builder, MODEL_INJECTED, "config.model")},
            "trainer": trainer_key(cfg.trainer),
        }
        self._split = {k: v for k, v in plain(cfg.split).items() if k != "path"}
        self._recipe = plain(cfg.recipe)
        self.methods = selected_methods(cfg)
        # resolved once: resolving a config per cell made planning N = 200,000 take minutes
        # a method is named by its option (checks.check_names refuses another `name`)
        self._method_args = {name: {"name": name, **{k: v for k, v in plain(m).items() if k != "reference"}}
                             for name, m in self.methods.items()}
        self._method_key = {name: bound_arguments(args, METHOD_INJECTED, f"config.methods.{name}")
                            for name, args in self._method_args.items()}
        self._original: Cell | None = None
        self._keys: dict[tuple[str, str], SeededKeys] = {}

    def _seeded(self, kind: str, name: str, spec: dict[str, Any]) -> str:
        """cell_key(spec), through one SeededKeys per (kind, name): only the seed differs between indices."""
        if (kind, name) not in self._keys:
            self._keys[kind, name] = SeededKeys({k: v for k, v in spec.items() if k != "seed"})
        return self._keys[kind, name](spec["seed"])

    def original(self) -> Cell:
        if self._original is None:
            seed = derive_seed(self._seed, "original")
            spec = {"kind": "original", **self._common, "recipe": self._recipe, "seed": seed}
            self._original = Cell("original", "original", 0, seed, spec)
        return self._original

    def retrain(self, i: int) -> Cell:
        seed = derive_seed(self._seed, "retrain", i)
        spec = {"kind": "retrain", **self._common, "split": self._split, "recipe": self._recipe, "seed": seed}
        return Cell("retrain", "retrain", i, seed, spec, known_key=self._seeded("retrain", "retrain", spec))

    def unlearn(self, name: str, i: int) -> Cell:
        seed = derive_seed(self._seed, "unlearn", name, i)
        original = self.original()
        spec = {
            "kind": "unlearn", **self._common, "split": self._split, "method": self._method_key[name],
            "original": original.key, "seed": seed,
        }
        return Cell("unlearn", name, i, seed, spec, upstream=original, args=self._method_args[name],
                    known_key=self._seeded("unlearn", name, spec))

    def reference_of(self, name: str) -> str:
        """The cells method NAME is audited against: "retrain", or another method's name."""
        return str(self.methods[name].get("reference") or RETRAIN)

    def cells(self, indices: list[int] | None = None) -> list[Cell]:
        """Original first, then retrained, then each method's cells, for these indices."""
        indices = list(range(int(self.cfg.n_models))) if indices is None else indices
        cells = [self.original()] + [self.retrain(i) for i in indices]
        return cells + [self.unlearn(name, i) for name in self.methods for i in indices]
