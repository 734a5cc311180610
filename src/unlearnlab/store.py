"""Content-addressed cell store: a finished cell is never recomputed, a broken one never used.

Layout: ROOT/KIND/KEY/{model.safetensors, outputs.safetensors, meta.json}. The key hashes
everything that changes a cell's result and nothing else. An entry is written into a temp
folder beside its final place and renamed in one step, so readers see all of it or none;
meta.json records each file's size and sha256, checked on every load.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock
from safetensors.torch import load_file, save_file

FORMAT = 1  # bump when what a cell stores or how it is computed changes
FILES = ("model.safetensors", "outputs.safetensors")


class CorruptEntryError(RuntimeError):
    """A stored file no longer matches what was recorded when it was written."""


def cell_key(spec: dict[str, Any]) -> str:
    """Hash of a JSON-canonical spec: same spec, same key, in any process."""
    text = json.dumps({"format": FORMAT, **spec}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class Entry:
    path: Path
    meta: dict[str, Any]

    def outputs(self) -> dict[str, torch.Tensor]:
        return load_file(self.path / "outputs.safetensors")

    def state_dict(self) -> dict[str, torch.Tensor]:
        return load_file(self.path / "model.safetensors")


class Store:
    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    def has(self, kind: str, key: str) -> bool:
        return (self.path(kind, key) / "meta.json").is_file()

    def lock(self, kind: str, key: str) -> FileLock:
        """Held while a cell is computed, so concurrent jobs train it once."""
        lock_dir = self.root / "locks"
        lock_dir.mkdir(parents=True, exist_ok=True)
        return FileLock(str(lock_dir / f"{kind}-{key}.lock"))

    def load(self, kind: str, key: str, verify: bool = True) -> Entry:
        path = self.path(kind, key)
        meta = json.loads((path / "meta.json").read_text())
        if verify:
            problems = self.check(path, meta)
            if problems:
                raise CorruptEntryError(
                    f"store entry {path} is corrupt ({problems[0]}); run `unlearnlab task=verify` "
                    f"and delete it to recompute"
                )
        return Entry(path, meta)

    @staticmethod
    def check(path: Path, meta: dict[str, Any]) -> list[str]:
        problems = []
        for name, rec in meta.get("files", {}).items():
            f = path / name
            if not f.is_file():
                problems.append(f"{name} missing")
            elif f.stat().st_size != rec["size"]:
                problems.append(f"{name} has {f.stat().st_size} bytes, {rec['size']} were written")
            elif _sha256(f) != rec["sha256"]:
                problems.append(f"{name} checksum differs")
        return problems

    def save(
        self,
        kind: str,
        key: str,
        meta: dict[str, Any],
        state_dict: dict[str, torch.Tensor],
        outputs: dict[str, torch.Tensor],
    ) -> Entry:
        final = self.path(kind, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f".tmp-{key}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            save_file({k: v.detach().cpu().contiguous() for k, v in state_dict.items()}, tmp / FILES[0])
            save_file({k: v.detach().cpu().contiguous() for k, v in outputs.items()}, tmp / FILES[1])
            files = {n: {"size": (tmp / n).stat().st_size, "sha256": _sha256(tmp / n)} for n in FILES}
            (tmp / "meta.json").write_text(json.dumps({**meta, "key": key, "files": files}, indent=1))
            try:
                os.rename(tmp, final)
            except OSError:
                if not self.has(kind, key):  # not "someone else finished first"
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return self.load(kind, key)

    def entries(self):
        """Every finished entry: (kind, key, path)."""
        if not self.root.is_dir():
            return
        for kind_dir in sorted(p for p in self.root.iterdir() if p.is_dir() and p.name != "locks"):
            for entry in sorted(kind_dir.iterdir()):
                if not entry.name.startswith(".tmp-") and (entry / "meta.json").is_file():
                    yield kind_dir.name, entry.name, entry
