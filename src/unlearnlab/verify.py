"""`unlearnlab task=verify`: check every store entry against the sizes and checksums recorded
when it was written (meta.json's own included) and the key it records, list what is broken,
change nothing. Exit status 1 if anything is broken; a store folder that does not exist is an
error (exit 2), not an empty store.

What counts: ROOT/KIND/NAME for the kinds of cell (store.KINDS) is an entry when it holds a
meta.json, or when its name is a key (a key-named folder without meta.json is what an interrupted
copy leaves: broken). Anything else in the store folder (notes, a backup folder, a stray file) is
not part of the store: listed, never read, never counted as broken. Every file is read only if it
is a regular file of a bounded size (a meta.json linked to /dev/zero is reported, not read forever).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from unlearnlab.errors import ConfigError
from unlearnlab.store import (
    FILES,
    KEY_NAME,
    KINDS,
    LOCAL_QUARANTINE,
    RESERVED,
    STALE_TMP_SECONDS,
    Store,
    read_meta,
)


@dataclass
class Scan:
    checked: int = 0
    broken: list[dict[str, Any]] = field(default_factory=list)  # {kind, key, path, problem}
    leftovers: list[Path] = field(default_factory=list)  # temp folders of writers (live or dead)
    strays: list[Path] = field(default_factory=list)  # not part of the store: never read


def scan(store: Store) -> Scan:
    """Every entry checked, every temp folder and stray path listed."""
    out = Scan()
    if not store.root.is_dir():
        return out
    for top in sorted(store.root.iterdir()):
        if top.name in RESERVED:
            continue
        if top.name not in KINDS or not top.is_dir():
            out.strays.append(top)
            continue
        for path in sorted(top.iterdir()):
            if path.name.startswith(".tmp-"):
                out.leftovers.append(path)
                continue
            if path.name == LOCAL_QUARANTINE:
                continue
            if not path.is_dir() or not (os.path.lexists(path / "meta.json") or KEY_NAME.fullmatch(path.name)):
                out.strays.append(path)
                continue
            out.checked += 1
            meta = read_meta(path)
            problems = store.check(path, meta) if isinstance(meta, dict) else [meta]
            if not problems:
                problems = _readable(path)
            if problems:
                out.broken.append({"kind": top.name, "key": path.name, "path": path, "problem": "; ".join(problems)})
    return out


def _readable(path: Path) -> list[str]:
    """Checksums match what was recorded; the files must also parse as safetensors."""
    from safetensors import safe_open

    problems = []
    for name in FILES:
        try:
            with safe_open(str(path / name), framework="pt") as f:
                f.keys()
        except Exception as err:  # noqa: BLE001 - any failure to parse is "broken"
            problems.append(f"{name} is not a safetensors file ({type(err).__name__})")
    return problems


def verify_task(cfg: DictConfig) -> int:
    store = Store(cfg.paths.store)
    if not store.root.is_dir():
        raise ConfigError(
            f"paths.store={store.root} does not exist, so there is nothing to verify; "
            f"check the path (or paths.root) the study ran with"
        )
    console = Console()
    found = scan(store)
    if found.broken:
        table = Table(title=f"broken store entries in {store.root}")
        for col in ("kind", "key", "problem"):
            table.add_column(col, overflow="fold")
        for b in found.broken:
            table.add_row(b["kind"], b["key"], b["problem"])
        console.print(table)
    now = time.time()
    for tmp in found.leftovers:
        age = now - tmp.lstat().st_mtime
        state = "abandoned" if age > STALE_TMP_SECONDS else "in progress or abandoned"
        console.print(f"temp folder {tmp} ({state}, {age / 60:.0f} min old): not an entry, never read", soft_wrap=True)
    for stray in found.strays:
        console.print(f"not part of the store (never read, left alone): {stray}", soft_wrap=True)
    checked, broken = found.checked, found.broken
    console.print(
        f"verified {checked} entr{'y' if checked == 1 else 'ies'} in {store.root}: "
        f"{checked - len(broken)} ok, {len(broken)} broken",
        soft_wrap=True,
    )
    if broken:
        console.print(
            "broken entries are never used: the next study or sweep that needs one moves it to "
            f"{store.root / 'quarantine'} and recomputes it",
            soft_wrap=True,
        )
        raise SystemExit(1)
    return 0
