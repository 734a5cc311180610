"""Reliability and safety (issue 8): bad input, faults and untrusted files lose nothing and
explain themselves.

Each test provokes one failure class and asserts (a) what the user sees — one line on stderr,
`error: ...`, exit status 2 (Hydra's own messages for unknown names) — and (b) that nothing
finished was lost or altered: every store entry keeps its files, checksums and mtimes.

CLI runs are slow on a loaded 2-core machine (~35 s to start and load data), so one tiny study
(digits, N=2, 1 epoch, finetune only) is computed once per module and each test works on a copy.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import multiprocessing as mp
import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from cli_runs import run_cli
from conftest import inprocess_error, unlearnlab_inprocess
from unlearnlab.store import CorruptEntryError, Store, StoreWriteError

REPO = Path(__file__).resolve().parents[1]
BASE = ["debug=tiny"]  # conf/debug/tiny.yaml: finetune, N = 2, 1-epoch recipe, audit=[competition], logger=none
KINDS = ("original", "retrain", "unlearn")


def unlearnlab(root: Path, *overrides: str, driver: Path | None = None, env: dict | None = None,
               timeout: int = 1500) -> subprocess.CompletedProcess:
    """`unlearnlab OVERRIDES` (or `python DRIVER OVERRIDES`) as a process of its own (cli_runs.py)."""
    return run_cli([f"paths.root={root}", "hydra.run.dir=" + str(root / "out"), *overrides], driver=driver,
                   env={**os.environ, "COLUMNS": "200", **(env or {})}, timeout=timeout)


def snapshot(store: Path) -> dict[str, tuple[int, str]]:
    """Every file of every finished entry: (mtime_ns, sha256). Locks, temp and quarantine excluded."""
    out = {}
    for kind in KINDS:
        for f in sorted((store / kind).glob("*/*")) if (store / kind).is_dir() else []:
            if not f.parent.name.startswith(".tmp-"):
                out[str(f.relative_to(store))] = (f.stat().st_mtime_ns, hashlib.sha256(f.read_bytes()).hexdigest())
    return out


def entries(store: Path) -> list[str]:
    return sorted(f"{k}/{p.name}" for k in KINDS if (store / k).is_dir()
                  for p in (store / k).iterdir() if (p / "meta.json").is_file())


def tmp_dirs(store: Path) -> list[Path]:
    return [p for p in store.rglob(".tmp-*")]


def inprocess(root: Path, *overrides: str):
    """`unlearnlab OVERRIDES` in this process, as `unlearnlab` above runs it (paths.root=ROOT, run dir ROOT/out)."""
    return unlearnlab_inprocess(root / "out", f"paths.root={root}", *overrides)


def inprocess_line(root: Path, *overrides: str) -> str:
    """The `error: ...` line the CLI would print for `unlearnlab OVERRIDES` (see conftest.inprocess_error)."""
    return f"error: {inprocess_error(root / 'out', f'paths.root={root}', *overrides)}"


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The CLI's one-line error: exit 2, the last stderr line starts with `error:`, no traceback."""
    assert proc.returncode == 2, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A store holding one tiny finished study: 1 original, 2 retrained, 2 unlearned (finetune)."""
    root = tmp_path_factory.mktemp("finished")
    inprocess(root, *BASE)
    assert len(entries(root / "store")) == 5
    return root / "store"


@pytest.fixture
def study(finished, tmp_path) -> Path:
    """A private copy of the finished study (mtimes kept); returns the new root."""
    shutil.copytree(finished, tmp_path / "store", copy_function=shutil.copy2)
    return tmp_path


def _save(store: Store, key="k1", value=1.0, kind="retrain"):
    sd = {"w": torch.full((64, 64), value)}
    return store.save(kind, key, {"metrics": {"test/acc": value}}, sd, {"forget": torch.full((8, 10), value)})


# -- 1. unknown names: Hydra's message, unmangled ------------------------------------------------
@pytest.mark.parametrize("override, missing", [
    ("method=nosuch", "method/nosuch"), ("dataset=nosuch", "dataset/nosuch"),
    ("model=nosuch", "model/nosuch"), ("audit=[competition,nosuch]", "audit/nosuch"),
])
def test_unknown_name_gets_hydras_message(study, override, missing):
    from hydra.errors import MissingConfigException

    before = snapshot(study / "store")
    with pytest.raises(MissingConfigException) as err:
        inprocess(study, *BASE, override)
    # Hydra's own words: "Could not find 'method/nosuch'" + the available options for one choice,
    # "Could not load 'audit/nosuch'" for an item of a list
    assert re.search(rf"In 'config': Could not (find|load) '{missing}'", str(err.value)), str(err.value)
    assert snapshot(study / "store") == before


def test_unknown_name_gets_hydras_message_through_the_cli(study):
    """Hydra prints its own message, exit 1, no traceback (one CLI run; the names above in-process)."""
    before = snapshot(study / "store")
    proc = unlearnlab(study, *BASE, "method=nosuch")
    assert proc.returncode == 1
    assert re.search(r"In 'config': Could not find 'method/nosuch'", proc.stderr), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert snapshot(study / "store") == before


# -- 2. out-of-range values ----------------------------------------------------------------------
@pytest.mark.parametrize("overrides, pattern", [
    (["split.fraction=0"], r"split\.fraction=0\.0 must be in \(0, 1\)"),
    (["n_models=1"], r"n_models=1 must be a whole number ≥ 2"),
    (["recipe.epochs=-1"], r"recipe\.epochs=-1 must be ≥ 0"),
    (["recipe.lr=-0.1"], r"lr=-0\.1.* must be .*≥ 0"),
    (["methods.finetune.lr=-1"], r"lr=-1(\.0)?.* must be .*≥ 0"),
    (["methods.finetune.epochs=-2"], r"methods\.finetune\.epochs=-2 must be ≥ 0"),
    (["split=class", "split.classes=[3,12]"], r"split\.classes has \[12\], but digits has classes 0\.\.9"),
])
def test_out_of_range_value_is_refused_in_one_line(study, overrides, pattern):
    before, keys = snapshot(study / "store"), entries(study / "store")
    line = inprocess_line(study, *BASE, *overrides)
    assert re.search(pattern, line), line
    assert snapshot(study / "store") == before and entries(study / "store") == keys


# -- 3. forget index file ------------------------------------------------------------------------
def test_bad_forget_index_file_is_refused_in_one_line(study):
    bad = study / "forget.txt"
    bad.write_text("3\n5\n3\n")
    before = snapshot(study / "store")
    line = inprocess_line(study, *BASE, "split=index_file", f"split.path={bad}")
    assert line == f"error: forget index file {bad} repeats indices [3]; list each once"
    assert snapshot(study / "store") == before


# -- 4. dataset not on disk, downloads off -------------------------------------------------------
def test_missing_dataset_names_path_and_switch(tmp_path):
    line = inprocess_line(tmp_path, *BASE, "dataset=mnist", "dataset.download=false", "model=small_cnn")
    assert str(tmp_path / "data" / "mnist") in line and "dataset.download=true" in line
    assert not (tmp_path / "store").exists() or entries(tmp_path / "store") == []


# -- 5. a loss that becomes NaN/inf ----------------------------------------------------------------
def test_diverging_training_names_class_phase_epoch_and_step(digits_data):
    import lightning as L

    from unlearnlab.models.small_cnn import SmallCNN
    from unlearnlab.training import DivergedError, OptimSettings, SupervisedModule

    L.seed_everything(0, verbose=False)
    model = SmallCNN(1, 10, 8, width=8)
    module = SupervisedModule(model, digits_data.batches("train", 256, seed=0), 1,
                              OptimSettings(lr=1e30, scheduler="none"))
    with pytest.raises(DivergedError, match=r"SupervisedModule: loss became NaN/inf in phase 'train' at epoch 0 \(step ≤ \d+\)"):
        L.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                  enable_progress_bar=False, enable_model_summary=False).fit(module)


def test_diverging_unlearning_stops_the_cell_and_stores_nothing(study):
    before, keys = snapshot(study / "store"), entries(study / "store")
    line = inprocess_line(study, *BASE, "methods.finetune.lr=1e30", "methods.finetune.scheduler=none")
    assert re.search(r"Finetune: loss became NaN/inf in phase 'unlearn' at epoch \d+ \(step ≤ \d+\)", line), line
    assert entries(study / "store") == keys and snapshot(study / "store") == before
    assert tmp_dirs(study / "store") == []


# -- 6. corrupt entries: detected, never used; the study quarantines and recomputes ---------------
@pytest.mark.parametrize("damage", ["truncate", "flip", "meta"])
def test_corrupt_entry_is_never_returned_and_is_quarantined_on_repair(tmp_path, damage):
    store = Store(tmp_path)
    entry = _save(store)
    _save(store, key="k2")
    intact = snapshot(tmp_path)
    target = entry.path / ("meta.json" if damage == "meta" else "model.safetensors")
    data = bytearray(target.read_bytes())
    if damage == "truncate":
        target.write_bytes(data[: len(data) // 3])
    elif damage == "flip":
        data[len(data) // 2] ^= 0xFF
        target.write_bytes(bytes(data))
    else:
        target.write_text('{"files": ')
    with pytest.raises(CorruptEntryError, match=r"store entry .*k1 is corrupt"):
        store.load("retrain", "k1")
    assert store.fetch("retrain", "k1") is None and store.has("retrain", "k1")  # reported, left in place
    with pytest.warns(UserWarning, match=r"moved it to .*quarantine"):
        assert store.fetch("retrain", "k1", repair=True) is None
    assert not store.has("retrain", "k1")
    assert len(list((tmp_path / "quarantine" / "retrain").iterdir())) == 1
    assert [k for _, k, _ in store.entries()] == ["k2"]
    assert {k: v for k, v in snapshot(tmp_path).items() if "k2" in k} == {k: v for k, v in intact.items() if "k2" in k}
    assert _save(store).meta["files"]  # recomputed in place


def test_entry_without_recorded_checksums_is_not_trusted(tmp_path):
    store = Store(tmp_path)
    entry = _save(store)
    meta = json.loads((entry.path / "meta.json").read_text())
    del meta["files"]["outputs.safetensors"]
    (entry.path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CorruptEntryError, match="no size/checksum for outputs.safetensors"):
        store.load("retrain", "k1")


def test_verify_task_lists_broken_entries_and_changes_nothing(tmp_path, capsys, monkeypatch):
    from unlearnlab.verify import verify_task

    monkeypatch.setenv("COLUMNS", "200")
    store = Store(tmp_path / "store")
    good, bad = _save(store, "good"), _save(store, "bad", kind="unlearn")
    cfg = OmegaConf.create({"paths": {"store": str(tmp_path / "store")}})
    assert verify_task(cfg) == 0
    assert "2 ok, 0 broken" in capsys.readouterr().out
    f = bad.path / "outputs.safetensors"
    f.write_bytes(f.read_bytes()[:-7])
    (tmp_path / "store" / "retrain" / ".tmp-x-h-1-0").mkdir()
    before = snapshot(tmp_path / "store")
    with pytest.raises(SystemExit) as exit_:
        verify_task(cfg)
    out = capsys.readouterr().out
    assert exit_.value.code == 1
    assert "bad" in out and "outputs.safetensors has" in out and "1 ok, 1 broken" in out
    assert "good" not in out.split("verified")[0].replace(str(tmp_path), "")
    assert snapshot(tmp_path / "store") == before and good.path.is_dir() and bad.path.is_dir()


def test_corrupt_entries_in_a_study_are_quarantined_and_recomputed(study, capsys):
    store = study / "store"
    before = snapshot(store)
    unlearn, retrain = sorted((store / "unlearn").iterdir())[0], sorted((store / "retrain").iterdir())[0]
    out = unlearn / "outputs.safetensors"
    out.write_bytes(out.read_bytes()[:100])  # truncated
    ckpt = retrain / "model.safetensors"
    data = bytearray(ckpt.read_bytes())
    data[-3] ^= 0x55
    ckpt.write_bytes(bytes(data))  # one flipped byte, same size

    with pytest.raises(SystemExit) as check:
        inprocess(study, "task=verify")
    out = capsys.readouterr().out
    assert check.value.code == 1
    assert unlearn.name in out and retrain.name in out and "2 broken" in out

    with pytest.warns(UserWarning, match=r"moved it to .*quarantine.* and recomputing it") as warned:
        inprocess(study, *BASE)
    assert len([w for w in warned if "recomputing" in str(w.message)]) == 2
    quarantined = sorted(p.name.split("-")[0] for k in ("unlearn", "retrain") for p in (store / "quarantine" / k).iterdir())
    assert quarantined == sorted([unlearn.name, retrain.name])
    assert len(entries(store)) == 5 and all(not Store.check(p, json.loads((p / "meta.json").read_text()))
                                            for k in KINDS for p in (store / k).iterdir())
    untouched = {k: v for k, v in before.items() if unlearn.name not in k and retrain.name not in k}
    after = snapshot(store)
    # the other cells were read, never rewritten; the unlearn cell of the corrupt retrain is keyed
    # on the original only, so it stays too
    assert {k: after[k] for k in untouched} == untouched
    capsys.readouterr()
    assert inprocess(study, "task=verify", "hydra.run.dir=" + str(study / "out2")) == 0  # nothing broken: exit 0
    assert "5 ok, 0 broken" in capsys.readouterr().out


# -- 7. two writers of one cell ---------------------------------------------------------------------
def _race_writer(root: str, value: float, barrier) -> None:
    barrier.wait()
    _save(Store(root), "same", value=value)


def test_two_processes_finishing_the_same_cell_leave_one_whole_result(tmp_path):
    ctx = mp.get_context("fork")
    for round_ in range(3):
        root = tmp_path / f"r{round_}"
        barrier = ctx.Barrier(2)
        procs = [ctx.Process(target=_race_writer, args=(str(root), v, barrier)) for v in (1.0, 2.0)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
        assert [p.exitcode for p in procs] == [0, 0]
        store = Store(root)
        assert [k for _, k, _ in store.entries()] == ["same"] and tmp_dirs(root) == []
        entry = store.load("retrain", "same")  # verifies sizes and checksums
        w = entry.state_dict()["w"]
        assert torch.equal(w, torch.full_like(w, w[0, 0])) and float(w[0, 0]) in (1.0, 2.0)
        assert float(entry.outputs()["forget"][0, 0]) == float(w[0, 0]) == entry.meta["metrics"]["test/acc"]


def test_many_threads_finishing_the_same_cell_agree(tmp_path):
    store, results, barrier = Store(tmp_path), [], threading.Barrier(6)

    def write(v):
        barrier.wait()
        results.append(float(_save(store, "same", value=v).state_dict()["w"][0, 0]))

    threads = [threading.Thread(target=write, args=(float(v),)) for v in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 6 and len(set(results)) == 1  # every writer reads back the one winner
    assert [k for _, k, _ in store.entries()] == ["same"] and tmp_dirs(tmp_path) == []


# -- 8 and 11. kill -9 mid-write, disk full mid-write ----------------------------------------------
DRIVER = textwrap.dedent('''
    """Runs the CLI with safetensors' save_file sabotaged: FAULT=kill -> SIGKILL after half a
    file is written; FAULT=enospc -> OSError(ENOSPC) after half a file is written."""
    import errno, os, signal
    import safetensors.torch as st
    import unlearnlab.store as store
    real = st.save_file
    def save_file(tensors, path, *a, **k):
        real(tensors, path, *a, **k)
        data = open(path, "rb").read()
        open(path, "wb").write(data[: len(data) // 2])
        if os.environ["FAULT"] == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    store.save_file = save_file
    from unlearnlab.cli import main
    main()
''')


def test_kill_9_mid_write_then_rerun_recomputes_only_that_cell(study, tmp_path, capsys):
    store = study / "store"
    victim = sorted((store / "unlearn").iterdir())[1]
    shutil.rmtree(victim)  # the one cell the killed run was computing
    before = snapshot(store)
    (tmp_path / "driver.py").write_text(DRIVER)
    killed = unlearnlab(study, *BASE, driver=tmp_path / "driver.py", env={"FAULT": "kill"})
    assert killed.returncode == -9
    leftovers = tmp_dirs(store)
    assert len(leftovers) == 1 and leftovers[0].name.startswith(f".tmp-{victim.name}-")  # half-written
    assert not victim.exists() and snapshot(store) == before  # never mistaken for an entry
    assert (store / "locks" / f"unlearn-{victim.name}.lock").exists()  # left behind, must not block

    capsys.readouterr()
    unlearnlab_inprocess(study / "out2", f"paths.root={study}", *BASE)  # the rerun: in-process
    assert "4 cached, 1 computed" in capsys.readouterr().out
    assert tmp_dirs(store) == []  # the dead writer's temp folder was cleaned
    after = snapshot(store)
    assert {k: after[k] for k in before} == before and (victim / "meta.json").is_file()
    assert Store(store).load("unlearn", victim.name)


def test_stale_temp_folders_are_cleaned_live_ones_kept(tmp_path):
    from unlearnlab import store as store_mod

    store = Store(tmp_path)
    _save(store, "a")
    host = socket.gethostname().replace("-", "_")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / "retrain" / f".tmp-b-{host}-{dead.pid}-0000"
    live = tmp_path / "retrain" / f".tmp-c-{host}-{os.getpid()}-0000"
    old = tmp_path / "retrain" / ".tmp-d-12345678"
    for p in (stale, live, old):
        p.mkdir()
        (p / "model.safetensors").write_bytes(b"half")
    t = 1e9
    os.utime(old, (t, t))
    assert [k for _, k, _ in store.entries()] == ["a"] and not store.has("retrain", "b")
    removed = store.clean_tmp("retrain")
    assert sorted(removed) == sorted([stale, old]) and live.is_dir()
    assert store_mod.STALE_TMP_SECONDS > 3600


def test_disk_full_during_save_leaves_store_consistent(tmp_path, monkeypatch):
    import unlearnlab.store as store_mod

    store = Store(tmp_path)
    _save(store, "done")
    before = snapshot(tmp_path)
    real = store_mod.save_file

    def full(tensors, path, *a, **k):
        real(tensors, path, *a, **k)
        Path(path).write_bytes(Path(path).read_bytes()[:10])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(store_mod, "save_file", full)
    with pytest.raises(StoreWriteError, match=r"could not write store entry .*new \(No space left on device\); nothing was stored"):
        _save(store, "new")
    assert not store.has("retrain", "new") and tmp_dirs(tmp_path) == [] and snapshot(tmp_path) == before


def test_disk_full_mid_study_is_refused_in_one_line(study, monkeypatch):
    """DRIVER's FAULT=enospc, in-process: save_file writes half a file, then ENOSPC."""
    import unlearnlab.store as store_mod

    store = study / "store"
    victim = sorted((store / "unlearn").iterdir())[0]
    shutil.rmtree(victim)
    before = snapshot(store)
    real = store_mod.save_file

    def full(tensors, path, *a, **k):
        real(tensors, path, *a, **k)
        Path(path).write_bytes(Path(path).read_bytes()[: Path(path).stat().st_size // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(store_mod, "save_file", full)
    line = inprocess_line(study, *BASE)
    assert f"could not write store entry {victim}" in line and "No space left on device" in line
    assert tmp_dirs(store) == [] and not victim.exists() and snapshot(store) == before


# -- 9. an audit over cells that do not match -------------------------------------------------------
@pytest.mark.parametrize("override, differs", [
    ("split.fraction=0.2", "split.fraction (store: 0.1, this audit: 0.2)"),
    ("dataset=mnist5k", "dataset.name (store: digits, this audit: mnist5k)"),
    ("n_models=3", "index 2"),
])
def test_audit_over_mismatched_cells_is_refused_naming_the_difference(study, override, differs):
    before = snapshot(study / "store")
    from unlearnlab.errors import ConfigError

    with pytest.raises(ConfigError) as err:  # the CLI prints it as `error: audit refused ...`, exit 2
        inprocess(study, *BASE, "task=audit", override)
    assert str(err.value).startswith("audit refused") and differs in str(err.value), str(err.value)
    assert snapshot(study / "store") == before


# -- 10. W&B unreachable -----------------------------------------------------------------------------
def test_unreachable_wandb_costs_a_warning_not_the_study(study):
    env = {"WANDB_MODE": "online", "WANDB_BASE_URL": "http://127.0.0.1:9", "WANDB_API_KEY": "x" * 40}
    before = snapshot(study / "store")
    proc = unlearnlab(study, *BASE, "logger=wandb", "logger.init_timeout=1", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (study / "out" / "results.json").is_file() and (study / "out" / "report.md").is_file()
    assert re.search(r"W&B .* failed .*the study goes on without it", proc.stderr, re.S), proc.stderr[-3000:]
    assert snapshot(study / "store") == before
    kept = sorted((study / "out" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert kept, "the runs that could not go online are kept offline"


# -- 12. GPU trainer without a GPU ---------------------------------------------------------------------
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_gpu_trainer_without_cuda_is_refused_before_any_work(study):
    before, locks = snapshot(study / "store"), sorted((study / "store" / "locks").iterdir())
    line = inprocess_line(study, *BASE, "trainer=gpu", "seed=7")
    assert line == "error: trainer.accelerator=gpu needs CUDA, but none is available here; use trainer=cpu"
    assert snapshot(study / "store") == before and sorted((study / "store" / "locks").iterdir()) == locks


# -- 13. untrusted files and configs -------------------------------------------------------------------
class _Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_planted_pickle_checkpoint_is_refused_and_never_executed(tmp_path):
    from unlearnlab.verify import scan

    store = Store(tmp_path / "store")
    entry = _save(store)
    marker = tmp_path / "pwned"
    ckpt = entry.path / "model.safetensors"
    torch.save({"w": _Exploit(str(marker))}, ckpt)
    # the attacker also rewrites meta.json so that size and checksums match the planted file
    from unlearnlab.store import meta_checksum

    meta = json.loads((entry.path / "meta.json").read_text())
    meta["files"]["model.safetensors"] = {"size": ckpt.stat().st_size, "sha256": hashlib.sha256(ckpt.read_bytes()).hexdigest()}
    meta["meta_sha256"] = meta_checksum(meta)
    (entry.path / "meta.json").write_text(json.dumps(meta))

    loaded = store.load("retrain", "k1")
    with pytest.raises(CorruptEntryError, match="not a readable safetensors file"):
        loaded.state_dict()
    for planted in (ckpt, shutil.copy(ckpt, tmp_path / "model.pt")):  # any torch.load must pass weights_only=True
        with pytest.raises(Exception, match="Weights only load failed|deserializ"):
            torch.load(planted, weights_only=True)
    broken = scan(store).broken
    assert [b["key"] for b in broken] == ["k1"] and "not a safetensors file" in broken[0]["problem"]
    assert not marker.exists()


def test_no_code_path_unpickles():
    """Checkpoints load via safetensors; a torch.load anywhere must say weights_only=True."""
    for f in (REPO / "src" / "unlearnlab").rglob("*.py"):
        text = f.read_text()
        assert not re.search(r"^\s*(import pickle|from pickle|import dill|import joblib)", text, re.M), f
        for call in re.finditer(r"torch\.load\(([^)]*)\)", text):
            assert "weights_only=True" in call.group(1), f"{f}: {call.group(0)}"


@pytest.mark.parametrize("override", ["methods.finetune._target_=os.system", "model._target_=subprocess.getoutput"])
def test_target_outside_the_allowlist_is_refused_in_one_line(study, override):
    before, keys = snapshot(study / "store"), entries(study / "store")
    line = inprocess_line(study, *BASE, override)
    target = override.split("=", 1)[1]
    assert f"_target_ '{target}' is not allowed: it is outside the allowed packages (unlearnlab methods" in line, line
    assert snapshot(study / "store") == before and entries(study / "store") == keys


def test_check_config_refuses_early():
    from hydra import compose, initialize_config_dir

    from unlearnlab.errors import ConfigError
    from unlearnlab.checks import check_config

    def cfg(*ov):
        with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
            return compose("config", overrides=list(ov))

    check_config(cfg())
    check_config(cfg("method=scrub"))
    for ov, msg in [
        (("method=finetune", "methods.finetune._target_=os.system"), "config.methods.finetune: _target_ 'os.system' is not allowed"),
        (("methods.finetune.lr=-1",), "methods.finetune.lr=-1 must be a finite number ≥ 0"),
        (("recipe.lr=inf",), "recipe.lr=inf must be a finite number ≥ 0"),
        (("recipe.batch_size=0",), "recipe.batch_size=0 must be ≥ 1"),
        (("n_models=0",), "n_models=0 must be a whole number ≥ 2"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(msg)):
            check_config(cfg(*ov))


# -- 14. issue 15: real read-only and full disks (tmpfs, as root) ----------------------------------
@pytest.fixture
def tmpfs(tmp_path):
    """mount(size) -> a fresh tmpfs at tmp_path/mnt-N of that size; unmounted afterwards.
    Skipped, with the reason, where mounting is not permitted."""
    mounted = []

    def mount(size: str) -> Path:
        if os.geteuid() != 0:
            pytest.skip(f"a real tmpfs needs root (running as uid {os.geteuid()})")
        where = tmp_path / f"mnt-{len(mounted)}"
        where.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"mount -t tmpfs is not permitted here: {r.stderr.strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def read_only(where: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True, capture_output=True)


def test_read_only_store_refuses_writes_in_one_line_and_still_serves_entries(tmpfs):
    root = tmpfs("4m")
    _save(Store(root), "done")
    read_only(root)
    store = Store(root)
    assert store.load("retrain", "done").outputs()["forget"].shape == (8, 10)  # reading works
    with pytest.raises(StoreWriteError, match=r"could not write store entry .*retrain/k9 \(Read-only file system\)"):
        store.lock("retrain", "k9")  # fails creating locks/ (the traceback)
    with pytest.raises(StoreWriteError, match=r"\(Read-only file system\); nothing was stored"):
        _save(store, "k9")
    assert not store.has("retrain", "k9")


def test_real_full_disk_is_a_store_write_error(tmpfs):
    """safetensors raises its own SafetensorError ('... (os error 28)'), not an OSError."""
    root = tmpfs("192k")
    store = Store(root)
    _save(store, "small")  # 16 KiB of weights fit
    before = snapshot(root)
    big = {"w": torch.zeros(256, 256)}  # 256 KiB do not
    with pytest.raises(StoreWriteError, match=r"could not write store entry .*retrain/big \(No space left on device\); "
                                              r"nothing was stored for it and finished entries are intact"):
        store.save("retrain", "big", {"metrics": {}}, big, {"forget": torch.zeros(8, 10)})
    assert not store.has("retrain", "big") and tmp_dirs(root) == [] and snapshot(root) == before
    assert store.load("retrain", "small")


def test_read_only_and_full_stores_through_the_cli(study, tmpfs):
    ro = tmpfs("8m")
    shutil.copytree(study / "store", ro, dirs_exist_ok=True, copy_function=shutil.copy2)
    read_only(ro)
    inprocess(study, *BASE, f"paths.store={ro}")  # every cell is there: reading is enough (in this process)
    line = inprocess_line(study, *BASE, f"paths.store={ro}", "seed=5", "hydra.run.dir=" + str(study / "o2"))
    assert line.startswith(f"error: could not write store entry {ro}/") and "(Read-only file system)" in line, line
    # the same kind of error (an OSError writing the store) as the real command line prints it:

    full = tmpfs("16k")  # smaller than the first cell
    line = error_line(unlearnlab(study, *BASE, f"paths.store={full}", "hydra.run.dir=" + str(study / "o3")))
    assert line.startswith(f"error: could not write store entry {full}/original/") and "No space left on device" in line
    assert tmp_dirs(full) == [] and not any((full / "original").iterdir())


# -- 15. issue 15: verify and the start-up checks through the CLI -----------------------------------
def test_verify_reports_an_edited_metric_and_the_study_recomputes_it(study, capsys):
    store = study / "store"
    victim = sorted((store / "unlearn").iterdir())[0]
    meta = json.loads((victim / "meta.json").read_text())
    meta["metrics"]["forget/acc"] = 0.0  # a forged number, files untouched
    (victim / "meta.json").write_text(json.dumps(meta, indent=1))
    with pytest.raises(SystemExit) as check:
        inprocess(study, "task=verify")
    out = capsys.readouterr().out
    assert check.value.code == 1 and victim.name in out and "meta.json checksum differs" in out, out
    with pytest.warns(UserWarning, match=r"moved it to .*quarantine"):
        unlearnlab_inprocess(study / "o2", f"paths.root={study}", *BASE)
    assert json.loads((victim / "meta.json").read_text())["metrics"]["forget/acc"] != 0.0


def test_verify_on_a_missing_store_says_so(tmp_path):
    line = inprocess_line(tmp_path, "task=verify", f"paths.store={tmp_path / 'typo'}")
    assert line == f"error: paths.store={tmp_path / 'typo'} does not exist, so there is nothing to verify; " \
                   f"check the path (or paths.root) the study ran with"
    assert not (tmp_path / "typo").exists()


@pytest.mark.parametrize("overrides, start", [
    (["trainer.precision=bogus"], "error: trainer.precision=bogus is not a Lightning precision"),
    (["+trainer.max_epoch=2"], "error: trainer.max_epoch is not a lightning.Trainer argument; did you mean trainer.max_epochs?"),
    (["+methods.finetune.lrr=0.1"],
     "error: methods.finetune.lrr is not an argument of unlearnlab.methods.finetune.Finetune; did you mean methods.finetune.lr?"),
    (["+method.lr=0.1"], "error: method.lr is not a config key: a method's arguments sit at methods.NAME.KEY (this study: finetune)"),
    (["audit=[]"], "error: no audit selected (audit is empty)"),
    (["paths.store="], "error: paths.store is empty"),
    (["method=newton"], "error: method newton (Newton) applies to logreg models, but model=small_cnn is a network model"),
])
def test_mistakes_fail_in_the_first_seconds_before_anything_is_written(tmp_path, overrides, start):
    line = inprocess_line(tmp_path, *BASE, *overrides)
    assert line.startswith(start), line
    assert not (tmp_path / "store").exists() and not (tmp_path / "out").exists()  # refused before Hydra made the run dir


def test_store_path_that_is_a_file_is_refused_in_one_line(tmp_path):
    (tmp_path / "store").write_text("x")
    line = inprocess_line(tmp_path, *BASE)
    assert line == f"error: paths.store={tmp_path / 'store'} is a file, not a folder; point paths.store at a folder (new or existing)"


# -- 16. issue 15: keys cover the data, not where it was read from -------------------------------------
def _keys(*overrides: str) -> dict[str, str]:
    from hydra import compose, initialize_config_dir

    from unlearnlab.data import load_study_data
    from unlearnlab.pipeline import data_id
    from unlearnlab.plan import Planner

    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["debug=tiny", *overrides])
    return {c.label: c.key for c in Planner(cfg, data_id(load_study_data(cfg.dataset, cfg.split))).cells()}


def test_forget_index_file_edited_in_place_changes_every_key_that_reads_it(tmp_path):
    f = tmp_path / "forget.txt"
    f.write_text("\n".join(map(str, range(0, 100))))
    before = _keys("split=index_file", f"split.path={f}")
    f.write_text("\n".join(map(str, range(100, 200))))  # same path, other forget set
    after = _keys("split=index_file", f"split.path={f}")
    assert all(before[label] != after[label] for label in before if label != "original")


def test_the_same_forget_file_at_another_path_is_the_same_cells(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    for f in (a, b):
        f.write_text("\n".join(map(str, range(0, 100))))
    assert _keys("split=index_file", f"split.path={a}") == _keys("split=index_file", f"split.path={b}")


def test_a_number_given_as_a_string_is_the_same_cell():
    assert _keys("methods.finetune.lr=0.1") == _keys("methods.finetune.lr='0.1'")
    assert _keys("recipe.epochs=10") == _keys("recipe.epochs=10.0")


# == issue 23: reliability, as probed ================================================================
# -- class 1: a cell's key covers every input of its computation ---------------------------------
@pytest.mark.parametrize("override", [
    "trainer.limit_train_batches=1", "trainer.max_steps=3", "trainer.accumulate_grad_batches=2",
    "trainer.gradient_clip_val=1.0", "+trainer.min_epochs=2", "trainer.precision=64", "trainer.deterministic=false",
])
def test_trainer_flags_that_change_training_change_every_key(override):
    """`debug=tiny trainer.limit_train_batches=1`, then `debug=tiny`, reused all 5 cells."""
    before, after = _base_keys(), _keys(override)
    assert all(before[label] != after[label] for label in before), override


@functools.cache
def _base_keys() -> dict[str, str]:
    return _keys()


def test_what_cannot_change_a_result_changes_no_key(tmp_path):
    base = _base_keys()
    for override in ("logger=csv", "trainer.enable_progress_bar=true", "trainer.enable_model_summary=true",
                     "trainer.log_every_n_steps=50", f"trainer.default_root_dir={tmp_path}", "trainer.precision=32",
                     f"hydra.run.dir={tmp_path}", "+methods.finetune.flip=false"):  # 32 = 32-true; flip's own default
        assert _keys(override) == base, override


def test_trainer_flags_listed_as_without_effect_are_trainer_arguments():
    import inspect

    import lightning

    from unlearnlab.plan import TRAINER_NO_EFFECT

    assert set(TRAINER_NO_EFFECT) <= set(inspect.signature(lightning.Trainer.__init__).parameters)


def test_a_default_set_in_python_and_the_code_version_are_in_the_key(monkeypatch):
    """An upgrade that changes a default in a signature, or a method's code, reuses no old cell."""
    from unlearnlab.methods.base import UnlearningMethod
    from unlearnlab.methods.finetune import Finetune
    from unlearnlab.models.small_cnn import SmallCNN

    base = _base_keys()
    unlearn = [label for label in base if label.startswith("finetune#")]
    assert _keys("+methods.finetune.flip=true") != base  # finetune.yaml does not set flip: a Python default
    names = list(inspect_signature(UnlearningMethod.__init__).parameters)[3:]  # after self, model, data
    defaults = dict(zip(names, UnlearningMethod.__init__.__defaults__))
    monkeypatch.setattr(UnlearningMethod.__init__, "__defaults__", tuple({**defaults, "flip": True}.values()))
    changed = _keys()
    assert [label for label in base if changed[label] != base[label]] == unlearn
    monkeypatch.undo()
    monkeypatch.setattr(Finetune, "code_version", 2, raising=False)
    changed = _keys()
    assert [label for label in base if changed[label] != base[label]] == unlearn
    monkeypatch.setattr(SmallCNN, "code_version", 2, raising=False)
    changed = _keys()
    assert all(changed[label] != base[label] for label in base)


def inspect_signature(fn):
    import inspect

    return inspect.signature(fn)


def test_the_planned_key_is_the_hash_of_the_recorded_spec():
    """Keys are computed per seed from one serialised spec (planning speed): the same hash."""
    from hydra import compose, initialize_config_dir

    from unlearnlab.plan import Planner
    from unlearnlab.store import cell_key

    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["n_models=3"])
    cells = Planner(cfg, "data-id").cells()
    assert len(cells) == 1 + 3 + 4 * 3 and all(c.key == cell_key(c.spec) for c in cells)


# -- class 2: an interrupted run exits non-zero, says where it stopped, leaves no orphan ----------
SIGTERM_DRIVER = textwrap.dedent('''
    """The CLI, with SIGTERM sent to itself at the first training step of a retrained cell: what
    SLURM sends at preemption or scancel, at a moment Lightning's own handler is in charge."""
    import os, signal
    import unlearnlab.training as training
    real = training.SupervisedModule.training_step
    def training_step(self, batch, index):
        os.kill(os.getpid(), signal.SIGTERM)
        return real(self, batch, index)
    training.SupervisedModule.training_step = training_step
    from unlearnlab.cli import main
    main()
''')


def _drop(store: Path, kind: str, index: int) -> Path:
    """Remove the entry of KIND with INDEX (as recorded in its meta.json); returns its path."""
    victim = next(p for p in (store / kind).iterdir() if json.loads((p / "meta.json").read_text())["index"] == index)
    shutil.rmtree(victim)
    return victim


def test_sigterm_during_training_exits_non_zero_saying_where_and_keeps_what_was_finished(study, tmp_path):
    """Lightning turns SIGTERM during a fit into SystemExit() — exit 0, nothing written."""
    store = study / "store"
    victim = _drop(store, "retrain", 1)
    before = snapshot(store)
    (tmp_path / "driver.py").write_text(SIGTERM_DRIVER)
    proc = unlearnlab(study, *BASE, driver=tmp_path / "driver.py")
    assert proc.returncode == 143, f"exit {proc.returncode}\n{proc.stderr[-3000:]}"
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: stopped by SIGTERM while computing retrain cell retrain#1 (key {victim.name}, "
                           f"cell 3 of 5); finished cells are kept in the store: rerun the same command"), line
    assert "Traceback" not in proc.stderr and not (study / "out" / "results.json").exists()
    assert snapshot(store) == before and tmp_dirs(store) == [] and not victim.exists()


@pytest.fixture
def signals():
    """unlearnlab's SIGTERM/SIGINT handling in this (the test's main) thread, restored afterwards."""
    import signal as sig

    from unlearnlab import interrupts

    saved = {s: sig.getsignal(s) for s in interrupts.SIGNALS}
    if not interrupts.install():
        pytest.skip("signal handlers need the main thread")
    yield interrupts
    for s, handler in saved.items():
        sig.signal(s, handler)


def test_sigterm_in_a_sweep_job_is_an_interruption_not_a_success(study, signals, monkeypatch):
    """task=cell, in-process, with a real SIGTERM during the fit: Interrupted naming the cell, no
    cells.json (the job's record of success), no new or partial entry; the CLI exits 128 + 15."""
    import signal as sig

    import unlearnlab.training as training
    from unlearnlab.cli import stopped

    store = study / "store"
    victim = _drop(store, "retrain", 1)
    before = snapshot(store)
    real = training.SupervisedModule.training_step

    def training_step(self, batch, index):
        os.kill(os.getpid(), sig.SIGTERM)
        return real(self, batch, index)

    monkeypatch.setattr(training.SupervisedModule, "training_step", training_step)
    with pytest.raises(signals.Interrupted) as err:
        inprocess(study, *BASE, "task=cell", "index=1")
    assert f"stopped by SIGTERM while computing retrain cell retrain#1 (key {victim.name})" in str(err.value)
    assert not (study / "out" / "cells.json").exists()
    assert snapshot(store) == before and tmp_dirs(store) == []
    with pytest.raises(SystemExit) as exit_:
        stopped(err.value)
    assert exit_.value.code == 143


PIDNOTE = textwrap.dedent('''
    import os, time
    def note_pid_and_wait(folder):
        open(os.path.join(folder, str(os.getpid())), "w").close()
        time.sleep(60)
''')


def test_sigterm_to_a_pool_launcher_ends_its_workers(signals, tmp_path, monkeypatch):
    """hydra/launcher=pool waits for its jobs in joblib: SIGTERM there (Interrupted, a BaseException)
    makes joblib end its loky workers instead of leaving them training on."""
    import importlib
    import signal as sig
    import time

    from joblib import Parallel, delayed

    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "pidnote.py").write_text(PIDNOTE)  # what the workers import: nothing heavy
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))
    pidnote = importlib.import_module("pidnote")
    pids = tmp_path / "pids"
    pids.mkdir()

    def kill_when_both_started():
        while len(list(pids.iterdir())) < 2:
            time.sleep(0.05)
        os.kill(os.getpid(), sig.SIGTERM)

    threading.Thread(target=kill_when_both_started, daemon=True).start()
    with pytest.raises(signals.Interrupted):
        Parallel(n_jobs=2, backend="loky")(delayed(pidnote.note_pid_and_wait)(str(pids)) for _ in range(2))
    workers = [int(p.name) for p in pids.iterdir()]
    assert len(workers) == 2 and _all_gone(workers, 20), workers


def _all_gone(pids: list[int], within: float) -> bool:
    """Whether every process in PIDS has ended (or is a zombie) within WITHIN seconds."""
    import time

    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        alive = []
        for pid in pids:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if state != "Z":
                alive.append(pid)
        if not alive:
            return True
        time.sleep(0.1)
    return False


ORPHAN = textwrap.dedent('''
    """A launcher that starts a worker watching it (interrupts.exit_with_parent), then dies as
    kill -9 would: without ending the worker."""
    import os, subprocess, sys
    worker = subprocess.Popen([sys.executable, "-c", """
    import sys, time
    from unlearnlab import interrupts
    interrupts.install()
    interrupts.exit_with_parent(0.05)
    print("ready", flush=True)
    try:
        time.sleep(60)
    except interrupts.Interrupted as err:
        open(sys.argv[1], "w").write(str(err))
        raise SystemExit(err.exit_code)
    """, sys.argv[1]], stdout=subprocess.PIPE, text=True)
    assert worker.stdout.readline() == "ready\\n"
    print(worker.pid, flush=True)
    os._exit(0)
''')


def test_a_pool_worker_ends_when_its_launcher_is_killed(tmp_path):
    """kill -9 of a pool sweep's launching process left its loky workers training, orphaned."""
    (tmp_path / "launcher.py").write_text(ORPHAN)
    said = tmp_path / "said.txt"
    proc = subprocess.run([sys.executable, str(tmp_path / "launcher.py"), str(said)], capture_output=True, text=True,
                          timeout=120)
    worker = int(proc.stdout.split()[-1])
    assert _all_gone([worker], 30), "the worker outlived its launcher"
    assert re.match(r"stopped by SIGTERM \(the sweep's launching process, pid \d+, is gone\)", said.read_text())


REQUESTER = textwrap.dedent('''
    """Asks the fork server for a worker that watches it (interrupts.exit_with_requester, as a
    study's cell workers do: workers.worker_context), then dies as kill -9 would."""
    import multiprocessing, os, threading, time
    from unlearnlab import interrupts

    def work(conn):
        threading.Thread(target=interrupts.exit_with_requester, daemon=True).start()
        conn.send((os.getpid(), os.getppid()))
        time.sleep(60)

    if __name__ == "__main__":
        ctx = multiprocessing.get_context("forkserver")
        ours, theirs = ctx.Pipe()
        ctx.Process(target=work, args=(theirs,)).start()
        worker, its_parent = ours.recv()
        print(os.getpid(), its_parent, worker, flush=True)
        os.kill(os.getpid(), 9)
''')


def test_a_cell_worker_ends_when_the_process_that_asked_for_it_is_killed(tmp_path):
    """A study's or a job's cell workers are forked by multiprocessing's fork server, so their
    parent is the server, not the job: a worker watching its parent would outlive a killed job;
    each watches the process that asked for it."""
    (tmp_path / "requester.py").write_text(REQUESTER)
    said = tmp_path / "said.txt"
    # output to a file, not a pipe: under capture_output the worker died with its requester even with
    # no watch at all (not understood), and the test could not have failed
    with said.open("w") as out:
        proc = subprocess.run([sys.executable, str(tmp_path / "requester.py")], stdout=out, stderr=subprocess.STDOUT,
                              timeout=120)
    assert proc.returncode == -9, said.read_text()[-2000:]
    requester, its_parent, worker = map(int, said.read_text().split())
    assert its_parent != requester  # the fork server
    assert _all_gone([worker], 30), "the worker outlived the process that asked for it"


def test_a_pool_job_watches_its_launcher_and_a_command_from_a_shell_does_not():
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from unlearnlab.cli import _in_pool_worker

    saved = HydraConfig.instance().cfg
    try:
        for launcher, mode, expected in (("pool", RunMode.MULTIRUN, True), ("local", RunMode.MULTIRUN, False),
                                         ("pool", RunMode.RUN, False)):
            from hydra import compose, initialize_config_dir

            with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
                cfg = compose("config", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
            cfg.hydra.mode = mode
            HydraConfig.instance().set_config(cfg)
            assert _in_pool_worker() is expected, (launcher, mode)
    finally:
        HydraConfig.instance().cfg = saved


# -- class 3: a run never writes into a folder another run owns ----------------------------------
def _hydra_cfg(*overrides: str):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


def test_two_runs_of_the_same_second_get_two_folders(tmp_path):
    """Two studies started in the same second shared outputs/DATE/TIME (one's results were gone)."""
    from unlearnlab.rundir import MARK, claim_output_dir

    first, second = _hydra_cfg(f"paths.root={tmp_path}"), _hydra_cfg(f"paths.root={tmp_path}")
    second.hydra.run.dir = first.hydra.run.dir = str(tmp_path / "outputs" / "2026-01-01" / "10-00-00")  # the same second
    a, b = claim_output_dir(first, "run"), claim_output_dir(second, "run")
    assert a == tmp_path / "outputs" / "2026-01-01" / "10-00-00" and b == a.with_name("10-00-00-2")
    assert second.hydra.run.dir == str(b) and (a / MARK).is_file() and (b / MARK).is_file()
    old = tmp_path / "old"  # a folder from before markers, holding a run's files, counts as taken
    (old / ".hydra").mkdir(parents=True)
    third = _hydra_cfg(f"paths.root={tmp_path}")
    third.hydra.run.dir = str(old)
    assert claim_output_dir(third, "run") == tmp_path / "old-2"


def test_two_sweeps_of_the_same_second_get_two_folders_and_the_jobs_follow(tmp_path):
    from unlearnlab.rundir import claim_output_dir

    sweeps = [_hydra_cfg(f"paths.root={tmp_path}") for _ in range(2)]
    for c in sweeps:
        c.hydra.sweep.dir = str(tmp_path / "multirun" / "t")
    assert [claim_output_dir(c, "sweep") for c in sweeps] == [tmp_path / "multirun" / "t", tmp_path / "multirun" / "t-2"]
    # each job recomposes its config from the sweep's hydra overrides: they name the folder claimed
    assert list(sweeps[1].hydra.overrides.hydra)[-1] == f"hydra.sweep.dir='{tmp_path / 'multirun' / 't-2'}'"
    job = _hydra_cfg(f"paths.root={tmp_path}", *sweeps[1].hydra.overrides.hydra)
    assert job.hydra.sweep.dir == str(tmp_path / "multirun" / "t-2")


def test_a_run_folder_given_on_the_command_line_is_never_shared(tmp_path, capsys):
    """A second study given an existing hydra.run.dir overwrote its results.json silently."""
    from unlearnlab.rundir import RunDirCallback

    out = tmp_path / "runs" / "today"
    RunDirCallback().on_run_start(_hydra_cfg(f"hydra.run.dir={out}"))
    (out / "results.json").write_text("{}")
    with pytest.raises(SystemExit) as exit_:
        RunDirCallback().on_run_start(_hydra_cfg(f"hydra.run.dir={out}"))
    assert exit_.value.code == 2 and (out / "results.json").read_text() == "{}"
    assert capsys.readouterr().err.strip() == (
        f"error: hydra.run.dir={out} already holds another run's output (.unlearnlab-run); a run never writes into "
        f"another run's folder: give a new hydra.run.dir, or remove that folder")
    with pytest.raises(SystemExit):  # a path the file system cannot hold: one line, not ENAMETOOLONG's traceback
        RunDirCallback().on_run_start(_hydra_cfg(f"hydra.run.dir={tmp_path / ('x' * 256)}"))
    assert "is 256 bytes long, and file systems allow 255" in capsys.readouterr().err


# -- class 5: paths are where the command started, not where hydra.job.chdir moved it ---------------
def test_relative_paths_resolve_against_where_the_command_started(study, monkeypatch):
    """hydra.job.chdir=true runs the job inside its output folder: the default ./store became a
    new store per run and per sweep job."""
    from hydra import initialize_config_dir

    from unlearnlab.pipeline import run_composed
    from unlearnlab.tasks import run_task

    monkeypatch.chdir(study)  # where the user starts `unlearnlab`
    out = study / "out"

    def as_hydra_runs_it(cfg):
        out.mkdir(exist_ok=True)
        os.chdir(out)  # what hydra.job.chdir=true does before the task starts
        return run_task(cfg)

    before = snapshot(study / "store")
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        run_composed([*BASE, "hydra.job.chdir=true", "paths.root=."], out, as_hydra_runs_it)
    assert not (out / "store").exists() and snapshot(study / "store") == before  # every cell came from ./store


# -- class 8: ordinary conditions, one line each ------------------------------------------------------
def test_a_dangling_symlink_or_an_overlong_name_as_the_store_is_one_line(tmp_path):
    link = tmp_path / "store"
    link.symlink_to(tmp_path / "gone")
    line = inprocess_line(tmp_path, *BASE)
    assert line == (f"error: paths.store={link}: {link} is a symbolic link to {tmp_path / 'gone'}, which does not "
                    f"exist; create that folder, or point paths.store elsewhere")
    long = tmp_path / ("s" * 256)
    line = inprocess_line(tmp_path, *BASE, f"paths.store={long}")
    assert line.startswith(f"error: paths.store={long}: the path component ssss") and "is 256 bytes long" in line


def test_results_json_is_whole_or_the_previous_one_on_a_full_disk(tmpfs):
    from unlearnlab.files import ResultWriteError
    from unlearnlab.study import write_results

    out = tmpfs("64k")
    previous = write_results({"methods": {"a": {"audit/F": 0.1}}}, out).read_text()
    big = {"methods": {f"m{i}": {"audit/F": 0.1, "pad": "x" * 1000} for i in range(200)}}  # ~200 kB: does not fit
    with pytest.raises(ResultWriteError, match=r"could not write .*results.json \(No space left on device\); "
                                               r"the previous file is unchanged"):
        write_results(big, out)
    assert (out / "results.json").read_text() == previous and sorted(p.name for p in out.iterdir()) == ["results.json"]


def test_result_files_are_written_atomically():
    """results.json, cells.json and bench.json go through files.write_atomic (tested above on a
    real full disk), never a plain write that a full disk leaves half-written."""
    src = REPO / "src" / "unlearnlab"
    for module, name in (("study.py", "results.json"), ("sweep.py", "cells.json"), ("bench.py", "bench.json")):
        text = (src / module).read_text()
        assert "write_atomic(" in text and name in text, module
        assert not re.search(r"\.write_(text|bytes)\(json\.dumps", text), module


def test_wandb_online_without_a_login_logs_offline_instead_of_prompting(tmp_path, monkeypatch):
    from unlearnlab.tracking import wandb_mode

    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    with pytest.warns(UserWarning, match=r"WANDB_MODE=online, but no W&B login was found .*logging offline instead "
                                         r"of waiting at wandb's login prompt"):
        assert wandb_mode(None) == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)  # a login: online it stays (unreachable is handled apart)
    assert wandb_mode(None) == "online"


def test_a_study_with_output_redirected_prints_each_cell_as_it_finishes(study, capsys, monkeypatch):
    """SLURM and nohup write to a file: the progress bar printed nothing until the study ended."""
    import unlearnlab.study as study_mod

    monkeypatch.setattr(study_mod, "LARGE_STUDY_CELLS", 1)  # warnings before and during a study of hours
    monkeypatch.setattr(study_mod, "LONG_STUDY_SECONDS", 0.0)
    victims = [_drop(study / "store", "unlearn", i) for i in (0, 1)]
    capsys.readouterr()
    inprocess(study, *BASE)
    out = capsys.readouterr().out  # not a terminal, as under SLURM
    assert out.index("cells: 5 (3 in the store") < out.index("warning: 2 cells to compute")
    first = out.index(f"cell 4/5 finetune#0 {victims[0].name}: computed in ")
    assert "(3 cached, 1 computed of 2; about " in out[first:] and "s left)" in out[first:]
    assert out.index("warning: at the rate so far the remaining 1 cells take about") > first
    assert first < out.index(f"cell 5/5 finetune#1 {victims[1].name}: computed in ") < out.index("cells: 3 cached, 2 computed of 2")
    assert out.index("cells: 3 cached, 2 computed of 2") < out.index("results:")


def test_planning_a_huge_study_takes_seconds():
    """`task=plan n_models=200000` ran 9 minutes without a word: planning grew faster than N."""
    import time

    from hydra import compose, initialize_config_dir

    from unlearnlab.plan_task import plan_study

    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["task=plan", "n_models=10000", "paths.root=/nonexistent-root"])
    start = time.perf_counter()
    plan = plan_study(cfg)
    assert plan["cells"]["total"] == 1 + 10000 * 5 and plan["to_compute"] == 50001
    assert time.perf_counter() - start < 30  # ~3 s here; quadratic planning took minutes at this N
