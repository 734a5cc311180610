"""The test kit: check an unlearning method against unlearnlab's contract, from any test suite.

For plugin authors (import it in your own pytest suite) and for unlearnlab's own generic tests,
which run the same code over every method option they discover (`method_options()`):

    from unlearnlab import testing

    def test_my_method_keeps_the_contract(tmp_path):
        testing.check_method("my_method", tmp_path)

`check_method(name, tmp_path)` runs, in order, each check also available alone:

- `check_config(name)`: `method=NAME` composes with unlearnlab's configs and every installed
  plugin's, passes the command line's start-up checks (its keys bind to the class's signature, its
  `name` is its option's, it declares only method parts in `reads`), and names an UnlearningMethod;
- `check_run(name)`: one run on digits from a briefly trained original (the framework's own
  original cell), in which the method reads only the parts it declares (an undeclared read raises
  DataAccessError at the read), every fit starts with the model in train mode and every declared
  teacher in eval mode — even though the model was left in eval mode before the run;
- `check_reproducible(name)`: two runs with the same seed give bit-identical weights (CPU);
- `check_debug_tiny(name, tmp_path)`: `unlearnlab debug=tiny method=NAME` runs end to end (original,
  retrained and unlearned cells, the audit, results.json) and the method has a row.

Each raises AssertionError with one line saying what is wrong and what to change. Runs are short:
at most `limit_batches` batches per epoch (default 2) for the run checks; `debug=tiny` uses
the method's own settings (pass overrides, e.g. `methods.NAME.epochs=1`, to shorten them).
"""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import lightning as L
import torch
from hydra import compose as hydra_compose
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from unlearnlab import api, plugins
from unlearnlab.cells import CellRunner, method_class
from unlearnlab.certified import single_thread
from unlearnlab.checks import kind_overrides, method_model_kinds
from unlearnlab.data import load_study_data
from unlearnlab.errors import ConfigError
from unlearnlab.methods.base import DataAccessError, MethodData, UnlearningMethod
from unlearnlab.models import build_model
from unlearnlab.plan import FRAMEWORK_KEYS, Planner
from unlearnlab.registry import instantiate, source_loader
from unlearnlab.store import Store
from unlearnlab.tracking import Tracker

# The digits study the run checks use: a 1-epoch original, nothing logged.
BASE = ("debug=tiny", "logger=none")


# -- discovery ----------------------------------------------------------------------------------
def method_options() -> list[str]:
    """Every option of the `method` group: unlearnlab's conf/method/ and every installed plugin's."""
    found = set(plugins.options(Path(plugins.config_dir())).get("method", []))
    for plugin in plugins.installed():
        found |= set(plugin.options().get("method", []))
    return sorted(found)


def option_file(group: str, name: str) -> Path:
    """The file of option NAME of GROUP: in unlearnlab's conf/ or an installed plugin's."""
    for conf in [Path(plugins.config_dir()), *(p.conf for p in plugins.installed() if p.conf is not None)]:
        if (conf / group / f"{name}.yaml").is_file():
            return conf / group / f"{name}.yaml"
    raise AssertionError(f"{group}={name}: no such option file")


def preset_of(name: str) -> str | None:
    """The method option a preset builds on (`defaults: [BASE@_here_, _self_]`), or None."""
    defaults = OmegaConf.load(option_file("method", name)).get("defaults") or []
    bases = [str(d).split("@")[0] for d in defaults if isinstance(d, str) and d.endswith("@_here_")]
    return bases[0] if bases else None


def plugin_method_options() -> list[str]:
    """The `method` options the installed plugins add."""
    return sorted({o for p in plugins.installed() for o in p.options().get("method", [])})


def method_overrides(name: str, overrides: Iterable[str] = ()) -> list[str]:
    """The overrides of a `debug=tiny` study of method NAME alone, with a model it applies to
    (checks.kind_overrides: `model=logreg recipe=exact` for the certified methods)."""
    return [*BASE, f"method={name}", *_kind_overrides(name), *overrides]


_kind_overrides_cache: dict[str, tuple[str, ...]] = {}


def _kind_overrides(name: str) -> tuple[str, ...]:
    if name not in _kind_overrides_cache:
        _kind_overrides_cache[name] = _kind_of(name)
    return _kind_overrides_cache[name]


def _kind_of(name: str) -> tuple[str, ...]:
    with api.hydra_on_unlearnlab():  # composed without the checks: they refuse a method on a model it cannot apply to
        mcfg = hydra_compose(config_name="config", overrides=[f"method={name}"]).methods[name]
    return tuple(kind_overrides(method_model_kinds(method_class(_arguments(mcfg), name))))


def _arguments(mcfg: Any) -> dict[str, Any]:
    plain = OmegaConf.to_container(mcfg, resolve=True) if isinstance(mcfg, DictConfig) else dict(mcfg)
    return {k: v for k, v in plain.items() if k not in FRAMEWORK_KEYS}


# -- the config --------------------------------------------------------------------------------
def check_config(name: str, overrides: Iterable[str] = ()) -> DictConfig:
    """`method=NAME` composes and passes the start-up checks; its class is an UnlearningMethod."""
    try:
        cfg = _compose(name, tuple(overrides))
    except ConfigError as err:
        raise AssertionError(f"method={name}: {err}") from None
    assert list(cfg.methods) == [name], f"method={name} composed methods {list(cfg.methods)}; its file must start " \
                                        f"`# @package methods.{name}`"
    cls = method_class(_arguments(cfg.methods[name]), name)
    assert issubclass(cls, UnlearningMethod), f"method={name}: {cls} is not an UnlearningMethod"
    return cfg


_COMPOSED: dict[tuple[str, tuple[str, ...]], DictConfig] = {}


def _compose(name: str, overrides: tuple[str, ...]) -> DictConfig:
    if (name, overrides) not in _COMPOSED:
        _COMPOSED[(name, overrides)] = api.compose(method_overrides(name, overrides))
    return _COMPOSED[(name, overrides)]


def check_configs(names: Iterable[str]) -> None:
    """check_config for many methods at once: one composition per model kind (`method=[a,b,…]`, the
    same start-up checks), each method's config then kept as if composed alone. For a suite that
    checks every installed method (unlearnlab's generic tests): composing is most of its cost."""
    names = list(names)
    with api.hydra_on_unlearnlab():  # the classes, to group the methods by the model they apply to
        raw = hydra_compose(config_name="config", overrides=[f"method=[{','.join(names)}]"]).methods
    groups: dict[tuple[str, ...], list[str]] = {}
    for name in names:
        kinds = method_model_kinds(method_class(_arguments(raw[name]), name))
        groups.setdefault(tuple(kind_overrides(kinds)), []).append(name)
    for kind, group in groups.items():
        try:
            cfg = api.compose([*BASE, f"method=[{','.join(group)}]", *kind])
        except ConfigError as err:
            raise AssertionError(f"method=[{','.join(group)}]: {err}") from None
        rest = cfg.copy()  # everything but the methods, copied once, not once per method with all of them
        with read_write(rest), open_dict(rest):
            rest.methods = {}
        for name in group:
            alone = rest.copy()
            with read_write(alone), open_dict(alone):
                alone.methods = {name: cfg.methods[name]}
            _COMPOSED[(name, ())] = alone
            _SETTINGS.pop((name, ()), None)
            _kind_overrides_cache[name] = kind
        for name in group:
            check_config(name)


# -- one run# -- one run ------------------------------------------------------------------------------------
@dataclass
class Run:
    """What one run of a method did."""

    method: UnlearningMethod
    state: dict[str, torch.Tensor]  # the unlearned model's weights
    fits: list[dict[str, Any]] = field(default_factory=list)  # per fit: modes at its start


class ModeRecorder(L.Callback):
    """At each fit's start: the modes of the model being unlearned, of the module tree, of the teachers."""

    def __init__(self) -> None:
        self.fits: list[dict[str, Any]] = []

    def on_train_start(self, trainer, pl_module) -> None:
        self.fits.append({
            "model_in_eval": [n or "(the model)" for n, m in pl_module.model.named_modules() if not m.training],
            "tree_in_eval": [n for n, m in pl_module.named_modules() if not m.training],
            "teachers_in_train": [t for t, mod in pl_module.teachers.items() if any(m.training for m in mod.modules())],
        })


@dataclass
class _Setting:
    cfg: DictConfig
    data: Any
    original: dict[str, torch.Tensor]


_TMP: list[str] = []


def _scratch() -> Path:
    if not _TMP:
        _TMP.append(tempfile.mkdtemp(prefix="unlearnlab-testing-"))
        atexit.register(shutil.rmtree, _TMP[0], True)
    return Path(_TMP[0])


_SETTINGS: dict[tuple[str, tuple[str, ...]], _Setting] = {}


def _setting(name: str, overrides: tuple[str, ...]) -> _Setting:
    """The composed config, the data and the original model's weights (the framework's own
    original cell, computed once into a scratch store and shared by every method it applies to);
    kept per method and overrides (a check runs a method two or three times)."""
    if (name, overrides) not in _SETTINGS:
        cfg = _compose(name, overrides)
        data = _data(_json(cfg.dataset), _json(cfg.split))
        planner = Planner(cfg, data.fingerprint())
        _SETTINGS[(name, overrides)] = _Setting(cfg, data, _original(planner.original().key, cfg, data, planner))
    return _SETTINGS[(name, overrides)]


def _json(node: Any) -> str:
    return json.dumps(OmegaConf.to_container(node, resolve=True), sort_keys=True)


@functools.lru_cache(maxsize=4)
def _data(dataset: str, split: str) -> Any:
    dataset_cfg, split_cfg = OmegaConf.create(json.loads(dataset)), OmegaConf.create(json.loads(split))
    return load_study_data(dataset_cfg, split_cfg, source_loader(dataset_cfg))


_ORIGINALS: dict[str, dict[str, torch.Tensor]] = {}


def _original(key: str, cfg: DictConfig, data: Any, planner: Planner) -> dict[str, torch.Tensor]:
    if key not in _ORIGINALS:
        root = _scratch()
        store = Store(str(root / "store"))
        tracker = Tracker({"kind": "none"}, "testing", root / "out", {})
        _ORIGINALS[key] = CellRunner(cfg, data, store, tracker).run(planner.original()).entry.state_dict()
    return _ORIGINALS[key]


def original_state(name: str, overrides: Iterable[str] = ()) -> dict[str, torch.Tensor]:
    """The weights of the original model the run checks start method NAME from."""
    return {k: v.clone() for k, v in _setting(name, tuple(overrides)).original.items()}


def run_method(name: str, seed: int = 0, overrides: Iterable[str] = (), limit_batches: int | None = 2,
               reads: Iterable[str] | None = None, max_steps: int = -1) -> Run:
    """Build method NAME as the framework does, on a copy of the original left in eval mode, and
    run it under CPU Trainers (deterministic, at most LIMIT_BATCHES batches per epoch and MAX_STEPS
    optimiser steps per fit, -1: no cap). READS: the parts it may read (default: the ones it declares)."""
    setting = _setting(name, tuple(overrides))
    mcfg = _arguments(setting.cfg.methods[name])
    cls = method_class(mcfg, name)
    cls.check_reads()
    L.seed_everything(seed, verbose=False)
    model = build_model(setting.cfg.model, setting.data.input_shape, setting.data.num_classes)
    model.load_state_dict(setting.original)
    model.eval()  # as a scoring pass would leave it: every fit must put it back in train mode
    allowed = cls.reads if reads is None else frozenset(reads)
    method = instantiate(mcfg, where=f"method.{name}", model=model, data=MethodData(setting.data, allowed, seed, name))
    recorder = ModeRecorder()

    def make_trainer(max_epochs: int, phase: str = "train") -> L.Trainer:
        del phase
        limit = {} if limit_batches is None else {"limit_train_batches": limit_batches}
        return L.Trainer(accelerator="cpu", devices=1, max_epochs=max_epochs, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, deterministic=True,
                         callbacks=[recorder], max_steps=max_steps, **limit)

    with single_thread():  # as cells.CellRunner runs every cell: one torch thread
        method.run(make_trainer)
    state = {k: v.detach().clone() for k, v in method.model.state_dict().items()}
    return Run(method, state, recorder.fits)


def check_run(name: str, overrides: Iterable[str] = (), limit_batches: int | None = 2, max_steps: int = -1) -> Run:
    """One run: only declared parts read, every fit in train mode, teachers in eval mode."""
    try:
        run = run_method(name, 0, overrides, limit_batches, max_steps=max_steps)
    except DataAccessError as err:
        raise AssertionError(f"method={name}: {err}") from None
    for i, fit in enumerate(run.fits):
        assert not fit["model_in_eval"], (
            f"method={name}, fit {i}: modules in eval mode at the fit's start: {fit['model_in_eval']}; never "
            f"override on_fit_start (UnlearningMethod sets the modes; use before_fit)")
        assert not fit["tree_in_eval"], (
            f"method={name}, fit {i}: the LightningModule holds modules in eval mode {fit['tree_in_eval']}; declare "
            f"frozen networks with self.add_teacher(name, model) instead of assigning them as attributes")
        assert not fit["teachers_in_train"], f"method={name}, fit {i}: teachers in train mode: {fit['teachers_in_train']}"
    return run


def check_reproducible(name: str, overrides: Iterable[str] = (), limit_batches: int | None = 2,
                       first: Run | None = None, max_steps: int = -1) -> None:
    """Two runs with the same seed give bit-identical weights (on CPU, deterministic Trainers)."""
    a = first or run_method(name, 0, overrides, limit_batches, max_steps=max_steps)
    b = run_method(name, 0, overrides, limit_batches, max_steps=max_steps)
    differ = [k for k in a.state if not torch.equal(a.state[k], b.state[k])]
    assert not differ, (f"method={name}: two runs with seed 0 differ in {differ[:3]}: draw randomness from torch's "
                        f"generators (seeded per cell) or from self.data.seed, never from time or os.urandom")


def check_debug_tiny(name: str, tmp_path: str | Path, overrides: Iterable[str] = ()) -> dict[str, Any]:
    """`unlearnlab debug=tiny method=NAME` end to end, in this process; its results."""
    root = Path(tmp_path)
    results = api.run([*method_overrides(name), f"paths.root={root}", *overrides], output_dir=root / "out")
    assert name in results["methods"], f"method={name}: no row in results.json ({list(results['methods'])})"
    row = results["methods"][name]
    for metric in ("retain/acc", "forget/acc", "test/acc"):
        assert isinstance(row.get(metric), float), f"method={name}: results.json has no {metric} ({row})"
    return results


def check_method(name: str, tmp_path: str | Path, overrides: Iterable[str] = (), limit_batches: int | None = 2) -> None:
    """Every check of the contract, in order (see the module's docstring)."""
    overrides = tuple(overrides)
    check_config(name, overrides)
    run = check_run(name, overrides, limit_batches)
    check_reproducible(name, overrides, limit_batches, first=run)
    check_debug_tiny(name, tmp_path, overrides)


def forget() -> None:
    """Drop what the kit composed and trained (after installing or removing a plugin in this process)."""
    _COMPOSED.clear()
    _SETTINGS.clear()
    _kind_overrides_cache.clear()
    _ORIGINALS.clear()
    _data.cache_clear()
