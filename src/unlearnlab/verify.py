"""`unlearnlab task=verify`: check every store entry against the sizes and checksums recorded
when it was written (meta.json's own included) and the key it records, list what is broken,
change nothing. Exit status 1 if anything is broken; a store folder that does not exist is an
error (exit 2), not an empty store."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from unlearnlab.errors import ConfigError
from unlearnlab.store import FILES, RESERVED, STALE_TMP_SECONDS, Store, read_meta


def scan(store: Store) -> tuple[int, list[dict[str, Any]], list[Path]]:
    """(entries checked, broken entries as {kind, key, path, problem}, leftover temp folders)."""
    checked, broken, leftovers = 0, [], []
    if not store.root.is_dir():
        return checked, broken, leftovers
    for kind_dir in sorted(p for p in store.root.iterdir() if p.is_dir() and p.name not in RESERVED):
        for path in sorted(kind_dir.iterdir()):
            if path.name.startswith(".tmp-"):
                leftovers.append(path)
                continue
            if not path.is_dir():
                continue
            checked += 1
            meta = read_meta(path)
            problems = store.check(path, meta) if isinstance(meta, dict) else [meta]
            if not problems:
                problems = _readable(path)
            if problems:
                broken.append({"kind": kind_dir.name, "key": path.name, "path": path, "problem": "; ".join(problems)})
    return checked, broken, leftovers


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
    checked, broken, leftovers = scan(store)
    if broken:
        table = Table(title=f"broken store entries in {store.root}")
        for col in ("kind", "key", "problem"):
            table.add_column(col, overflow="fold")
        for b in broken:
            table.add_row(b["kind"], b["key"], b["problem"])
        console.print(table)
    now = time.time()
    for tmp in leftovers:
        age = now - tmp.stat().st_mtime
        state = "abandoned" if age > STALE_TMP_SECONDS else "in progress or abandoned"
        console.print(f"temp folder {tmp} ({state}, {age / 60:.0f} min old): not an entry, never read", soft_wrap=True)
    console.print(
        f"verified {checked} entr{'y' if checked == 1 else 'ies'} in {store.root}: "
        f"{checked - len(broken)} ok, {len(broken)} broken",
        soft_wrap=True,
    )
    if broken:
        console.print(
            "broken entries are never used: rerun the study (or its sweep) and each one is moved to "
            f"{store.root / 'quarantine'} and recomputed",
            soft_wrap=True,
        )
        raise SystemExit(1)
    return 0
