"""`unlearnlab task=audit_files`: audit logits of models trained elsewhere with the study's own audits.

    unlearnlab task=audit_files files.labels=labels.npz files.reference=DIR_R \\
      +files.methods.mine=DIR_A +files.methods.theirs=DIR_B

Logits are the interchange format: every audit reads per-example logits, never a model, so a
folder of `.npz` files per side from any framework goes through `auditing.audit_methods`, the
function a study calls on its stacked cells, and gets the same numbers, tables, results.json,
report and W&B audit runs.

The format (read with allow_pickle=False; every mistake is refused in one line naming the file):
- each folder holds one `.npz` per model, taken in natural file-name order (`m2` before `m10`),
  with float logits `forget` (n_forget × C) and `test` (n_test × C), optionally `retain` and
  `val`; every file of a folder has the same parts, every folder at least 2 models and the
  same number of them, and every file the same C;
- `labels.npz` holds the integer labels (0 … C−1) of each part the logits have (`forget`,
  `test`, and `retain` / `val` where given), in the same order as the logits' rows; it may
  also carry `retain_sample` (the rows of retain the MIAs read; default all of them),
  `forget_indices` (the forget set's training indices) and `data_fingerprint` — task=logits
  writes all three, a study's own, and results.json records the last two.
Accuracies are computed from the logits (`retain/acc` over every retain row given). An audit
that reads a part the files lack (its `reads`) is skipped, with the reason in the table.
"""

from __future__ import annotations

import re
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from rich.console import Console

from unlearnlab.auditing import audit_methods, data_record
from unlearnlab.audits.base import ModelOutputs
from unlearnlab.errors import ConfigError, safe_name
from unlearnlab.pipeline import config_dict, output_dir
from unlearnlab.plan import RETRAIN
from unlearnlab.report import write_report
from unlearnlab.store import file_digest
from unlearnlab.study import write_results
from unlearnlab.tables import print_results
from unlearnlab.tracking import Tracker

PARTS = ("forget", "test", "retain", "val")  # the logit parts a model file may hold
REQUIRED = ("forget", "test")
LABEL_EXTRAS = ("retain_sample", "forget_indices", "data_fingerprint")  # what labels.npz may carry besides labels
SAVE_HINT = "save it with np.savez(PATH, forget=..., test=...) from plain float arrays"


def natural_key(path: Path) -> list[Any]:
    """`m2` before `m10`: numbers in a file name compare as numbers."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def read_npz(path: Path, what: str) -> dict[str, np.ndarray]:
    """Every array of an .npz file, read without pickle; a file that is not one is refused in one line."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except FileNotFoundError:
        raise ConfigError(f"{what}: {path} does not exist; check the path") from None
    except ValueError as err:
        if "allow_pickle" in str(err):
            raise ConfigError(f"{what}: {path} is pickled or holds an object array, which is never unpickled; "
                              f"{SAVE_HINT}") from None
        raise ConfigError(f"{what}: {path} is not a readable .npz file ({err}); {SAVE_HINT}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as err:
        raise ConfigError(f"{what}: {path} is not a readable .npz file ({err}); {SAVE_HINT}") from None


def read_labels(path: Path) -> dict[str, np.ndarray]:
    """labels.npz: 1-D integer labels forget and test (retain, val where given), and the optional
    forget_indices / data_fingerprint."""
    labels = read_npz(path, "files.labels")
    for key in labels:
        if key not in PARTS and key not in LABEL_EXTRAS:
            raise ConfigError(f"files.labels: {path} holds an array {key!r}; its keys are {', '.join(PARTS)} "
                              f"(and {', '.join(LABEL_EXTRAS)}): rename or remove it")
    for key in REQUIRED:
        if key not in labels:
            raise ConfigError(f"files.labels: {path} has no {key!r} labels; add them: "
                              f"np.savez(PATH, forget=y_forget, test=y_test)")
    for key in [*PARTS, "retain_sample", "forget_indices"]:
        y = labels.get(key)
        if y is not None and (y.ndim != 1 or not np.issubdtype(y.dtype, np.integer)):
            raise ConfigError(f"files.labels: {path}: {key} must be a 1-D integer array (one label per row), "
                              f"got {y.dtype} of shape {y.shape}")
    rows = labels.get("retain_sample")
    if rows is not None:
        n = len(labels["retain"]) if "retain" in labels else 0
        if not n or (len(rows) and (rows.min() < 0 or rows.max() >= n)) or len(np.unique(rows)) != len(rows):
            raise ConfigError(f"files.labels: {path}: retain_sample must list distinct rows of retain (0..{n - 1}); "
                              f"fix it or remove it (the MIAs then read every retain row)")
    return labels


def model_files(where: str, folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise ConfigError(f"{where}={folder} is not a folder; point it at a folder with one .npz of logits per model")
    files = sorted((p for p in folder.iterdir() if p.suffix == ".npz" and p.name != "labels.npz" and p.is_file()),
                   key=natural_key)
    if len(files) < 2:
        raise ConfigError(f"{where}={folder} holds {len(files)} model file{'s' if len(files) != 1 else ''} (.npz); "
                          f"the audit compares samples of models: give it at least 2")
    return files


def check_logits(where: str, path: Path, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One model's logits: known parts, forget and test present, 2-D floats, finite."""
    for key in arrays:
        if key not in PARTS:
            raise ConfigError(f"{where}: {path} holds an array {key!r}; a model file's keys are "
                              f"{', '.join(PARTS)}: rename or remove it")
    for key in REQUIRED:
        if key not in arrays:
            raise ConfigError(f"{where}: {path} has no {key!r} logits; {SAVE_HINT}")
    out = {}
    for key, x in arrays.items():
        if x.ndim != 2 or not np.issubdtype(x.dtype, np.floating):
            raise ConfigError(f"{where}: {path}: {key} must be float logits of shape (n_{key}, classes), "
                              f"got {x.dtype} of shape {x.shape}")
        if not np.isfinite(x).all():
            row = int(np.flatnonzero(~np.isfinite(x).all(axis=1))[0])
            raise ConfigError(f"{where}: {path}: {key} holds NaN/inf logits (first in row {row}); "
                              f"write the model's finite logits")
        out[key] = x.astype(np.float32) if x.dtype == np.float16 else x
    return out


def read_folder(where: str, folder: Path) -> tuple[list[Path], dict[str, np.ndarray]]:
    """A folder's model files and their logits stacked per part: (n_models, n_part, C)."""
    files = model_files(where, folder)
    first = None
    stacked: dict[str, list[np.ndarray]] = {}
    for path in files:
        arrays = check_logits(where, path, read_npz(path, where))
        if first is None:
            first = (path, arrays)
        ref_path, ref = first
        if set(arrays) != set(ref):
            raise ConfigError(f"{where}: {path} has parts {sorted(arrays)}, {ref_path.name} has {sorted(ref)}; "
                              f"give every model of a folder the same parts")
        for key, x in arrays.items():
            if x.shape != ref[key].shape:
                raise ConfigError(f"{where}: {path}: {key} has shape {x.shape}, {ref_path.name}'s has "
                                  f"{ref[key].shape}; every model of a folder has the same rows and classes")
            stacked.setdefault(key, []).append(x)
    return files, {k: np.stack(v) for k, v in stacked.items()}


def check_together(folders: dict[str, tuple[Path, list[Path], dict[str, np.ndarray]]], labels: dict[str, np.ndarray],
                   labels_path: Path) -> int:
    """Across folders: one class count, one forget set, one N; labels for every part, in range.
    Returns the number of classes."""
    (ref_where, (ref_dir, ref_files, ref)), *_ = folders.items()
    classes = ref["forget"].shape[-1]
    n = len(ref_files)
    for where, (folder, files, parts) in folders.items():
        for key, x in parts.items():
            if x.shape[-1] != classes:
                raise ConfigError(f"{where}: {files[0]}: {key} has {x.shape[-1]} classes, {ref_files[0]} has "
                                  f"{classes}; every model must score the same classes")
        for key in ("forget", "test"):
            if parts[key].shape[1] != ref[key].shape[1]:
                raise ConfigError(
                    f"{where}: {files[0]} has {parts[key].shape[1]} {key} rows, {ref_files[0]} ({ref_where}) has "
                    f"{ref[key].shape[1]}: reference and methods must be scored on the same {key} set, in the same order"
                )
        if len(files) != n:
            raise ConfigError(f"{where}={folder} holds {len(files)} models, {ref_where}={ref_dir} holds {n}: "
                              f"the audit compares N unlearned with N reference models; give every folder the same number")
    for where, (folder, files, parts) in folders.items():
        for key, x in parts.items():
            if key not in labels:
                raise ConfigError(f"files.labels: {labels_path} has no {key!r} labels, but {files[0]} has {key} "
                                  f"logits; add them (np.savez(PATH, ..., {key}=y_{key}))")
            if len(labels[key]) != x.shape[1]:
                raise ConfigError(f"files.labels: {labels_path} has {len(labels[key])} {key} labels, {files[0]} "
                                  f"({where}) has {x.shape[1]} {key} rows; one label per row, in the same order")
    for key in PARTS:
        y = labels.get(key)
        if y is not None and len(y) and (y.min() < 0 or y.max() >= classes):
            bad = int(y[(y < 0) | (y >= classes)][0])
            raise ConfigError(f"files.labels: {labels_path}: {key} has label {bad}, outside 0..{classes - 1} "
                              f"(the logits have {classes} classes); labels are class indices")
    return classes


def accuracy(logits: np.ndarray, labels: np.ndarray, part: str) -> np.ndarray:
    """Per model, computed as cells.measure computes a cell's, so a study's own cells give its
    numbers: a float32 mean for forget/test/val, an exact fraction for retain."""
    correct = (logits.argmax(-1) == labels[None, :]).sum(axis=1)
    if part == "retain":
        return correct / len(labels)
    return (correct.astype(np.float32) / np.float32(len(labels))).astype(float)


def outputs_of(parts: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> ModelOutputs:
    """ModelOutputs with accuracies computed from the logits (per model); the audits read the
    retain rows labels.npz names in `retain_sample` (a study's fixed subsample), or all of them."""
    metrics = {f"{key}/acc": accuracy(x, labels[key], key) for key, x in parts.items()}
    retain = parts.get("retain")
    if retain is not None and "retain_sample" in labels:
        retain = retain[:, labels["retain_sample"]]
    return ModelOutputs(forget=parts["forget"], test=parts["test"], retain=retain, metrics=metrics)


def load_files(files_cfg) -> tuple[dict[str, np.ndarray], ModelOutputs, dict[str, ModelOutputs], Path]:
    """Read and check every file task=audit_files names; (labels, reference, methods, labels path)."""
    labels_path = Path(str(files_cfg.labels)).expanduser()
    labels = read_labels(labels_path)
    where_dirs = {"files.reference": Path(str(files_cfg.reference)).expanduser()}
    where_dirs.update({f"files.methods.{name}": Path(str(d)).expanduser() for name, d in files_cfg.methods.items()})
    folders = {where: (d, *read_folder(where, d)) for where, d in where_dirs.items()}
    check_together(folders, labels, labels_path)
    outputs = {where: outputs_of(parts, labels) for where, (_, _, parts) in folders.items()}
    reference = outputs.pop("files.reference")
    methods = {where.removeprefix("files.methods."): out for where, out in outputs.items()}
    return labels, reference, methods, labels_path


def study_name(files_cfg) -> str:
    if files_cfg.get("name"):
        return safe_name(files_cfg.name, "files.name")
    return safe_name(f"files-{Path(str(files_cfg.reference)).expanduser().resolve().name}", "files.name")


def audit_files_task(cfg: DictConfig) -> None:
    """Read, check, audit, print, write results.json and the report, log the W&B audit runs."""
    console = Console() if sys.stdout.isatty() else Console(width=200)
    labels, reference, methods, labels_path = load_files(cfg.files)
    name = study_name(cfg.files)
    audit_cfg = cfg.copy()
    with read_write(audit_cfg), open_dict(audit_cfg):
        audit_cfg.study_name = name
    audit_labels = {k: labels[k].astype(np.int64) for k in ("forget", "test", "retain") if k in labels}
    if "retain" in audit_labels and "retain_sample" in labels:
        audit_labels["retain"] = audit_labels["retain"][labels["retain_sample"]]
    results = audit_methods(audit_cfg, audit_labels, reference, methods, {m: RETRAIN for m in methods})
    fingerprint = labels.get("data_fingerprint")
    results["data"] = data_record(None if fingerprint is None else str(fingerprint), labels.get("forget_indices"),
                                  labels_sha256=file_digest(labels_path))
    results["files"] = {"labels": str(labels_path), "reference": str(cfg.files.reference),
                        "methods": {k: str(v) for k, v in cfg.files.methods.items()}}
    out = output_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    path = write_results(results, out)
    print_results(console, results)
    shown = {"task": "audit_files", "files": config_dict(cfg.files), "audit": config_dict(cfg.audit),
             "n_models": results["n_models"]}
    report = write_report(results, OmegaConf.create(shown), out)
    Tracker(config_dict(cfg.logger), name, out, shown).log_study(results, report, [path])
    console.print(f"results: {path}\nreport:  {report.markdown}")
