"""`task=export` / `task=import`: a study's cells as one verified file, a portable slice of the store.

    unlearnlab task=export export.path=cells.tar OVERRIDES          # every cell the study uses
    unlearnlab task=import import.path=cells.tar paths.store=S OVERRIDES

Sharing 512 retrained models must never become a way to slip a wrong cell into someone's table,
so a bundle carries everything the store checks, and import checks all of it before anything
enters the store:

- format: an uncompressed tar (USTAR, the stdlib's `tarfile`; never a pickle) whose first member
  is `manifest.json`, then `forget_indices.txt` (optional), then `cells/KIND/KEY/meta.json`,
  `model.safetensors`, `outputs.safetensors` per cell — the store's own entry files, unchanged;
- the manifest (canonical JSON: sorted keys, no spaces) lists every cell (kind, key, spec, the
  size and sha256 of each file), the data fingerprint and the forget set's indices hash, and its
  own sha256;
- import reads the tar member by member and refuses, in one line, with the store unchanged:
  anything that is not a regular file the manifest lists (links, folders, absolute paths, `..`,
  duplicates, extra tar headers), a header other than the one export writes, a size or sha256
  that differs, non-zero padding or bytes after the archive's end (so every byte of the file
  is accounted for), a meta.json whose own checksum
  or recorded key differs, a spec that does not hash to its key (the key is re-derived, never
  trusted), a manifest spec that differs from the entry's, a file that is not safetensors, and
  (with import.check_data, the default) cells for other data than the config loads;
- entries are staged as the store's own temp folders (`KIND/.tmp-*`) and renamed into place one
  by one under each cell's lock only after every entry passed; a valid entry already there is
  kept.

These checks catch damage, mistakes and lies about keys, not a forger: like the store itself, a
bundle is not signed — whoever writes one can write a consistent bundle of wrong weights. Share
bundles over a channel you trust (W&B artifacts: export.wandb=true, import.artifact=...).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import tarfile
import tempfile
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from omegaconf import DictConfig
from rich.console import Console
from safetensors import safe_open

from unlearnlab.auditing import data_record, indices_sha256
from unlearnlab.checks import CELL_KINDS
from unlearnlab.data import load_study_data
from unlearnlab.errors import ConfigError
from unlearnlab.pipeline import config_dict, output_dir
from unlearnlab.plan import Planner, plain
from unlearnlab.registry import source_loader
from unlearnlab.schemas import location_keys
from unlearnlab.store import (FILES, FORMAT, CorruptEntryError, Store, canonical_json, cell_key, normalise,
                              read_meta)
from unlearnlab.tracking import wandb_mode

BUNDLE = "unlearnlab-cells"  # the manifest's "bundle" and the W&B artifact type
VERSION = 1
MANIFEST = "manifest.json"
FORGET_FILE = "forget_indices.txt"
ENTRY_FILES = ("meta.json", *FILES)
KEY = re.compile(r"[0-9a-f]{24}")
SHA256 = re.compile(r"[0-9a-f]{64}")
BLOCK = tarfile.BLOCKSIZE
MAX_SMALL = 256 << 20  # manifest.json and forget_indices.txt are read into memory: at most this
CHUNK = 1 << 20


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_checksum(manifest: dict[str, Any]) -> str:
    return sha256_bytes(canonical_json({k: v for k, v in manifest.items() if k != "manifest_sha256"}).encode())


def member_name(kind: str, key: str, name: str) -> str:
    return f"cells/{kind}/{key}/{name}"


# -- export ---------------------------------------------------------------------------------------
class _HashingReader:
    """A file read by tarfile, hashed on the way: the bytes in the bundle are the bytes checked."""

    def __init__(self, f: BinaryIO) -> None:
        self.f, self.h = f, hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.h.update(data)
        return data


def _info(name: str, size: int) -> tarfile.TarInfo:
    """A plain file member with fixed metadata: the same cells make the same bundle, byte for byte."""
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime, info.type = size, 0o644, 0, tarfile.REGTYPE
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


@dataclass
class _Exported:
    kind: str
    key: str
    name: str
    index: int
    path: Path
    meta_bytes: bytes
    meta: dict[str, Any]

    def files(self) -> dict[str, dict[str, Any]]:
        recorded = {n: {"size": int(self.meta["files"][n]["size"]), "sha256": self.meta["files"][n]["sha256"]}
                    for n in FILES}
        return {"meta.json": {"size": len(self.meta_bytes), "sha256": sha256_bytes(self.meta_bytes)}, **recorded}


def forget_file(data, split_cfg) -> tuple[bytes, dict[str, Any]]:
    """The forget set's training indices as a split=index_file file, and what the manifest says of it."""
    indices = data.split.forget.cpu().numpy()
    text = "".join(f"{int(i)}\n" for i in indices).encode()
    record = {
        "path": FORGET_FILE, "size": len(text), "sha256": sha256_bytes(text), "count": int(indices.size),
        "indices_sha256": indices_sha256(indices),
        # with these, split=index_file gives the same val/test/retain-sample parts (data/splits.py)
        "split": {"seed": int(split_cfg.seed), "val_fraction": float(split_cfg.val_fraction),
                  "val_seed": int(split_cfg.val_seed)},
    }
    if split_cfg.kind == "mislabeled":
        record["note"] = "the split relabels its forget examples; the index file reproduces which, not the new labels"
    return text, record


def export_cells(cfg: DictConfig) -> tuple[Path, dict[str, Any]]:
    """Write the bundle of every cell of `cfg`'s study of the kinds export.kinds names; (path, manifest)."""
    data = load_study_data(cfg.dataset, cfg.split, source_loader(cfg.dataset))
    planner = Planner(cfg, data.fingerprint())
    store = Store(cfg.paths.store)
    kinds = [str(k) for k in cfg.export.kinds]
    cells = [c for c in planner.cells() if c.kind in kinds]
    missing = [c for c in cells if not store.has(c.kind, c.key)]
    if missing:
        shown = ", ".join(c.label for c in missing[:4]) + (" …" if len(missing) > 4 else "")
        raise ConfigError(
            f"{len(missing)} of the {len(cells)} cells to export are not in the store {store.root} ({shown}); "
            f"run the study with the same overrides first (or check dataset/split/model/n_models/seed), then export"
        )
    exported = []
    for c in cells:
        entry = store.load(c.kind, c.key)  # every file checked: a broken entry is refused, never shared
        meta_bytes = (entry.path / "meta.json").read_bytes()
        if json.loads(meta_bytes) != entry.meta:
            raise CorruptEntryError(f"store entry {entry.path} changed while it was exported; export again")
        exported.append(_Exported(c.kind, c.key, c.name, c.index, entry.path, meta_bytes, entry.meta))
    forget = forget_file(data, cfg.split) if cfg.export.forget_indices else None
    study = {
        "study_name": str(cfg.study_name), "n_models": int(cfg.n_models), "seed": int(cfg.seed),
        "dataset": {k: v for k, v in plain(cfg.dataset).items() if k not in location_keys(cfg.dataset)},
        "split": {k: v for k, v in plain(cfg.split).items() if k != "path"},
        "model": plain(cfg.model), "recipe": plain(cfg.recipe), "methods": list(planner.methods), "kinds": kinds,
    }
    manifest: dict[str, Any] = {
        "bundle": BUNDLE, "version": VERSION, "store_format": FORMAT, "study": study,
        "data": data_record(data.fingerprint(), data.split.forget.cpu().numpy(), split=str(cfg.split.name)),
        "forget_indices": None if forget is None else forget[1],
        "entries": [{"kind": e.kind, "key": e.key, "name": e.name, "index": e.index, "spec": e.meta["spec"],
                     "files": e.files()} for e in exported],
    }
    manifest = json.loads(canonical_json(manifest))  # as it reads back
    manifest["manifest_sha256"] = manifest_checksum(manifest)
    dest = Path(str(cfg.export.path)).expanduser()
    write_bundle(dest, manifest, None if forget is None else forget[0], exported)
    return dest, manifest


def write_bundle(dest: Path, manifest: dict[str, Any], forget: bytes | None, exported: list[_Exported]) -> None:
    """The tar, written beside DEST and renamed onto it: DEST is the whole bundle or untouched."""
    if dest.is_dir():
        raise ConfigError(f"export.path={dest} is a folder; name the bundle file, e.g. export.path={dest / 'cells.tar'}")
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
            small = [(MANIFEST, canonical_json(manifest).encode())] + ([(FORGET_FILE, forget)] if forget else [])
            for name, content in small:
                tar.addfile(_info(name, len(content)), _BytesReader(content))
            for e in exported:
                for name, rec in e.files().items():
                    if name == "meta.json":
                        tar.addfile(_info(member_name(e.kind, e.key, name), len(e.meta_bytes)), _BytesReader(e.meta_bytes))
                        continue
                    with open(e.path / name, "rb") as f:
                        reader = _HashingReader(f)
                        try:
                            tar.addfile(_info(member_name(e.kind, e.key, name), rec["size"]), reader)
                        except OSError as err:
                            if "unexpected end of data" not in str(err):
                                raise
                        if reader.h.hexdigest() != rec["sha256"]:
                            raise CorruptEntryError(f"store file {e.path / name} differs from what its entry recorded "
                                                    f"(changed or damaged); run `unlearnlab task=verify`, then export again")
        os.replace(tmp, dest)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM):
            raise ConfigError(f"could not write the bundle {dest} ({os.strerror(err.errno)}); nothing was written: "
                              f"free space or choose export.path elsewhere") from None
        raise


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def read(self, n: int = -1) -> bytes:
        end = len(self.data) if n < 0 else self.pos + n
        out, self.pos = self.data[self.pos:end], min(end, len(self.data))
        return out


def log_artifact(cfg: DictConfig, path: Path, manifest: dict[str, Any]) -> str | None:
    """export.wandb=true: the bundle as a W&B artifact (type unlearnlab-cells) of an `export` run in
    logger=wandb's project; returns a line saying where it went. A failure is a warning: the bundle
    on disk is the result."""
    try:
        import wandb

        logger = cfg.logger
        name = "cells-" + re.sub(r"[^A-Za-z0-9_.-]", "_", str(cfg.study_name))[:100]
        mode = wandb_mode(logger.get("mode"))
        run = wandb.init(
            project=logger.get("project", "unlearnlab"), entity=logger.get("entity"), group=str(cfg.study_name),
            job_type="export", name=f"export-{cfg.study_name}", mode=mode,
            dir=str(output_dir(cfg)), reinit="create_new", config=config_dict(cfg.export),
            settings=wandb.Settings(silent=True, console="off", init_timeout=float(logger.get("init_timeout", 30))),
        )
        counts = {k: sum(e["kind"] == k for e in manifest["entries"]) for k in CELL_KINDS}
        artifact = wandb.Artifact(name, type=BUNDLE, description=f"cells of study {cfg.study_name} (unlearnlab bundle)",
                                  metadata={"manifest_sha256": manifest["manifest_sha256"], "cells": counts,
                                            "data": manifest["data"], "study": manifest["study"]})
        artifact.add_file(str(path), name=path.name, policy="immutable")  # no staging copy of a 23 GB file
        logged = run.log_artifact(artifact)
        if mode == "online":
            logged.wait()  # uploaded: its version is known
            where = logged.qualified_name  # ENTITY/PROJECT/NAME:VERSION
            line = f"logged as W&B artifact {where} (type {BUNDLE}); fetch it with import.artifact={where}"
        else:
            line = (f"logged offline as W&B artifact {name} (type {BUNDLE}); `wandb sync {Path(run.dir).parent}` uploads it, "
                    f"then import.artifact=ENTITY/{run.project}/{name}:VERSION fetches it")
        run.finish()
        return line
    except Exception as err:  # noqa: BLE001 - tracking never costs a result
        warnings.warn(f"W&B artifact of the bundle failed ({type(err).__name__}: {err}); the bundle {path} is written",
                      stacklevel=2)
        return None


def export_task(cfg: DictConfig) -> Path:
    console = Console()
    path, manifest = export_cells(cfg)
    counts = ", ".join(f"{n} {k}" for k in CELL_KINDS if (n := sum(e["kind"] == k for e in manifest["entries"])))
    size = path.stat().st_size
    console.print(f"exported {counts} cells ({size / 2**20:.1f} MiB) to {path}", soft_wrap=True)
    data = manifest["data"]
    console.print(f"data fingerprint {data['fingerprint']}; forget set of {data['n_forget']} examples, "
                  f"indices sha256 {data['forget_indices_sha256']}", soft_wrap=True)
    if cfg.export.wandb and (line := log_artifact(cfg, path, manifest)):
        console.print(line, soft_wrap=True)
    console.print(f"import it: unlearnlab task=import import.path={path} paths.store=STORE "
                  f"with this study's dataset/split/model overrides", soft_wrap=True)
    return path


# -- import ---------------------------------------------------------------------------------------
@dataclass
class Imported:
    manifest: dict[str, Any]
    placed: dict[str, int] = field(default_factory=dict)   # kind -> entries renamed into the store
    present: dict[str, int] = field(default_factory=dict)  # kind -> valid entries it already had
    forget: bytes | None = None


class _Refused(ConfigError):
    pass


def _check_manifest(m: Any) -> dict[str, tuple[int, str]]:
    """The manifest's shape; returns member name -> (size, sha256) of every file it lists."""
    if not isinstance(m, dict) or m.get("bundle") != BUNDLE:
        raise _Refused("its manifest.json is not an unlearnlab bundle's")
    if m.get("version") != VERSION:
        raise _Refused(f"its format version is {m.get('version')!r}, this unlearnlab reads {VERSION}")
    if m.get("manifest_sha256") != manifest_checksum(m):
        raise _Refused("manifest.json differs from its own checksum (edited or damaged)")
    if m.get("store_format") != FORMAT:
        raise _Refused(f"it holds store format {m.get('store_format')!r} cells, this unlearnlab keys format {FORMAT}")
    entries = m.get("entries")
    if not isinstance(entries, list) or not entries:
        raise _Refused("its manifest lists no cells")
    expected: dict[str, tuple[int, str]] = {}

    def add(name: str, rec: Any) -> None:
        if (not isinstance(rec, dict) or not isinstance(rec.get("size"), int) or rec["size"] < 0
                or not SHA256.fullmatch(str(rec.get("sha256")))):
            raise _Refused(f"its manifest records no valid size/sha256 for {name}")
        if name in expected:
            raise _Refused(f"its manifest lists {name} twice")
        expected[name] = (rec["size"], rec["sha256"])

    for e in entries:
        if not isinstance(e, dict) or e.get("kind") not in CELL_KINDS or not KEY.fullmatch(str(e.get("key"))):
            raise _Refused(f"its manifest lists a cell with kind {e.get('kind') if isinstance(e, dict) else e!r} / "
                           f"key {e.get('key') if isinstance(e, dict) else ''!r}, which no store has")
        if not isinstance(e.get("spec"), dict) or not isinstance(e.get("files"), dict) or set(e["files"]) != set(ENTRY_FILES):
            raise _Refused(f"its manifest entry {e['kind']}/{e['key']} lacks a spec or the files {', '.join(ENTRY_FILES)}")
        for name in ENTRY_FILES:
            add(member_name(e["kind"], e["key"], name), e["files"][name])
    forget = m.get("forget_indices")
    if forget is not None:
        split = forget.get("split") if isinstance(forget, dict) else None
        if (not isinstance(split, dict) or forget.get("path") != FORGET_FILE
                or not {"seed", "val_fraction", "val_seed"} <= set(split) or not isinstance(forget.get("count"), int)):
            raise _Refused("its manifest's forget_indices record is malformed")
        add(FORGET_FILE, forget)
        if expected[FORGET_FILE][0] > MAX_SMALL:
            raise _Refused(f"its {FORGET_FILE} is {expected[FORGET_FILE][0]} bytes (more than {MAX_SMALL})")
    return expected


def _safe_member(m: tarfile.TarInfo) -> None:
    p = PurePosixPath(m.name)
    if m.name.startswith("/") or p.is_absolute() or ".." in p.parts:
        raise _Refused(f"member {m.name!r} points outside the bundle (absolute path or ..)")
    if m.issym() or m.islnk():
        raise _Refused(f"member {m.name!r} is a link; a bundle holds plain files only")
    if not m.isreg():
        raise _Refused(f"member {m.name!r} is not a plain file")


class _Reader:
    """Walks the tar's members in order and accounts for every byte: headers (byte for byte),
    contents (sha256), padding and the end of the archive (zeros). tarfile parses; a second
    handle (`raw`) reads the bytes tarfile skips."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.raw = open(path, "rb")
        try:
            self.tar = tarfile.open(path, mode="r:")
        except tarfile.TarError as err:
            self.raw.close()
            raise _Refused(f"it is not an uncompressed tar (as task=export writes) ({err})") from None
        self.offset = 0  # where the next header must start

    def close(self) -> None:
        self.tar.close()
        self.raw.close()

    def next(self) -> tarfile.TarInfo | None:
        try:
            m = self.tar.next()
        except tarfile.TarError as err:
            raise _Refused(f"its tar structure is damaged after byte {self.offset} ({err})") from None
        if m is None:
            return None
        if m.offset != self.offset:
            raise _Refused(f"extra tar headers before member {m.name!r} (task=export writes none)")
        _safe_member(m)
        # the whole 512-byte header, byte for byte as export writes it (tar's own header checksum
        # skips the byte after its NUL, and ignores fields tarfile does not read)
        self.raw.seek(m.offset)
        if self.raw.read(BLOCK) != _info(m.name, m.size).tobuf(tarfile.USTAR_FORMAT, tarfile.ENCODING, "surrogateescape"):
            raise _Refused(f"the tar header of {m.name!r} is not the one task=export writes (damaged or edited)")
        return m

    def stream(self, m: tarfile.TarInfo, sink) -> str:
        """Copy M's content to SINK(chunk), returning its sha256; then check its padding."""
        h = hashlib.sha256()
        f = self.tar.extractfile(m)
        left = m.size
        while left:
            try:
                chunk = f.read(min(CHUNK, left))
            except tarfile.TarError:
                chunk = b""
            if not chunk:
                raise _Refused(f"it ends inside member {m.name!r} (truncated)")
            h.update(chunk)
            sink(chunk)
            left -= len(chunk)
        end = m.offset_data + m.size
        pad = -m.size % BLOCK
        self._zeros(end, pad, f"the padding after {m.name!r}")
        self.offset = end + pad
        return h.hexdigest()

    def _zeros(self, start: int, length: int | None, what: str) -> None:
        self.raw.seek(start)
        while length is None or length > 0:
            chunk = self.raw.read(CHUNK if length is None else min(CHUNK, length))
            if not chunk:
                if length is not None:
                    raise _Refused(f"it ends inside {what} (truncated)")
                return
            if chunk.strip(b"\0"):
                raise _Refused(f"{what} holds non-zero bytes (damaged, or not written by task=export)")
            if length is not None:
                length -= len(chunk)

    def check_end(self) -> None:
        """After the last member: only the end-of-archive zeros."""
        self._zeros(self.offset, None, "the end of the archive")


def _readable_safetensors(path: Path) -> str | None:
    try:
        with safe_open(str(path), framework="pt") as f:
            f.keys()
    except Exception as err:  # noqa: BLE001 - any failure to parse is "not safetensors"
        return f"{path.name} is not a safetensors file ({type(err).__name__})"
    return None


def import_bundle(path: Path, store: Store, expected_data: str | None = None, data_hint: str = "",
                  want_forget: bool = False) -> Imported:
    """Check BUNDLE completely, then place its cells in STORE; refuse in one line with STORE unchanged."""
    if not path.is_file():
        raise ConfigError(f"import.path={path} does not exist (or is not a file); give the bundle task=export wrote")
    root_existed = store.root.exists()
    kind_existed = {k: (store.root / k).exists() for k in CELL_KINDS}
    staged: dict[tuple[str, str], Path] = {}
    reader: _Reader | None = None
    try:
        reader = _Reader(path)
        first = reader.next()
        if first is None or first.name != MANIFEST:
            raise _Refused(f"its first member is {first.name if first else 'missing'!r}, not {MANIFEST}")
        if first.size > MAX_SMALL:
            raise _Refused(f"its {MANIFEST} is {first.size} bytes (more than {MAX_SMALL})")
        parts: list[bytes] = []
        reader.stream(first, parts.append)
        raw = b"".join(parts)
        try:
            manifest = json.loads(raw)
        except ValueError:
            raise _Refused(f"its {MANIFEST} is not JSON (damaged)") from None
        if raw != canonical_json(manifest).encode():  # so that no byte of it goes unchecked
            raise _Refused(f"its {MANIFEST} is not in the canonical form task=export writes (edited or damaged)")
        expected = _check_manifest(manifest)
        if want_forget and manifest.get("forget_indices") is None:
            raise ConfigError(f"bundle {path} carries no forget-index file (exported with export.forget_indices=false); "
                              f"drop import.forget_indices")
        if expected_data is not None:
            _check_data(path, manifest, expected_data, data_hint)
        result = Imported(manifest)
        seen: set[str] = set()
        forget_parts: list[bytes] = []
        while (m := reader.next()) is not None:
            if m.name not in expected:
                raise _Refused(f"member {m.name!r} is not a file its manifest lists")
            if m.name in seen:
                raise _Refused(f"member {m.name!r} appears twice")
            seen.add(m.name)
            size, sha = expected[m.name]
            if m.size != size:
                raise _Refused(f"{m.name} has {m.size} bytes, its manifest says {size}")
            if m.name == FORGET_FILE:
                got = reader.stream(m, forget_parts.append)
            else:
                _, kind, key, name = m.name.split("/")
                if (kind, key) not in staged:
                    staged[(kind, key)] = store.stage(kind, key)
                with open(staged[(kind, key)] / name, "wb") as out:
                    got = reader.stream(m, out.write)
            if got != sha:
                raise _Refused(f"{m.name} differs from its manifest's sha256 (damaged)")
        if missing := sorted(set(expected) - seen):
            raise _Refused(f"it ends before {missing[0]}{f' and {len(missing) - 1} more files' if len(missing) > 1 else ''} "
                           f"(truncated or damaged)")
        reader.check_end()
        for e in manifest["entries"]:
            _check_entry(e, staged[(e["kind"], e["key"])])
        if forget_parts:
            result.forget = b"".join(forget_parts)
        for e in manifest["entries"]:  # every entry passed: now, and only now, into the store
            kind, key = e["kind"], e["key"]
            placed = store.commit(kind, key, staged.pop((kind, key)))
            counts = result.placed if placed else result.present
            counts[kind] = counts.get(kind, 0) + 1
        return result
    except BaseException as err:
        for tmp in staged.values():
            shutil.rmtree(tmp, ignore_errors=True)
        for kind, existed in kind_existed.items():
            if not existed:
                _rmdir(store.root / kind)
        if not root_existed:
            _rmdir(store.root)
        if isinstance(err, _Refused):
            raise ConfigError(f"bundle {path} refused: {err}; nothing was imported (re-download or re-export it)") from None
        raise
    finally:
        if reader is not None:
            reader.close()


def _rmdir(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass  # not empty (someone else's entries) or already gone


def _check_data(path: Path, manifest: dict[str, Any], expected: str, hint: str) -> None:
    data = manifest.get("data") or {}
    theirs = {e["spec"].get("data") for e in manifest["entries"]} | {data.get("fingerprint")}
    if theirs != {expected}:
        study = manifest.get("study") or {}
        ds, sp = (study.get("dataset") or {}).get("name"), (study.get("split") or {}).get("name")
        raise ConfigError(
            f"bundle {path} refused: its cells are for other data (fingerprint {str(data.get('fingerprint'))[:16]}…, "
            f"dataset {ds}, split {sp}) than this config loads ({expected[:16]}…, {hint}); nothing was imported: "
            f"import with the dataset/split overrides of the study it came from, or import.check_data=false"
        )


def _check_entry(e: dict[str, Any], folder: Path) -> None:
    """A staged entry as the store checks it, plus: its spec is the manifest's, its kind its folder's."""
    kind, key = e["kind"], e["key"]
    meta = read_meta(folder)
    problems = Store.check(folder, meta, key) if isinstance(meta, dict) else [meta]
    if not problems:
        if cell_key(e["spec"]) != key:  # the key is derived here, never taken from the bundle
            problems.append(f"the spec its manifest lists hashes to {cell_key(e['spec'])}, not {key}")
        if meta.get("kind") != kind or (meta.get("spec") or {}).get("kind") != kind:
            problems.append(f"it records kind {meta.get('kind')!r}, the bundle files it under {kind}")
        if canonical_json(normalise(meta.get("spec"))) != canonical_json(normalise(e["spec"])):
            problems.append("its spec differs from the one the manifest lists")
        problems += [p for name in FILES if (p := _readable_safetensors(folder / name))]
    if problems:
        raise _Refused(f"cell {kind}/{key}: {'; '.join(problems)}")


def fetch_artifact(name: str, dest: Path) -> Path:
    """import.artifact: the bundle file of W&B artifact NAME (ENTITY/PROJECT/NAME:VERSION), fetched
    with wandb's public API into DEST. Needs a W&B server and a login."""
    try:
        import wandb

        artifact = wandb.Api().artifact(name)
        if artifact.type != BUNDLE:
            raise ConfigError(f"import.artifact={name} is a {artifact.type!r} artifact, not {BUNDLE!r} "
                              f"(one task=export logged with export.wandb=true)")
        folder = Path(artifact.download(root=str(dest)))
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001 - wandb raises many types; each is one line here
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise ConfigError(f"import.artifact={name} could not be fetched ({type(err).__name__}: {first}); check the "
                          f"name and your W&B login (wandb login), or download the bundle and use import.path=FILE") from None
    files = [p for p in folder.rglob("*") if p.is_file()]
    if len(files) != 1:
        raise ConfigError(f"import.artifact={name} holds {len(files)} files, a bundle artifact holds one")
    return files[0]


def import_task(cfg: DictConfig) -> Imported:
    console = Console()
    options = cfg["import"]
    store = Store(cfg.paths.store)
    expected, hint, data = None, "", None
    if options.check_data:
        data = load_study_data(cfg.dataset, cfg.split, source_loader(cfg.dataset))
        expected, hint = data.fingerprint(), f"dataset={cfg.dataset.name} split={cfg.split.name}"
    want_forget = options.forget_indices is not None
    if options.artifact:
        out = output_dir(cfg)
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out, prefix="artifact-") as tmp:
            path = fetch_artifact(str(options.artifact), Path(tmp))
            result = import_bundle(path, store, expected, hint, want_forget)
        source = f"W&B artifact {options.artifact}"
    else:
        path = Path(str(options.path)).expanduser()
        result = import_bundle(path, store, expected, hint, want_forget)
        source = str(path)
    placed = ", ".join(f"{n} {k}" for k, n in result.placed.items()) or "no"
    present = sum(result.present.values())
    console.print(f"imported {placed} cells from {source} into {store.root}"
                  + (f" ({present} were already there)" if present else "")
                  + ": every byte and every key checked", soft_wrap=True)
    if want_forget and result.forget is not None:
        target = Path(str(options.forget_indices)).expanduser()
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp_file = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        tmp_file.write_bytes(result.forget)
        os.replace(tmp_file, target)
        split = result.manifest["forget_indices"]["split"]
        console.print(f"forget indices: {target} ({result.manifest['forget_indices']['count']} examples); the same "
                      f"split: split=index_file split.path={target} split.seed={split['seed']} "
                      f"split.val_fraction={split['val_fraction']} split.val_seed={split['val_seed']}", soft_wrap=True)
    if data is not None:
        planner = Planner(cfg, expected)
        cells = planner.cells()
        have = sum(store.has(c.kind, c.key) for c in cells)
        console.print(f"the study with this config ({cfg.study_name}, N = {cfg.n_models}, methods "
                      f"{', '.join(planner.methods)}) finds {have} of its {len(cells)} cells in {store.root}",
                      soft_wrap=True)
    return result
