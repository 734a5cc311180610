"""Content-addressed cell store: a finished cell is never recomputed, a broken one never used.

Layout: ROOT/KIND/KEY/{model.safetensors, outputs.safetensors, meta.json}. The key hashes
everything that changes a cell's result and nothing else (see `cell_key`: values are normalised
first, so `0.5` and `'0.5'` are one key). An entry is written into a temp folder beside its final
place and renamed in one step, so readers see all of it or none.

Every stored byte is checked on every load: meta.json records each file's size and sha256 and
its own checksum (`meta_sha256`, over the canonical JSON of the rest of meta.json), and an entry
is used only if the key it records is the key it is fetched under and, when it records the spec
it was computed from, that spec hashes to that key. These checksums catch damage and hand edits;
they are not signatures: whoever can write the store can forge a consistent entry.

What can go wrong, and what the store does about it:
- a file truncated or altered after it was written: `load` raises CorruptEntryError (never
  returns it); `fetch(..., repair=True)` moves the entry aside to ROOT/quarantine/ with a
  warning and reports it missing, so the caller recomputes it;
- a file that is not safetensors (e.g. a pickle planted as model.safetensors): refused as
  corrupt; nothing here ever unpickles (safetensors only, no torch.load);
- a process killed mid-write leaves only a `.tmp-*` folder, never an entry; the next save in
  that kind's folder removes temp folders whose writer is dead (same host) or that are a day old;
- two writers of one key: the first rename wins, the second writer's copy is dropped;
- a full or read-only disk (safetensors' own error included), or a store folder that cannot be
  created: StoreWriteError (a one-line ConfigError naming the path), and the temp folder is
  removed, so the store is as it was;
- a lock held by another process (computing that cell, or stopped with Ctrl-Z / SIGSTOP): the
  waiter logs what it waits for, who holds it and for how long every LOCK_REPORT_SECONDS, and
  gives up with LockTimeoutError after `lock_timeout` seconds when one is set;
- `paths.store` empty, or naming a file: ConfigError when the Store is made.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import math
import os
import re
import shutil
import socket
import stat
import time
import uuid
import warnings
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock, Timeout
from safetensors import SafetensorError

from unlearnlab.errors import ConfigError, check_path_length

if TYPE_CHECKING:  # torch is imported where tensors are read or written: the start-up checks import this module
    import torch

FORMAT = 3  # bump when what a cell stores or how it is computed changes (2: normalised keys, meta checksum;
#            3: keys hold the Trainer flags, bound constructor arguments and code versions)
FILES = ("model.safetensors", "outputs.safetensors")
KINDS = ("original", "retrain", "unlearn")  # the folders of ROOT that hold entries (plan.Cell.kind)
RESERVED = ("locks", "quarantine")  # folders of ROOT that hold no kind of cell
LOCAL_QUARANTINE = ".quarantine"  # ROOT/KIND/.quarantine: where a broken entry goes when ROOT/quarantine is on another file system
KEY_NAME = re.compile(r"[0-9a-f]{24}")  # a folder name cell_key can produce
MAX_META_BYTES = 64 << 20  # meta.json is a few kB; anything this large is not one (e.g. a link to /dev/zero)
STALE_TMP_SECONDS = 24 * 3600  # a temp folder this old is abandoned, whoever wrote it
_HOST = socket.gethostname().replace("-", "_")
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}
LOCK_REPORT_SECONDS = 30.0  # a cell waiting on another process's lock says so this often
log = logging.getLogger(__name__)


class CorruptEntryError(RuntimeError):
    """A stored file no longer matches what was recorded when it was written."""


class StoreWriteError(ConfigError):
    """The disk refused a write (full, over quota, read-only, no permission); nothing was stored."""


class LockTimeoutError(ConfigError):
    """Waited `lock_timeout` seconds for another process computing the same cell."""


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _number(text: str) -> int | float | str:
    """A string that spells a decimal number exactly (`'0.5'`, `'1e-3'`, `'10'`) as that number;
    anything else, or a number a float cannot hold exactly (`'12345678901234567890e3'`, `'1e999'`),
    stays the string, so two different strings never become one value by rounding."""
    if not _NUMBER.fullmatch(text):
        return text
    value = float(text)
    if not math.isfinite(value):
        return text
    exact = Decimal(text)
    if abs(exact) < _EXACT_INT and exact == exact.to_integral_value():
        return int(exact)
    return value if Decimal(repr(value)) == exact else text


_EXACT_INT = 2**53  # integers below this are the same number as int and as float


def normalise(value: Any) -> Any:
    """The value a key hashes: equal settings, equal JSON.

    - a string spelling a decimal number is that number (`'0.5'` → 0.5, `'10'` → 10): the config
      means the number either way (`method.lr='0.5'` or a quoted YAML value);
    - a float with an integral value below 2**53 is that int (`1.0` → 1, `-0.0` → 0), so
      `epochs: 1` and `epochs: 1.0` agree; other floats (0.5, 1e30, inf, nan) stay floats;
    - booleans stay booleans and strings like 'true' stay strings (`'false'` is truthy in Python,
      so it does not behave like False); None stays None;
    - tuples are lists, mapping keys are strings, paths are strings.
    """
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) < _EXACT_INT else value
    if isinstance(value, str):
        return _number(value.strip()) if _NUMBER.fullmatch(value.strip()) else value
    if isinstance(value, dict):
        return {str(k): normalise(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [normalise(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str, allow_nan=True)


def cell_key(spec: dict[str, Any]) -> str:
    """Hash of the normalised, JSON-canonical spec: same settings, same key, in any process.

    The spec must name what a cell reads by content, never by location alone: the loaded data's
    fingerprint, and `file_digest(path)` for any file a cell reads itself (not a path)."""
    return hashlib.sha256(canonical_json(normalise({"format": FORMAT, **spec})).encode()).hexdigest()[:24]


class SeededKeys:
    """`cell_key({**spec, "seed": seed})` for many seeds of one spec, at the cost of one sha256 each:
    the spec is normalised and written once, the seed spliced into its JSON (planning N = 200,000
    cells per kind took minutes when each key normalised its whole spec)."""

    _MARK = "\x00seed\x00"

    def __init__(self, spec: dict[str, Any]) -> None:
        text = canonical_json(normalise({"format": FORMAT, **spec, "seed": self._MARK}))
        mark = json.dumps(self._MARK)
        if text.count(mark) != 1:  # a value spelling the mark: no shortcut
            self._parts = None
            self._spec = spec
        else:
            self._parts = text.split(mark)

    def __call__(self, seed: int) -> str:
        if self._parts is None:
            return cell_key({**self._spec, "seed": seed})
        text = f"{self._parts[0]}{int(seed)}{self._parts[1]}"
        return hashlib.sha256(text.encode()).hexdigest()[:24]


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes: what a cell key records for a file the cell reads directly."""
    return _sha256(Path(path))


def meta_checksum(meta: dict[str, Any]) -> str:
    """sha256 of meta.json's content without its own checksum field, key order ignored."""
    return hashlib.sha256(canonical_json({k: v for k, v in meta.items() if k != "meta_sha256"}).encode()).hexdigest()


def check_root(root: Any) -> Path:
    """paths.store as a folder, or ConfigError: empty (would write into the current folder), or a file."""
    if root is None or not str(root).strip():
        raise ConfigError(
            "paths.store is empty, so the store would land in the current folder; "
            "set paths.store=/path/to/store (or paths.root=DIR for DIR/store)"
        )
    path = Path(str(root)).expanduser()
    check_path_length(path, f"paths.store={path}")
    if path.exists() and not path.is_dir():
        raise ConfigError(f"paths.store={path} is a file, not a folder; point paths.store at a folder (new or existing)")
    for p in (path, *path.parents):  # the store, or the nearest folder above it that is there
        if p.is_symlink() and not p.exists():
            raise ConfigError(f"paths.store={path}: {p} is a symbolic link to {os.readlink(p)}, which does not exist; "
                              f"create that folder, or point paths.store elsewhere")
        if p.exists():
            if not p.is_dir():
                raise ConfigError(f"paths.store={path}: {p} is a file, so the store cannot be created below it; "
                                  f"point paths.store at a folder")
            break
    return path


def _write_error(err: BaseException) -> int | None:
    """The errno of a refused write: an OSError's own, or the one in safetensors' message
    ('... No space left on device (os error 28)'), which raises its own exception type."""
    if isinstance(err, OSError):
        return err.errno if err.errno in _WRITE_ERRNOS else None
    if isinstance(err, SafetensorError):
        m = re.search(r"os error (\d+)", str(err))
        if m and int(m.group(1)) in _WRITE_ERRNOS:
            return int(m.group(1))
    return None


def save_file(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """safetensors' save_file (torch is imported on the first write, not with the store)."""
    from safetensors.torch import save_file as save

    save(tensors, path)


def load_tensors(data: bytes) -> dict[str, torch.Tensor]:
    """safetensors' load of a file's bytes (torch is imported on the first read, not with the store)."""
    from safetensors.torch import load

    return load(data)


class NotRegularFile(OSError):
    """A store file that is a symbolic link, a device, a pipe or a folder: the store writes none."""


def read_regular(path: Path, limit: int) -> bytes:
    """The bytes of PATH, which must be a regular file (not a symlink, device or pipe: the store
    writes none of those, and /dev/zero or a FIFO would be read forever) of at most LIMIT bytes."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularFile(errno.EINVAL, "not a regular file", str(path))
        if info.st_size > limit:
            raise NotRegularFile(errno.EFBIG, f"{info.st_size} bytes, more than the {limit} expected", str(path))
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(limit + 1)
    finally:
        os.close(fd)


def _sha256(path: Path, limit: int | None = None) -> str:
    """sha256 of a regular file's bytes (a symlink or device is refused, see read_regular)."""
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFile(errno.EINVAL, "not a regular file", str(path))
        with os.fdopen(fd, "rb", closefd=False) as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    finally:
        os.close(fd)
    return h.hexdigest()


def read_meta(path: Path) -> dict[str, Any] | str:
    """meta.json as a dict, or a one-line description of why it cannot be read."""
    try:
        meta = json.loads(read_regular(path / "meta.json", MAX_META_BYTES))
    except FileNotFoundError:
        return "meta.json missing (an interrupted copy, or not an entry)"
    except NotRegularFile as err:
        return f"meta.json is {err.strerror} (the store writes regular files only)"
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "meta.json is a symbolic link (the store writes regular files only)"
        return f"meta.json unreadable ({type(err).__name__}: {err.strerror})"
    except ValueError as err:
        return f"meta.json unreadable ({type(err).__name__})"
    return meta if isinstance(meta, dict) else "meta.json is not a JSON object"


@dataclass
class Entry:
    path: Path
    meta: dict[str, Any]

    def outputs(self) -> dict[str, torch.Tensor]:
        return self._tensors("outputs.safetensors")

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self._tensors("model.safetensors")

    def _tensors(self, name: str) -> dict[str, torch.Tensor]:
        """The file's bytes, checked against the recorded sha256 as they are read (not only at
        load time), then parsed as safetensors: the bytes parsed are the bytes checked."""
        path = self.path / name
        try:
            data = read_regular(path, int(self.meta["files"][name]["size"]))
        except OSError as err:
            raise CorruptEntryError(f"store file {path} is unreadable ({err}); {_RERUN}") from None
        if hashlib.sha256(data).hexdigest() != self.meta["files"][name]["sha256"]:
            raise CorruptEntryError(f"store file {path} changed after its entry was loaded (checksum differs); {_RERUN}")
        try:
            return load_tensors(data)
        except (SafetensorError, ValueError) as err:
            raise CorruptEntryError(
                f"store file {path} is not a readable safetensors file ({err}); it is not used. {_RERUN}"
            ) from None


_RERUN = "run `unlearnlab task=verify`, then rerun the study to recompute it"


class CellLock:
    """The file lock of one cell, held while it is computed so concurrent jobs train it once.

    Waiting is never silent: every `report_every` seconds the waiter logs which cell it waits
    for, who holds the lock (host, pid, since when, and whether that process is stopped) and
    how long it has waited; with `timeout` (seconds) it gives up with LockTimeoutError. A lock
    whose holder died is free at once (the OS releases it), so only a live holder blocks."""

    def __init__(self, path: Path, what: str, timeout: float | None, report_every: float, entry: Path) -> None:
        self.path, self.what, self.timeout, self.report_every, self.entry = path, what, timeout, report_every, entry
        self.owner = path.with_suffix(".owner")
        self._lock = FileLock(str(path))

    def __enter__(self) -> CellLock:
        start = time.monotonic()
        step = min(1.0, self.report_every, self.timeout if self.timeout is not None else 1.0)  # first word soon
        while True:
            try:
                self._lock.acquire(timeout=step)
                break
            except Timeout:
                waited = time.monotonic() - start
                log.warning("waiting %.0f s for %s: its lock %s is held by %s", waited, self.what, self.path, self.holder())
                if self.timeout is not None and waited >= self.timeout:
                    raise LockTimeoutError(
                        f"gave up after {waited:.0f} s waiting for {self.what}: its lock {self.path} is held by "
                        f"{self.holder()}; end or resume that process, or raise the lock timeout"
                    ) from None
                step = self.report_every if self.timeout is None else max(0.05, min(self.report_every, self.timeout - waited))
            except OSError as err:
                if _write_error(err) is None:
                    raise
                raise _store_write_error(err, self.entry, self.path.parent.parent) from None
        try:
            self.owner.write_text(f"{_HOST} {os.getpid()} {time.time():.0f}\n")
        except OSError:
            pass  # the lock holds without it; waiters then only say "another process"
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self.owner.unlink(missing_ok=True)
        except OSError:
            pass
        self._lock.release()

    def holder(self) -> str:
        """Who holds the lock, as far as its owner note says."""
        try:
            host, pid, since = self.owner.read_text().split()
        except (OSError, ValueError):
            return "another process (no owner note)"
        when = time.strftime("%H:%M:%S", time.localtime(float(since)))
        text = f"pid {pid} on {host.replace('_', '-')} since {when}"
        if host == _HOST:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                state = ""
            if state in ("T", "t"):
                text += f" — that process is stopped: resume it (kill -CONT {pid}) or end it"
        return text


def _store_write_error(err: BaseException, path: Path, root: Path) -> StoreWriteError:
    code = _write_error(err)
    reason = os.strerror(code) if code is not None else str(err)
    return StoreWriteError(
        f"could not write store entry {path} ({reason}); nothing was stored for it and finished "
        f"entries are intact: free space or fix permissions under {root}, or set paths.store elsewhere, then rerun"
    )


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
    def __init__(self, root: str | os.PathLike, lock_timeout: float | None = None,
                 report_every: float = LOCK_REPORT_SECONDS) -> None:
        self.root = check_root(root)
        self.lock_timeout, self.report_every = lock_timeout, report_every

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    def has(self, kind: str, key: str) -> bool:
        return (self.path(kind, key) / "meta.json").is_file()

    def lock(self, kind: str, key: str) -> CellLock:
        """Held while a cell is computed, so concurrent jobs train it once."""
        lock_dir = self.root / "locks"
        try:
            lock_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            if _write_error(err) is None:
                raise
            raise _store_write_error(err, self.path(kind, key), self.root) from None
        return CellLock(lock_dir / f"{kind}-{key}.lock", f"{kind} cell {key}", self.lock_timeout, self.report_every,
                        self.path(kind, key))

    def load(self, kind: str, key: str, verify: bool = True) -> Entry:
        path = self.path(kind, key)
        meta = read_meta(path)
        if verify:
            problems = self.check(path, meta, key) if isinstance(meta, dict) else [meta]
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
            if repair and os.path.lexists(self.path(kind, key)):  # a folder with no (regular) meta.json
                why = read_meta(self.path(kind, key))
                moved = self.quarantine(kind, key)
                if moved is not None:
                    warnings.warn(f"store entry {self.path(kind, key)} is incomplete ({why}); moved it to {moved} "
                                  f"and recomputing it", stacklevel=2)
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
        name = f"{key}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
        # ROOT/quarantine/KIND, or, when KIND's folder is on another file system (a rename cannot
        # cross one), ROOT/KIND/.quarantine: a broken entry is moved aside, never copied
        for dest_dir in (self.root / "quarantine" / kind, self.root / kind / LOCAL_QUARANTINE):
            try:
                dest_dir.mkdir(parents=True, exist_ok=True)
                os.rename(src, dest_dir / name)
                return dest_dir / name
            except FileNotFoundError:
                return None
            except OSError as err:
                if err.errno == errno.EXDEV:
                    continue
                if _write_error(err) is None:
                    raise
                raise _store_write_error(err, src, self.root) from None
        raise StoreWriteError(f"could not move the broken store entry {src} aside (every quarantine folder is on "
                              f"another file system); remove it by hand, then rerun")

    @staticmethod
    def check(path: Path, meta: dict[str, Any], key: str | None = None) -> list[str]:
        """What is wrong with the entry at `path` (empty when nothing): meta.json must match its
        own checksum and record the key it is stored under (KEY, or the folder's name), a spec
        it records must hash to that key, and every file of FILES must match its recorded size
        and sha256."""
        problems = []
        key = path.name if key is None else key
        if meta.get("meta_sha256") != meta_checksum(meta):
            problems.append("meta.json checksum differs (edited or damaged after it was written)"
                            if "meta_sha256" in meta else "meta.json records no checksum of itself")
        if meta.get("key") != key:
            problems.append(f"meta.json records key {meta.get('key')}, the entry is fetched as {key}")
        elif isinstance(meta.get("spec"), dict) and cell_key(meta["spec"]) != key:
            problems.append(f"the spec meta.json records hashes to {cell_key(meta['spec'])}, not {key}")
        files = meta.get("files")
        if not isinstance(files, dict):
            return problems + ["meta.json records no files"]
        for name in FILES:
            rec = files.get(name)
            f = path / name
            if not isinstance(rec, dict) or "size" not in rec or "sha256" not in rec:
                problems.append(f"meta.json has no size/checksum for {name}")
            elif f.is_symlink() or (os.path.lexists(f) and not f.is_file()):
                problems.append(f"{name} is not a regular file (the store writes regular files only)")
            elif not f.is_file():
                problems.append(f"{name} missing")
            elif f.stat().st_size != rec["size"]:
                problems.append(f"{name} has {f.stat().st_size} bytes, {rec['size']} were written")
            else:
                try:
                    if _sha256(f) != rec["sha256"]:
                        problems.append(f"{name} checksum differs")
                except OSError as err:
                    problems.append(f"{name} unreadable ({err.strerror})")
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
        if isinstance(meta.get("spec"), dict) and cell_key(meta["spec"]) != key:
            raise ValueError(f"store.save: the spec hashes to {cell_key(meta['spec'])}, not to the key {key}")
        tmp = final.parent / f".tmp-{key}-{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            self.clean_tmp(kind)
            tmp.mkdir()
            save_file({k: v.detach().cpu().contiguous() for k, v in state_dict.items()}, tmp / FILES[0])
            save_file({k: v.detach().cpu().contiguous() for k, v in outputs.items()}, tmp / FILES[1])
            files = {n: {"size": (tmp / n).stat().st_size, "sha256": _sha256(tmp / n)} for n in FILES}
            record = json.loads(canonical_json({**meta, "key": key, "files": files}))  # as it reads back
            record["meta_sha256"] = meta_checksum(record)
            with open(tmp / "meta.json", "w") as f:
                f.write(json.dumps(record, indent=1, allow_nan=True))
                f.flush()
                os.fsync(f.fileno())
            try:
                os.rename(tmp, final)
            except OSError:
                if self.has(kind, key):  # someone else finished first: theirs is kept
                    shutil.rmtree(tmp, ignore_errors=True)
                elif os.path.lexists(final):  # a folder without meta.json (an interrupted copy): aside, then ours
                    moved = self.quarantine(kind, key)
                    warnings.warn(f"store entry {final} was incomplete ({read_meta(moved or final)}); moved it to "
                                  f"{moved}", stacklevel=2)
                    os.rename(tmp, final)
                else:
                    raise
        except BaseException as err:
            shutil.rmtree(tmp, ignore_errors=True)
            if _write_error(err) is not None:
                raise _store_write_error(err, final, self.root) from err
            raise
        return self.load(kind, key)

    def kind_dirs(self) -> list[Path]:
        """ROOT/KIND for each kind of cell that has a folder."""
        return [self.root / k for k in KINDS if (self.root / k).is_dir()]

    # -- entries that arrive whole from elsewhere (bundle.py: task=import) ------------------------
    def stage(self, kind: str, key: str) -> Path:
        """An empty temp folder beside KIND/KEY, named as `save` names its own
        (`.tmp-KEY-HOST-PID-RAND`): if this process dies, `clean_tmp` removes it, and verify lists
        it as a temp folder, never as an entry. Fill it with the entry's files, then `commit`."""
        final = self.path(kind, key)
        tmp = final.parent / f".tmp-{key}-{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp.mkdir()
        except OSError as err:
            if _write_error(err) is None:
                raise
            raise _store_write_error(err, final, self.root) from None
        return tmp

    def commit(self, kind: str, key: str, tmp: Path) -> bool:
        """Move a staged entry into place in one rename, under the cell's lock. The caller has
        checked it (`check`: meta checksum, key, spec → key, every file's size and sha256). True
        when it was placed; False when a valid entry was already there (the staged copy is
        dropped). A broken entry already there is moved to quarantine and replaced."""
        with self.lock(kind, key):
            if self.fetch(kind, key, repair=True) is not None:
                shutil.rmtree(tmp, ignore_errors=True)
                return False
            try:
                os.rename(tmp, self.path(kind, key))
            except OSError as err:
                shutil.rmtree(tmp, ignore_errors=True)
                if _write_error(err) is None:
                    raise
                raise _store_write_error(err, self.path(kind, key), self.root) from None
        return True

    def entries(self):
        """Every finished entry: (kind, key, path)."""
        if not self.root.is_dir():
            return
        for kind_dir in self.kind_dirs():
            for entry in sorted(kind_dir.iterdir()):
                if not entry.name.startswith(".") and (entry / "meta.json").is_file():
                    yield kind_dir.name, entry.name, entry
