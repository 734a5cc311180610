"""Planning: config (+ the loaded data's fingerprint) → the cells of a study and their keys.

Pure: nothing here trains, reads the store or opens a run, so the study, a sweep job, the
audit task, `task=plan` and the bench all plan the same cells the same way.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

from unlearnlab.errors import ConfigError
from unlearnlab.schemas import location_keys
from unlearnlab.store import cell_key

RETRAIN = "retrain"  # the reference every method is audited against unless it names its own
# Keys of a method config that tell the framework how to plan/audit it; the method never sees them.
FRAMEWORK_KEYS = ("name", "reference")


def derive_seed(base: int, *parts: Any) -> int:
    """Independent, stable seeds per (kind, name, index) from one study seed."""
    text = "/".join(str(p) for p in (base, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little") & 0x7FFFFFFF


def plain(cfg) -> Any:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


@dataclass(frozen=True)
class Cell:
    kind: str  # original | retrain | unlearn
    name: str  # "original", "retrain" or the method's name
    index: int
    seed: int
    spec: dict[str, Any] = field(hash=False, compare=False)
    upstream: Cell | None = field(default=None, hash=False, compare=False, repr=False)  # the original

    @property
    def key(self) -> str:
        return cell_key(self.spec)

    @property
    def label(self) -> str:
        return self.name if self.kind == "original" else f"{self.name}#{self.index}"

    @property
    def method_config(self) -> dict[str, Any]:
        """The arguments the method class is built with (framework keys removed)."""
        return {k: v for k, v in self.spec["method"].items() if k not in FRAMEWORK_KEYS}


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
        # where the data was read from is not identity: the fingerprint covers what was read
        locations = location_keys(cfg.dataset)
        dataset = {k: v for k, v in plain(cfg.dataset).items() if k not in locations}
        self._common = {
            "dataset": dataset, "data": data_id, "model": plain(cfg.model), "precision": str(cfg.trainer.precision),
        }
        self._split = {k: v for k, v in plain(cfg.split).items() if k != "path"}
        self.methods = selected_methods(cfg)
        self._original: Cell | None = None

    def original(self) -> Cell:
        if self._original is None:
            seed = derive_seed(self.cfg.seed, "original")
            spec = {"kind": "original", **self._common, "recipe": plain(self.cfg.recipe), "seed": seed}
            self._original = Cell("original", "original", 0, seed, spec)
        return self._original

    def retrain(self, i: int) -> Cell:
        seed = derive_seed(self.cfg.seed, "retrain", i)
        spec = {"kind": "retrain", **self._common, "split": self._split, "recipe": plain(self.cfg.recipe), "seed": seed}
        return Cell("retrain", "retrain", i, seed, spec)

    def unlearn(self, name: str, i: int) -> Cell:
        # a method is named by its option (checks.check_names refuses another `name`)
        method = {"name": name, **{k: v for k, v in plain(self.methods[name]).items() if k != "reference"}}
        seed = derive_seed(self.cfg.seed, "unlearn", name, i)
        original = self.original()
        spec = {
            "kind": "unlearn", **self._common, "split": self._split, "method": method,
            "original": original.key, "seed": seed,
        }
        return Cell("unlearn", name, i, seed, spec, upstream=original)

    def reference_of(self, name: str) -> str:
        """The cells method NAME is audited against: "retrain", or another method's name."""
        return str(self.methods[name].get("reference") or RETRAIN)

    def cells(self, indices: list[int] | None = None) -> list[Cell]:
        """Original first, then retrained, then each method's cells, for these indices."""
        indices = list(range(int(self.cfg.n_models))) if indices is None else indices
        cells = [self.original()] + [self.retrain(i) for i in indices]
        return cells + [self.unlearn(name, i) for name in self.methods for i in indices]
