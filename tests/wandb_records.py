"""Read back what a W&B run logged, from its offline run file, without any network or API.

wandb offline writes `<dir>/wandb/offline-run-<time>-<id>/run-<id>.wandb`: a block log in the
LevelDB log format (as wandb's former `sdk/internal/datastore.py` wrote it, and wandb-core
still does) holding protobuf `wandb.proto.wandb_internal_pb2.Record`s:

- a 7-byte file header: b":W&B", magic 0xBEE1 (uint16 LE), version 0;
- 32 KiB blocks; each chunk has a 7-byte header: CRC-32 (uint32 LE, zlib.crc32 of the data
  seeded with the crc of the type byte), length (uint16 LE), type (1 full, 2 first,
  3 middle, 4 last); a block tail shorter than a header is zero padding.

Helpers: `run_dirs(root)`, `read_records(run_dir)`, `history(run_dir)`, `summary(run_dir)`,
`config(run_dir)`, `run_info(run_dir)`, `media_files(run_dir)`, `metrics(run_dir)` (define_metric
declarations), `artifacts(run_dir)` (logged artifacts and their files). `run_dir` may be the offline-run folder or the
`.wandb` file itself; values come back JSON-decoded (a logged wandb.Image is a dict with
"_type": "image-file" and its "path" under media/images/).
"""

from __future__ import annotations

import json
import struct
import time
import zlib
from pathlib import Path
from typing import Any, Iterator

from wandb.proto import wandb_internal_pb2 as pb

HEADER = b":W&B" + struct.pack("<HB", 0xBEE1, 0)
BLOCK = 32 * 1024
CHUNK_HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
_TYPE_CRC = {t: zlib.crc32(bytes([t])) & 0xFFFFFFFF for t in (FULL, FIRST, MIDDLE, LAST)}


def run_file(run_dir: str | Path) -> Path:
    """The run-<id>.wandb file of an offline-run folder (or the file itself)."""
    path = Path(run_dir)
    if path.is_file():
        return path
    files = sorted(path.glob("run-*.wandb"))
    if len(files) != 1:
        raise FileNotFoundError(f"expected one run-*.wandb in {path}, found {[f.name for f in files]}")
    return files[0]


def run_dirs(root: str | Path) -> list[Path]:
    """Every offline-run-* folder under root (a study's output dir, a wandb dir ...), oldest first."""
    return sorted(Path(root).rglob("offline-run-*"), key=lambda p: p.name)


def _chunks(data: bytes) -> Iterator[tuple[int, bytes]]:
    if not data.startswith(HEADER):
        raise ValueError(f"not a W&B run file (header {data[:7]!r})")
    pos = len(HEADER)
    while True:
        left = BLOCK - pos % BLOCK
        if left < CHUNK_HEADER:
            if data[pos : pos + left].strip(b"\0"):
                raise ValueError(f"non-zero block padding at byte {pos}")
            pos += left
        if pos + CHUNK_HEADER > len(data):
            return  # end of log (a torn tail of a killed run is ignored)
        crc, length, kind = struct.unpack("<IHB", data[pos : pos + CHUNK_HEADER])
        if kind == 0 and length == 0 and crc == 0:
            return  # zero-filled tail
        body = data[pos + CHUNK_HEADER : pos + CHUNK_HEADER + length]
        if len(body) < length:
            return
        if kind not in _TYPE_CRC or zlib.crc32(body, _TYPE_CRC[kind]) & 0xFFFFFFFF != crc:
            raise ValueError(f"corrupt chunk at byte {pos} (type {kind}, length {length})")
        pos += CHUNK_HEADER + length
        yield kind, body


def read_records(run_dir: str | Path, wait: float = 15.0) -> list[pb.Record]:
    """Every Record in the run file, in the order written.

    wandb-core writes the file from its own process and may still be flushing it for a moment
    after `run.finish()` returns (seen with wandb 0.31: only the 7-byte header at first), so
    this waits up to `wait` seconds for the run's exit record; a run that never finished (killed)
    is returned as it stands after that.
    """
    deadline = time.monotonic() + wait
    while True:
        records = _parse(run_file(run_dir).read_bytes())
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() >= deadline:
            return records
        time.sleep(0.1)


def _parse(data: bytes) -> list[pb.Record]:
    records, parts = [], None
    for kind, body in _chunks(data):
        if kind == FULL:
            parts = [body]
        elif kind == FIRST:
            parts = [body]
            continue
        elif parts is None:
            raise ValueError("continuation chunk without a first chunk")
        else:
            parts.append(body)
            if kind == MIDDLE:
                continue
        record = pb.Record()
        record.ParseFromString(b"".join(parts))
        records.append(record)
        parts = None
    return records


def _path(item) -> list[str]:
    """wandb writes a flat key as nested_key [key] and a logged object (histogram, image,
    table) as one item per field: nested_key [key, field]."""
    return list(item.nested_key) if item.nested_key else [item.key]


def _put(out: dict[str, Any], path: list[str], value: Any) -> None:
    for part in path[:-1]:
        node = out.get(part)
        if not isinstance(node, dict):
            node = out[part] = {}
        out = node
    out[path[-1]] = value


def _drop(out: dict[str, Any], path: list[str]) -> None:
    for part in path[:-1]:
        out = out.get(part)
        if not isinstance(out, dict):
            return
    out.pop(path[-1], None)


def _history_value(item: pb.HistoryItem) -> Any:
    which = item.WhichOneof("value") if "value" in item.DESCRIPTOR.oneofs_by_name else None
    if which == "none":
        return None
    if which in ("boolean", "integer", "number", "text"):
        return getattr(item, which)
    if which == "json":
        return json.loads(item.json)
    return json.loads(item.value_json) if item.value_json else None


def history(run_dir: str | Path) -> list[dict[str, Any]]:
    """One dict per logged step (wandb's own keys such as _step, _runtime included)."""
    steps = []
    for r in read_records(run_dir):
        if r.WhichOneof("record_type") == "history":
            step: dict[str, Any] = {}
            for item in r.history.item:
                _put(step, _path(item), _history_value(item))
            steps.append(step)
    return steps


def _apply(out: dict[str, Any], rec) -> None:
    for item in rec.update:
        _put(out, _path(item), json.loads(item.value_json))
    for item in rec.remove:
        _drop(out, _path(item))


def _apply_updates(records: list[pb.Record], kind: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for r in records:
        which = r.WhichOneof("record_type")
        if which == kind:
            _apply(out, getattr(r, kind))
        elif which == "run" and r.run.HasField(kind):  # what wandb.init(config=...) carried
            _apply(out, getattr(r.run, kind))
    return out


def summary(run_dir: str | Path) -> dict[str, Any]:
    """The run's final summary (all summary updates applied in order)."""
    return _apply_updates(read_records(run_dir), "summary")


def config(run_dir: str | Path) -> dict[str, Any]:
    """The run's config as passed to wandb.init / run.config (keys as logged, values
    JSON-decoded; wandb's own "_wandb" entry dropped)."""
    out = _apply_updates(read_records(run_dir), "config")
    out.pop("_wandb", None)
    return {k: v["value"] if isinstance(v, dict) and set(v) == {"value"} else v for k, v in out.items()}


def run_info(run_dir: str | Path) -> dict[str, Any]:
    """The run record's identity: id, name (display name), group, job_type, project."""
    for r in read_records(run_dir):
        if r.WhichOneof("record_type") == "run":
            return {
                "id": r.run.run_id, "name": r.run.display_name, "group": r.run.run_group,
                "job_type": r.run.job_type, "project": r.run.project,
            }
    return {}


def media_files(run_dir: str | Path, kind: str = "images") -> list[Path]:
    """Files wandb wrote under files/media/<kind>/ of the run."""
    folder = run_file(run_dir).parent / "files" / "media" / kind
    return sorted(p for p in folder.rglob("*") if p.is_file())


def metrics(run_dir: str | Path) -> dict[str, list[str]]:
    """What define_metric declared: metric name -> its summary aggregations (e.g. ["max"])."""
    out: dict[str, list[str]] = {}
    for r in read_records(run_dir):
        if r.WhichOneof("record_type") == "metric" and r.metric.name:
            aggs = [f.name for f, v in r.metric.summary.ListFields() if v is True]
            out.setdefault(r.metric.name, [])
            out[r.metric.name] += [a for a in aggs if a not in out[r.metric.name]]
    return out


def artifacts(run_dir: str | Path) -> list[dict[str, Any]]:
    """Artifacts the run logged: name, type and the paths of the files in its manifest."""
    return [
        {"name": r.artifact.name, "type": r.artifact.type,
         "files": sorted(c.path for c in r.artifact.manifest.contents)}
        for r in read_records(run_dir) if r.WhichOneof("record_type") == "artifact"
    ]
