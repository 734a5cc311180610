"""Content-addressed cell store: a finished cell is never recomputed, a broken one never used.

Layout: ROOT/KIND/KEY/{model.safetensors, outputs.safetensors, meta.json}. The key hashes
everything that changes a cell's result and nothing else. An entry is written into a temp
folder beside its final place and renamed in one step, so readers see all of it or none;
meta.json records each file's size and sha256, checked on every load.

What can go wrong, and what the store does about it:
- a file truncated or altered after it was written: `load` raises CorruptEntryError (never
  returns it); `fetch(..., repair=True)` moves the entry aside to ROOT/quarantine/ with a
  warning and reports it missing, so the caller recomputes it;
- a file that is not safetensors (e.g. a pickle planted as model.safetensors): refused as
  corrupt; nothing here ever unpickles (safetensors only, no torch.load);
- a process killed mid-write leaves only a `.tmp-*` folder, never an entry; the next save in
  that kind's folder removes temp folders whose writer is dead (same host) or that are a day old;
- two writers of one key: the first rename wins, the second writer's copy is dropped;
- a full or read-only disk: StoreWriteError (a one-line ConfigError naming the path), and the
  temp folder is removed, so the store is as it was.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import socket
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from unlearnlab.errors import ConfigError

FORMAT = 1  # bump when what a cell stores or how it is computed changes
FILES = ("model.safetensors", "outputs.safetensors")
RESERVED = ("locks", "quarantine")  # folders of ROOT that hold no kind of cell
STALE_TMP_SECONDS = 24 * 3600  # a temp folder this old is abandoned, whoever wrote it
_HOST = socket.gethostname().replace("-", "_")
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


class CorruptEntryError(RuntimeError):
    """A stored file no longer matches what was recorded when it was written."""


class StoreWriteError(ConfigError):
    """The disk refused a write (full, over quota, read-only, no permission); nothing was stored."""


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


def _read_meta(path: Path) -> dict[str, Any] | str:
    """meta.json as a dict, or a one-line description of why it cannot be read."""
    try:
        meta = json.loads((path / "meta.json").read_text())
    except FileNotFoundError:
        return "meta.json missing"
    except (OSError, ValueError) as err:
        return f"meta.json unreadable ({type(err).__name__})"
    return meta if isinstance(meta, dict) else "meta.json is not a JSON object"


@dataclass
class Entry:
    path: Path
    meta: dict[str, Any]

    def outputs(self) -> dict[str, torch.Tensor]:
        return _load_tensors(self.path / "outputs.safetensors")

    def state_dict(self) -> dict[str, torch.Tensor]:
        return _load_tensors(self.path / "model.safetensors")


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """safetensors only: a file that is anything else (a pickle, say) is refused, never executed."""
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as err:
        raise CorruptEntryError(
            f"store file {path} is not a readable safetensors file ({err}); it is not used. "
            f"Run `unlearnlab task=verify`, then rerun the study to recompute it"
        ) from None


def _tmp_is_stale(tmp: Path, now: float) -> bool:
    """A temp folder `.tmp-KEY-HOST-PID-RAND` whose writer is dead here, or any over a day old."""
    try:
        age = now - tmp.stat().st_mtime
    except OSError:
        return False
    if age > STALE_TMP_SECONDS:
        return True
    parts = tmp.name.split("-")
    if len(parts) == 5 and parts[2] == _HOST and parts[3].isdigit():
        try:
            os.kill(int(parts[3]), 0)
        except ProcessLookupError:
            return True
        except OSError:
            return False
    return False


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
        meta = _read_meta(path)
        if verify:
            problems = self.check(path, meta) if isinstance(meta, dict) else [meta]
            if problems:
                raise CorruptEntryError(
                    f"store entry {path} is corrupt ({'; '.join(problems)}); it is not used: rerun the "
                    f"study to recompute it (it will be moved to {self.root / 'quarantine'}), "
                    f"and run `unlearnlab task=verify` to check the rest of the store"
                )
        elif not isinstance(meta, dict):
            raise CorruptEntryError(f"store entry {path}: {meta}")
        return Entry(path, meta)

    def fetch(self, kind: str, key: str, repair: bool = False) -> Entry | None:
        """The verified entry, or None when there is none. A corrupt entry is never returned:
        with repair=True (hold `lock(kind, key)`) it is moved to ROOT/quarantine/ with a warning,
        so the caller recomputes it; without, it is left where it is and None is returned."""
        if not self.has(kind, key):
            return None
        try:
            return self.load(kind, key)
        except CorruptEntryError as err:
            if repair:
                moved = self.quarantine(kind, key)
                if moved is not None:
                    warnings.warn(f"{err}; moved it to {moved} and recomputing it", stacklevel=2)
            return None

    def quarantine(self, kind: str, key: str) -> Path | None:
        """Move an entry to ROOT/quarantine/KIND/KEY-<time> (kept for inspection, never read).
        Returns where it went, or None when it was already gone (another process moved it)."""
        src = self.path(kind, key)
        dest_dir = self.root / "quarantine" / kind
        dest_dir.mkdir(parents=True, exist_ok=True)
        dest = dest_dir / f"{key}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
        try:
            os.rename(src, dest)
        except FileNotFoundError:
            return None
        return dest

    @staticmethod
    def check(path: Path, meta: dict[str, Any]) -> list[str]:
        """What is wrong with the entry at `path` (empty when nothing): every file of FILES must be
        recorded in meta.json and match its recorded size and sha256."""
        problems = []
        files = meta.get("files")
        if not isinstance(files, dict):
            return ["meta.json records no files"]
        for name in FILES:
            rec = files.get(name)
            f = path / name
            if not isinstance(rec, dict) or "size" not in rec or "sha256" not in rec:
                problems.append(f"meta.json has no size/checksum for {name}")
            elif not f.is_file():
                problems.append(f"{name} missing")
            elif f.stat().st_size != rec["size"]:
                problems.append(f"{name} has {f.stat().st_size} bytes, {rec['size']} were written")
            elif _sha256(f) != rec["sha256"]:
                problems.append(f"{name} checksum differs")
        return problems

    def clean_tmp(self, kind: str) -> list[Path]:
        """Remove the temp folders of KIND left by writers that died (kill -9, crash, power loss)."""
        removed = []
        kind_dir = self.root / kind
        if not kind_dir.is_dir():
            return removed
        now = time.time()
        for tmp in kind_dir.glob(".tmp-*"):
            if tmp.is_dir() and _tmp_is_stale(tmp, now):
                shutil.rmtree(tmp, ignore_errors=True)
                removed.append(tmp)
        return removed

    def save(
        self,
        kind: str,
        key: str,
        meta: dict[str, Any],
        state_dict: dict[str, torch.Tensor],
        outputs: dict[str, torch.Tensor],
    ) -> Entry:
        final = self.path(kind, key)
        tmp = final.parent / f".tmp-{key}-{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            self.clean_tmp(kind)
            tmp.mkdir()
            save_file({k: v.detach().cpu().contiguous() for k, v in state_dict.items()}, tmp / FILES[0])
            save_file({k: v.detach().cpu().contiguous() for k, v in outputs.items()}, tmp / FILES[1])
            files = {n: {"size": (tmp / n).stat().st_size, "sha256": _sha256(tmp / n)} for n in FILES}
            with open(tmp / "meta.json", "w") as f:
                f.write(json.dumps({**meta, "key": key, "files": files}, indent=1))
                f.flush()
                os.fsync(f.fileno())
            try:
                os.rename(tmp, final)
            except OSError:
                if not self.has(kind, key):  # not "someone else finished first"
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException as err:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(err, OSError) and err.errno in _WRITE_ERRNOS:
                raise StoreWriteError(
                    f"could not write store entry {final} ({os.strerror(err.errno)}); nothing was "
                    f"stored for it and finished entries are intact: free space or fix permissions "
                    f"under {self.root}, or set paths.store elsewhere, then rerun"
                ) from err
            raise
        return self.load(kind, key)

    def entries(self):
        """Every finished entry: (kind, key, path)."""
        if not self.root.is_dir():
            return
        for kind_dir in sorted(p for p in self.root.iterdir() if p.is_dir() and p.name not in RESERVED):
            for entry in sorted(kind_dir.iterdir()):
                if not entry.name.startswith(".tmp-") and (entry / "meta.json").is_file():
                    yield kind_dir.name, entry.name, entry
