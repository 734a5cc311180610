"""`unlearnlab task=bench`: how fast the framework is, measured on whatever device is present.

Sections (all measured in one process, side by side):

1. framework / plain loop: epoch time of the framework (Lightning Trainer built exactly as cells
   build it, SupervisedModule, DeviceBatches) against a hand-written loop
   (`for x, y in batches: loss.backward(); opt.step()`) on the same model, optimizer, scheduler,
   device-resident batches (synthetic 32×32, crop + flip) and precision. Framework and plain
   epochs alternate (to cancel drift); each side reports its best of k. Goal: ratio ≤ 1.05.
   "fit/plain" also counts the Trainer's construction and fit setup/teardown, paid once per cell.
2. training throughput (img/s, plain loop, augmentation included) of small_cnn, fastnet and
   resnet18_cifar on synthetic 32×32 data, per precision/memory-format variant; on a CPU with one
   thread (what every cell uses) and with all the job's cores, side by side.
3. the statistical audit of one method at 5,000 examples × (512 + 512) models: F, its
   permutation p-value (K = 49) and the ε lower bound on the job's cores (F also on one core).
4. unlearning cost: per method, its cell's seconds against a retrain cell's seconds on the study's
   data with the study's recipe (real cells, computed in a throw-away store; rounds interleave
   retrain and methods; best of R).
5. device-hours of an N = 512 + 512 study, estimated from the rates above.

Options are declared in conf/bench/default.yaml (null = the device's default), e.g.
`bench=tiny` (seconds-long CPU smoke run), `bench.repeats=5`, `bench.sections=[ratio,audit]`,
`bench.threads=1`; the methods timed are the study's (`method=[retrain,finetune]`). Nothing
is logged to W&B; results go to the terminal and to bench.json in the output directory.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from unlearnlab.plugins import config_dir
from unlearnlab.cells import trainer_factory
from unlearnlab.cores import job_cores
from unlearnlab.data.loader import Augment, DeviceBatches
from unlearnlab.errors import ConfigError
from unlearnlab.files import write_atomic
from unlearnlab.models import build_model, memory_format
from unlearnlab.pipeline import open_pipeline, output_dir, training_device
from unlearnlab.store import Store
from unlearnlab.tracking import Tracker
from unlearnlab.training import OptimSettings, SupervisedModule

SECTIONS = ("ratio", "throughput", "audit", "methods")
IMAGE = (3, 32, 32)
CIFAR_TRAIN = 50_000  # CIFAR-10's train set, for the audit-scale estimate
CIFAR_RETAIN = 45_000  # ... minus a 10% forget set


# ---------------------------------------------------------------------------------- options
def _defaults(device: torch.device, tiny: bool) -> dict[str, Any]:
    gpu = device.type == "cuda"
    if tiny:
        return dict(
            repeats=2, ratio_models=["small_cnn"], ratio_images=64, batch_size=32,
            throughput_models=["small_cnn", "fastnet", "resnet18_cifar"], throughput_batches=1, throughput_batch=8,
            method_repeats=1, epochs=1,
            audit_examples=200, audit_models=16, audit_permutations=9, n_study=512, precisions=None, channels_last=None,
            sections=list(SECTIONS), threads=1,
        )
    return dict(
        repeats=5 if gpu else 3,
        ratio_models=["small_cnn", "fastnet"],
        ratio_images=45_000 if gpu else 512,
        batch_size=512 if gpu else 64,
        throughput_models=["small_cnn", "fastnet", "resnet18_cifar"],
        throughput_batches=20 if gpu else 3,
        throughput_batch=512 if gpu else 64,
        method_repeats=2,
        epochs=None,  # the study's recipe as configured
        audit_examples=5000,
        audit_models=512,
        audit_permutations=49,
        n_study=512,
        precisions=None,  # GPU: 32-true and bf16-mixed (+ channels_last); CPU: 32-true
        channels_last=None,  # ratio section: on with a *-mixed precision on a GPU, else the model's
        sections=list(SECTIONS),
        threads=None,  # CPU threads of the ratio and throughput loops; None: 1 and the job's cores side by side
    )


def bench_options(cfg: DictConfig, device: torch.device) -> dict[str, Any]:
    given = cfg.get("bench") or {}
    given = OmegaConf.to_container(given, resolve=True) if isinstance(given, DictConfig) else dict(given)
    tiny = bool(given.get("tiny", False))
    opts = _defaults(device, tiny)
    unknown = set(given) - set(opts) - {"tiny"}
    if unknown:
        raise ConfigError(f"bench: unknown option(s) {sorted(unknown)}; known: {sorted(opts) + ['tiny']}")
    opts.update({k: v for k, v in given.items() if v is not None})
    opts["tiny"] = tiny
    bad = set(opts["sections"]) - set(SECTIONS)
    if bad:
        raise ConfigError(f"bench.sections: unknown {sorted(bad)}; use some of {list(SECTIONS)}")
    return opts


# ---------------------------------------------------------------------------------- helpers
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _conf_dir() -> Path:
    return Path(config_dir())


def model_config(name: str, channels_last: bool | None = None) -> DictConfig:
    path = _conf_dir() / "model" / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"bench: no model config {path}")
    cfg = OmegaConf.load(path)
    if channels_last is not None:
        cfg.channels_last = bool(channels_last)
    cfg.compile = False
    return cfg


def autocast_for(precision: str, device: torch.device):
    """The autocast a plain loop needs to match Lightning's `precision` (None: no autocast)."""
    p = str(precision)
    if p in ("32-true", "32", "64-true", "64"):
        return None
    if p in ("bf16-mixed",):
        return torch.bfloat16
    if p in ("16-mixed", "16"):
        if device.type != "cuda":
            raise ConfigError("bench: precision 16-mixed needs CUDA")
        return torch.float16
    raise ConfigError(f"bench: the plain loop supports precision 32-true, bf16-mixed and 16-mixed, not {p!r}")


def synthetic_batches(n: int, batch_size: int, device: torch.device, seed: int = 0,
                      fmt: torch.memory_format = torch.contiguous_format, num_classes: int = 10) -> DeviceBatches:
    """n random uint8 32×32 RGB images on the device, with the kit's crop(pad 4) + flip."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, *IMAGE), generator=g, dtype=torch.uint8).to(device)
    y = torch.randint(0, num_classes, (n,), generator=g).to(device)
    mean = torch.full((1, 3, 1, 1), 0.5)
    std = torch.full((1, 3, 1, 1), 0.25)
    return DeviceBatches(x, y, mean, std, batch_size, True, seed, Augment(4, True), memory_format=fmt)


def plain_epoch(model: torch.nn.Module, batches, optim: OptimSettings, precision: str,
                device: torch.device) -> float:
    """One epoch of a hand-written loop; returns its seconds (device synchronised)."""
    built = optim.build(model.parameters(), len(batches), 1)
    opt, sched = (built["optimizer"], built["lr_scheduler"]["scheduler"]) if isinstance(built, dict) else (built, None)
    dtype = autocast_for(precision, device)
    scaler = torch.amp.GradScaler(device.type) if dtype is torch.float16 else None
    model.train()
    _sync(device)
    start = time.perf_counter()
    for x, y in batches:
        with torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext():
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        if sched is not None:
            sched.step()
    _sync(device)
    return time.perf_counter() - start


class EpochTimer(L.Callback):
    """Wall time of each training epoch inside a fit (device synchronised at both ends)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.times, self._t0 = device, [], 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        _sync(self.device)
        self._t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        _sync(self.device)
        self.times.append(time.perf_counter() - self._t0)


def framework_epoch(make_trainer, model, batches, optim: OptimSettings, device: torch.device) -> tuple[float, float]:
    """One 1-epoch fit as a cell runs it: (epoch seconds, whole fit seconds incl. Trainer setup)."""
    _sync(device)
    start = time.perf_counter()
    trainer = make_trainer(1)
    timer = EpochTimer(device)
    trainer.callbacks.append(timer)
    trainer.fit(SupervisedModule(model, batches, 1, optim))
    _sync(device)
    return timer.times[-1], time.perf_counter() - start


def _finite_positive(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


# ---------------------------------------------------------------------------------- sections
def bench_ratio(opts, cfg, make_trainer, device, console: Console) -> list[dict[str, Any]]:
    precision = str(cfg.trainer.precision)
    autocast_for(precision, device)  # fail early on an unsupported precision
    mixed = precision.endswith("-mixed")
    channels_last = opts["channels_last"]
    if channels_last is None and device.type == "cuda" and mixed:
        channels_last = True
    optim = OptimSettings("sgd", 0.01, 0.9, 5e-4, "cosine")
    rows = []
    for name in opts["ratio_models"]:
        L.seed_everything(0, verbose=False)
        fw_model = build_model(model_config(name, channels_last), IMAGE, 10).to(device)
        pl_model = copy.deepcopy(fw_model)
        fmt = memory_format(fw_model)
        batches = synthetic_batches(int(opts["ratio_images"]), int(opts["batch_size"]), device, fmt=fmt)
        # warm-up (allocator, cuDNN autotuning, lazy init): one epoch each, not counted
        framework_epoch(make_trainer, fw_model, batches, optim, device)
        plain_epoch(pl_model, batches, optim, precision, device)
        fw, fit, pl = [], [], []
        for r in range(int(opts["repeats"])):
            order = ("fw", "pl") if r % 2 == 0 else ("pl", "fw")
            for side in order:
                if side == "fw":
                    e, f = framework_epoch(make_trainer, fw_model, batches, optim, device)
                    fw.append(e)
                    fit.append(f)
                else:
                    pl.append(plain_epoch(pl_model, batches, optim, precision, device))
        row = {
            "model": name, "images": len(batches.y), "batch_size": batches.batch_size, "steps": len(batches),
            "precision": precision, "channels_last": fmt == torch.channels_last, "repeats": len(fw),
            "framework_epoch_s": min(fw), "plain_epoch_s": min(pl), "framework_fit_s": min(fit),
            "ratio": min(fw) / min(pl), "fit_ratio": min(fit) / min(pl),
            "fit_overhead_s": max(0.0, min(fit) - min(fw)),
            "framework_img_s": len(batches.y) / min(fw), "plain_img_s": len(batches.y) / min(pl),
        }
        rows.append(row)
        console.print(
            f"framework/plain epoch ratio ({name}): {row['ratio']:.3f}  "
            f"(framework {row['framework_epoch_s']:.3f} s, plain {row['plain_epoch_s']:.3f} s, "
            f"best of {row['repeats']}; fit/plain {row['fit_ratio']:.3f})"
        )
    return rows


def _variants(opts, cfg, device) -> list[tuple[str, bool]]:
    if opts["precisions"]:
        precisions = [str(p) for p in opts["precisions"]]
    elif device.type == "cuda":
        precisions = ["32-true", "bf16-mixed"]
    else:
        precisions = [str(cfg.trainer.precision)]
    out = []
    for p in precisions:
        cl = opts["channels_last"]
        if cl is None:
            cl = device.type == "cuda" and p.endswith("-mixed")
        out.append((p, bool(cl)))
    return out


def _thread_counts(opts, device) -> list[int]:
    """CPU: one thread (what a cell uses, cells.py) and every core the job owns, side by side."""
    if device.type != "cpu":
        return [torch.get_num_threads()]
    if opts["threads"]:
        return [int(opts["threads"])]
    return sorted({1, job_cores()})


def bench_throughput(opts, cfg, device, console: Console) -> list[dict[str, Any]]:
    rows = []
    optim = OptimSettings("sgd", 0.01, 0.9, 5e-4, "none")
    bs, nb = int(opts["throughput_batch"]), int(opts["throughput_batches"])
    before = torch.get_num_threads()
    try:
        for precision, cl in _variants(opts, cfg, device):
            for name in opts["throughput_models"]:
                for threads in _thread_counts(opts, device):
                    torch.set_num_threads(threads)
                    L.seed_everything(0, verbose=False)
                    model = build_model(model_config(name, cl), IMAGE, 10).to(device)
                    batches = synthetic_batches(bs * nb, bs, device, fmt=memory_format(model))
                    warm = synthetic_batches(bs, bs, device, fmt=memory_format(model))
                    plain_epoch(model, warm, optim, precision, device)
                    best = min(plain_epoch(model, batches, optim, precision, device) for _ in range(int(opts["repeats"])))
                    rows.append({
                        "model": name, "precision": precision, "channels_last": cl, "batch_size": bs, "threads": threads,
                        "images": bs * nb, "seconds": best, "img_s": bs * nb / best,
                    })
                    console.print(f"  {name:15s} {precision:11s} channels_last={cl!s:5s} {threads:3d} thread(s) "
                                  f"{bs * nb / best:10.0f} img/s")
    finally:
        torch.set_num_threads(before)
    return rows


@contextlib.contextmanager
def _owning_cores(n: int):
    """Run a block as a job that owns N cores (cores.job_cores reads OMP_NUM_THREADS)."""
    before = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(n)
    try:
        yield
    finally:
        if before is None:
            del os.environ["OMP_NUM_THREADS"]
        else:
            os.environ["OMP_NUM_THREADS"] = before


def _timed(fn, *args, **kwargs) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - start, out


def bench_audit(opts, console: Console) -> dict[str, Any]:
    """The statistical audit of one method at the given scale (official: 5,000 examples × (512 +
    512) models, K = 49): F, its permutation p-value and the ε lower bound, on the job's cores;
    F alone also on one core, side by side."""
    n, m, k = int(opts["audit_examples"]), int(opts["audit_models"]), int(opts["audit_permutations"])
    from unlearnlab.audits.competition import forgetting_quality, permutation_test
    from unlearnlab.audits.lower_bound import epsilon_lower_bound

    rng = np.random.default_rng(0)  # two exchangeable samples: the permutation test's hardest case
    retrain, unlearn = rng.standard_normal((m, n)), rng.standard_normal((m, n))
    cores = job_cores()
    with _owning_cores(1):
        f_one, _ = _timed(forgetting_quality, retrain, unlearn)
    f_s, _ = _timed(forgetting_quality, retrain, unlearn)
    p_s, test = _timed(permutation_test, retrain, unlearn, k)
    lb_s, _ = _timed(epsilon_lower_bound, retrain, unlearn)
    row = {"examples": n, "models": m, "permutations": k, "cores": cores, "seconds": f_s, "seconds_1_core": f_one,
           "p_value_s": p_s, "eps_lb_s": lb_s, "total_s": f_s + p_s + lb_s, "per_relabelling_over_F": p_s / (k + 1) / f_s,
           "p_value": test.p_value}
    console.print(f"  audit: {n} examples × ({m} + {m}) models: F {f_s:.2f} s ({f_one:.2f} s on 1 core), p-value "
                  f"(K = {k}) {p_s:.2f} s, ε lower bound {lb_s:.2f} s; F + p + ε_lb {row['total_s']:.1f} s on "
                  f"{cores} core(s)")
    return row


def _study_cfg(cfg: DictConfig, opts) -> DictConfig:
    c = copy.deepcopy(cfg)
    OmegaConf.set_struct(c, False)
    c.logger = {"kind": "none"}
    if opts["epochs"] is not None:
        c.recipe.epochs = int(opts["epochs"])
        for name in c.get("methods") or {}:
            if "epochs" in c.methods[name]:
                c.methods[name].epochs = int(opts["epochs"])
    return c


def bench_methods(opts, cfg, console: Console) -> dict[str, Any]:
    c = _study_cfg(cfg, opts)
    chosen = dict(c.get("methods") or {})  # the study's methods, chosen as for any study: method=[...]
    reps = int(opts["method_repeats"])
    with tempfile.TemporaryDirectory(prefix="unlearnlab-bench-") as tmp:
        pipe = open_pipeline(c, store=Store(Path(tmp) / "store"), tracker=Tracker({"kind": "none"}, "bench", tmp, {}),
                             out=Path(tmp))
        runner, planner = pipe.runner, pipe.planner
        original = runner.run(planner.original()).metrics["cost/seconds"]  # also warms everything up
        retrain: list[float] = []
        unlearn: dict[str, list[float]] = {name: [] for name in chosen}
        for i in range(reps):  # rounds interleave retrain and methods, so drift hits all alike
            retrain.append(runner.run(planner.retrain(i)).metrics["cost/seconds"])
            for name in chosen:
                unlearn[name].append(runner.run(planner.unlearn(name, i)).metrics["cost/seconds"])
    r = min(retrain)
    out = {
        "dataset": str(c.dataset.name), "model": str(c.model.name), "train_epochs": int(c.recipe.epochs),
        "repeats": reps, "original_s": original, "retrain_s": r, "retrain_all_s": retrain, "methods": {},
    }
    for name, secs in unlearn.items():
        u = min(secs)
        out["methods"][name] = {"unlearn_s": u, "unlearn_over_retrain": u / r, "rte": r / u, "all_s": secs}
        console.print(f"  {name:15s} unlearn {u:.2f} s  retrain {r:.2f} s  unlearn/retrain {u / r:.3f}")
    return out


def estimate(opts, results: dict[str, Any], device_name: str) -> dict[str, Any]:
    """Device-hours of an N = n_study + n_study study, from the measured rates."""
    n = int(opts["n_study"])
    est: dict[str, Any] = {"n_models": n, "device": device_name, "assumptions": []}
    audit_s = results.get("audit", {}).get("total_s")
    m = results.get("methods")
    if m and m.get("methods"):
        k = len(m["methods"])
        total = m["original_s"] + n * m["retrain_s"] + n * sum(v["unlearn_s"] for v in m["methods"].values())
        total += k * (audit_s or 0.0)
        est["this_study_hours"] = total / 3600
        est["assumptions"].append(
            f"this study ({m['dataset']}, {m['model']}, {m['train_epochs']} epochs): 1 original + {n} retrain + "
            f"{n} × {k} methods ({', '.join(m['methods'])}) at the measured seconds per cell, one process on "
            f"one device, plus {k} audits (F + p + ε_lb) at the measured 5,000 × (512 + 512) time (an upper bound)"
        )
    tp = [r for r in results.get("throughput", []) if r["model"] == "fastnet"]
    tp = [r for r in tp if r.get("threads", 1) == 1] or tp  # a cell runs on one thread (cells.py)
    if tp:
        best = max(tp, key=lambda r: r["img_s"])
        recipe = OmegaConf.load(_conf_dir() / "recipe" / "fastnet.yaml")
        epochs = int(recipe.epochs)
        fit_overhead = max([r["fit_overhead_s"] for r in results.get("ratio", [])] or [0.0])
        # a ratio < 1 is noise (the framework runs the same loop plus bookkeeping): never discount
        ratio = max([r["ratio"] for r in results.get("ratio", []) if r["model"] == "fastnet"] + [1.0])
        retrain_s = epochs * CIFAR_RETAIN / best["img_s"] * ratio + fit_overhead
        original_s = epochs * CIFAR_TRAIN / best["img_s"] * ratio + fit_overhead
        rel = {k: v["unlearn_over_retrain"] for k, v in (m or {}).get("methods", {}).items()}
        total = original_s + n * retrain_s + n * retrain_s * sum(rel.values()) + len(rel) * (audit_s or 0.0)
        est["cifar10_fastnet_hours"] = total / 3600
        est["cifar10_fastnet_retrain_s"] = retrain_s
        est["assumptions"].append(
            f"CIFAR-10 fastnet study: {epochs} epochs (conf/recipe/fastnet.yaml) over 45,000 retain images at the "
            f"measured fastnet rate ({best['img_s']:.0f} img/s, {best['precision']}, channels_last="
            f"{best['channels_last']}, plain loop) × the measured framework/plain ratio ({ratio:.3f}) + "
            f"{fit_overhead:.2f} s Trainer setup per cell; each method costs its unlearn/retrain ratio measured "
            f"on {(m or {}).get('dataset', '?')} ({', '.join(rel) or 'none measured'}); one process per device "
            "(measured on an H100: 2 jobs per GPU gain ~1.5× for small nets); evaluation/storing of outputs not counted"
        )
    return est


# ---------------------------------------------------------------------------------- output
def _fmt(x: Any, digits: int = 3) -> str:
    if isinstance(x, float):
        return f"{x:,.{digits}f}" if abs(x) < 1e4 else f"{x:,.0f}"
    return str(x)


def print_tables(results: dict[str, Any], console: Console) -> None:
    dev = results["device"]
    if results.get("ratio"):
        r0 = results["ratio"][0]
        t = Table(title=f"framework vs plain loop, epoch of {r0['images']} images, batch {r0['batch_size']} "
                        f"({dev}; best of {r0['repeats']}, alternating; goal ratio ≤ 1.05)")
        for col in ("model", "precision", "framework s", "plain s", "ratio", "fit/plain", "setup s", "img/s"):
            t.add_column(col, justify="left" if col in ("model", "precision") else "right")
        for r in results["ratio"]:
            prec = r["precision"] + (" NHWC" if r["channels_last"] else "")
            t.add_row(r["model"], prec, _fmt(r["framework_epoch_s"]), _fmt(r["plain_epoch_s"]), _fmt(r["ratio"]),
                      _fmt(r["fit_ratio"]), _fmt(r["fit_overhead_s"], 2), _fmt(r["framework_img_s"], 0))
        console.print(t)
    if results.get("throughput"):
        t = Table(title=f"training throughput, synthetic 32×32, crop+flip on device, plain loop ({dev})")
        for col in ("model", "precision", "channels_last", "batch", "threads", "img/s", "img/s / 1 thread"):
            t.add_column(col)
        one = {(r["model"], r["precision"], r["channels_last"]): r["img_s"] for r in results["throughput"]
               if r.get("threads") == 1}
        for r in results["throughput"]:
            base = one.get((r["model"], r["precision"], r["channels_last"]))
            t.add_row(r["model"], r["precision"], str(r["channels_last"]), str(r["batch_size"]), str(r.get("threads")),
                      _fmt(r["img_s"], 0), _fmt(r["img_s"] / base, 2) if base else "–")
        console.print(t)
    if "audit" in results:
        a = results["audit"]
        t = Table(title=f"statistical audit of one method, {a['examples']:,} forget examples × ({a['models']} + "
                        f"{a['models']}) models ({platform.processor() or 'CPU'}, numpy, {a['cores']} core(s))")
        for col in ("F", "F on 1 core", f"p-value (K = {a['permutations']})", "ε lower bound", "F + p + ε_lb",
                    "per relabelling / F"):
            t.add_column(col, justify="right")
        t.add_row(_fmt(a["seconds"], 2), _fmt(a["seconds_1_core"], 2), _fmt(a["p_value_s"], 2), _fmt(a["eps_lb_s"], 2),
                  _fmt(a["total_s"], 1), _fmt(a["per_relabelling_over_F"], 2))
        console.print(t)
    m = results.get("methods")
    if m:
        t = Table(title=f"unlearning cost on {m['dataset']} / {m['model']}, the study's recipe "
                        f"(retrain {m['retrain_s']:.2f} s/cell; {dev}; best of {m['repeats']}, interleaved)")
        for col in ("method", "unlearn s", "unlearn / retrain", "RTE (retrain / unlearn)"):
            t.add_column(col)
        for name, r in m["methods"].items():
            t.add_row(name, _fmt(r["unlearn_s"], 2), _fmt(r["unlearn_over_retrain"]), _fmt(r["rte"], 2))
        console.print(t)
    e = results.get("estimate")
    if e and ("this_study_hours" in e or "cifar10_fastnet_hours" in e):
        t = Table(title=f"estimated device-hours of an N = {e['n_models']} + {e['n_models']} study on {dev}")
        t.add_column("study")
        t.add_column("hours", justify="right")
        if "this_study_hours" in e:
            t.add_row("this study's data, model and recipe", _fmt(e["this_study_hours"], 3))
        if "cifar10_fastnet_hours" in e:
            t.add_row("CIFAR-10, fastnet, conf/recipe/fastnet.yaml", _fmt(e["cifar10_fastnet_hours"], 3))
        console.print(t)
        for a in e["assumptions"]:
            console.print(f"  assumption: {a}")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    threads = torch.get_num_threads()
    return f"CPU ({platform.machine()}, {threads} threads)"


def bench_task(cfg: DictConfig) -> dict[str, Any]:
    console = Console()
    device = training_device(cfg.trainer)
    opts = bench_options(cfg, device)
    if opts["threads"] or device.type == "cpu":
        torch.set_num_threads(int(opts["threads"] or 1))  # as cells run (cells.py): one thread
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    name = device_name(device)
    results: dict[str, Any] = {
        "device": name, "torch": torch.__version__, "lightning": L.__version__,
        "precision": str(cfg.trainer.precision), "tiny": opts["tiny"], "options": opts,
    }
    console.print(f"[bold]unlearnlab bench[/bold] on {name} (precision {cfg.trainer.precision}"
                  f"{', tiny' if opts['tiny'] else ''})")
    plain_cfg = _study_cfg(cfg, {"epochs": None})
    make_trainer = trainer_factory(plain_cfg.trainer)  # the Trainer cells use
    if "ratio" in opts["sections"]:
        console.rule("framework vs plain loop")
        results["ratio"] = bench_ratio(opts, cfg, make_trainer, device, console)
    if "throughput" in opts["sections"]:
        console.rule("throughput")
        results["throughput"] = bench_throughput(opts, cfg, device, console)
    if "audit" in opts["sections"]:
        console.rule("audit")
        results["audit"] = bench_audit(opts, console)
    if "methods" in opts["sections"]:
        console.rule("unlearning cost")
        results["methods"] = bench_methods(opts, cfg, console)  # cells pick their device from cfg.trainer
    results["estimate"] = estimate(opts, results, name)
    console.rule("results")
    print_tables(results, console)
    out = output_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "bench.json"
    write_atomic(path, json.dumps(results, indent=2, default=str))  # whole or not at all: task=plan reads it
    console.print(f"bench: {path}")
    return results
