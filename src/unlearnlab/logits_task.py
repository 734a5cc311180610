"""`unlearnlab task=logits`: checkpoints of models trained elsewhere → the files task=audit_files reads.

    unlearnlab task=logits model=resnet18 dataset=cifar10 split=index_file split.path=forget.txt \\
      logits.checkpoints=DIR logits.out=OUT

For models whose architecture unlearnlab can build (`model=`) trained on a dataset and split it
can load: every state dict in DIR (`*.safetensors`, or `*.pt` / `*.pth` read with
torch.load(weights_only=True), never unpickling code) is loaded into `model=`'s architecture and
measured exactly as a study measures its cells (cells.measure on one thread: eval mode, the
source's normalisation, no augmentation), and OUT receives one NAME.npz per checkpoint (float32 logits
forget, test, val and retain, the whole retain set) plus labels.npz (their labels,
`retain_sample` — the rows of retain a study's MIAs read, its fixed subsample of |test| — the
forget set's training indices and the data fingerprint): audit_files then gives a study's own
numbers for its own cells. Everything is written into a temp
folder first and moved into OUT only when every checkpoint was read, so a bad checkpoint leaves
OUT as it was.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from rich.console import Console
from safetensors.torch import load_file

from unlearnlab.audit_files import natural_key
from unlearnlab.cells import measure
from unlearnlab.certified import single_thread
from unlearnlab.data import StudyData, load_study_data
from unlearnlab.errors import ConfigError
from unlearnlab.models import build_model
from unlearnlab.pipeline import threads_per_worker, training_device
from unlearnlab.registry import source_loader

CHECKPOINTS = (".safetensors", ".pt", ".pth")
NPZ_PARTS = ("forget", "test", "val", "retain")  # measured on every checkpoint (cells.measure)
SAVE_HINT = "save it with safetensors.torch.save_file(model.state_dict(), PATH) or torch.save(model.state_dict(), PATH)"


def checkpoint_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise ConfigError(f"logits.checkpoints={folder} is not a folder; point it at a folder of state dicts")
    files = sorted((p for p in folder.iterdir() if p.suffix in CHECKPOINTS and p.is_file()), key=natural_key)
    if not files:
        raise ConfigError(f"logits.checkpoints={folder} holds no {' / '.join(CHECKPOINTS)} file; {SAVE_HINT}")
    stems: dict[str, Path] = {}
    for p in files:
        if p.stem in stems or p.stem == "labels":
            other = stems.get(p.stem)
            why = f"both {other.name} and {p.name} would become {p.stem}.npz" if other else "labels.npz is the labels' file"
            raise ConfigError(f"logits.checkpoints={folder}: {why}; rename one")
        stems[p.stem] = p
    return files


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict of tensors; nothing here unpickles code (weights_only=True refuses it)."""
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - an untrusted file: any failure to read it (torch's weights-only
        # unpickler refusing code, a torn file, not safetensors) is the same answer
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"checkpoint {path} could not be read as a state dict of tensors ({first[:200]}); "
                          f"only weights are read, never pickled code: {SAVE_HINT}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a Lightning-style checkpoint's weights
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"checkpoint {path} is not a state dict (a mapping of names to tensors); {SAVE_HINT}")
    if all(str(k).startswith("module.") for k in state):  # saved from DataParallel / DDP
        state = {str(k)[len("module."):]: v for k, v in state.items()}
    return state


def load_into(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path, model_name: str) -> None:
    """Strictly: a checkpoint of another architecture is refused, naming what differs."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        what = "; ".join(f"{label} {', '.join(keys[:3])}{' …' if len(keys) > 3 else ''}" for label, keys in
                         (("missing", missing), ("unexpected", unexpected), ("other shape", wrong)) if keys)
        raise ConfigError(f"checkpoint {path} does not fit model={model_name} on this dataset ({what}); "
                          f"choose the model= (and dataset=) it was trained as")
    model.load_state_dict(state)


def labels_arrays(data: StudyData) -> dict[str, np.ndarray]:
    """The labels of every part, the rows of retain a study's MIAs read (its fixed retain sample),
    the forget set's training indices and the data fingerprint."""
    out = {part: data.labels(part).cpu().numpy().astype(np.int64) for part in NPZ_PARTS}
    split = data.split
    out["retain_sample"] = np.searchsorted(split.retain.cpu().numpy(), split.retain_sample.cpu().numpy()).astype(np.int64)
    out["forget_indices"] = split.forget.cpu().numpy().astype(np.int64)
    out["data_fingerprint"] = np.array(data.fingerprint())
    return out


def check_out(out: Path, names: set[str]) -> None:
    """OUT may exist, but must not hold other models' .npz files (audit_files would read them)."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"logits.out={out} is a file; point it at a folder (new or empty)")
    if out.is_dir():
        stale = sorted(p.name for p in out.glob("*.npz") if p.name not in names)
        if stale:
            raise ConfigError(f"logits.out={out} already holds {', '.join(stale[:3])}{' …' if len(stale) > 3 else ''}, "
                              f"which no checkpoint here writes (task=audit_files would read it as a model); "
                              f"use a new folder")


def logits_task(cfg: DictConfig) -> Path:
    console = Console()
    torch.set_num_threads(threads_per_worker(1))
    device = training_device(cfg.trainer)
    ckpts = checkpoint_files(Path(str(cfg.logits.checkpoints)).expanduser())
    out = Path(str(cfg.logits.out)).expanduser()
    check_out(out, {f"{p.stem}.npz" for p in ckpts} | {"labels.npz"})
    data = load_study_data(cfg.dataset, cfg.split, source_loader(cfg.dataset)).to(device)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".tmp-logits-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    done = False
    try:
        np.savez(tmp / "labels.npz", **labels_arrays(data))
        for path in ckpts:
            model = build_model(cfg.model, data.input_shape, data.num_classes)
            load_into(model, read_state_dict(path), path, str(cfg.model.name))
            with single_thread():  # as a cell is measured (cells.py): the same bytes for the same weights
                outputs, metrics = measure(model, data, int(cfg.logits.batch_size), NPZ_PARTS)
            np.savez(tmp / f"{path.stem}.npz", **{part: outputs[part].numpy() for part in NPZ_PARTS})
            accs = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())
            console.print(f"{path.name}: {accs}", soft_wrap=True)
        for f in sorted(tmp.iterdir()):
            os.replace(f, out / f.name)
        done = True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if created and not done:
            shutil.rmtree(out, ignore_errors=True)  # a folder this run made: gone again
    console.print(f"wrote {len(ckpts)} model files and labels.npz to {out} "
                  f"(audit them: unlearnlab task=audit_files files.labels={out / 'labels.npz'} ...)", soft_wrap=True)
    return out
