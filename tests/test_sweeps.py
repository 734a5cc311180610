"""Sweeps: one Hydra job per cell (basic, joblib, submitit_local and a real SLURM cluster), the
audit at the end of the multirun and on demand, one original under concurrency, kill -9 and
resume, the audit's refusal of mismatched cells, and the launcher/trainer/optuna presets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from slurm_cluster import slurm_cluster  # noqa: F401  (fixture)

REPO = Path(__file__).resolve().parents[1]
CONF = str(REPO / "conf")

# The tiny sweep every end-to-end test runs: digits, N = 2, one epoch, finetune only.
BASE = ["task=cell", "controls=[]", "n_models=2"]
TINY = [*BASE, "train.epochs=1", "method=finetune", "method.epochs=1"]
INDEXES = "++index=range(0,2)"  # `++`: works before and after config.yaml gets `index: null`


def sweep(tmp: Path, *overrides: str, name: str = "sweep", timeout: int = 400, check: bool = True,
          popen: bool = False, multirun: bool = True):
    """`unlearnlab -m OVERRIDES` in a subprocess, with its store and sweep (or run) dir under TMP."""
    where = f"hydra.sweep.dir={tmp}/{name}" if multirun else f"hydra.run.dir={tmp}/{name}"
    cmd = [sys.executable, "-m", "unlearnlab.cli", *(["-m"] if multirun else []), *overrides,
           f"paths.root={tmp}", where]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    if popen:
        log = open(tmp / f"{name}.log", "w")
        return subprocess.Popen(cmd, cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    r = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=timeout)
    if check:
        assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    return r


def entries(store: Path, kind: str) -> list[Path]:
    d = store / kind
    return sorted(p for p in d.iterdir() if (p / "meta.json").is_file()) if d.is_dir() else []


def computed(sweep_dir: Path) -> dict[str, int]:
    """How many jobs computed (not fetched) each cell key, from every job's cells.json."""
    counts: dict[str, int] = {}
    for f in sweep_dir.glob("*/cells.json"):
        for c in json.loads(f.read_text()):
            counts.setdefault(c["key"], 0)
            counts[c["key"]] += not c["cached"]
    return counts


def audit_results(sweep_dir: Path, label: str = "all") -> dict:
    return json.loads((sweep_dir / "audit" / label / "results.json").read_text())


def assert_complete(tmp: Path, n: int, methods=("finetune",)) -> None:
    store = tmp / "store"
    assert len(entries(store, "original")) == 1
    assert len(entries(store, "retrain")) == n
    names = [json.loads((p / "meta.json").read_text())["name"] for p in entries(store, "unlearn")]
    assert sorted(names) == sorted(m for m in methods for _ in range(n))


def assert_same_audit(a: dict, b: dict) -> None:
    assert a["methods"].keys() == b["methods"].keys()
    for m, row in a["methods"].items():
        for k, v in row.items():
            if k.startswith("cost/"):
                continue  # wall time
            assert v == pytest.approx(b["methods"][m][k], rel=1e-6, abs=1e-9, nan_ok=True), (m, k)


# -- presets and small pieces (fast) ------------------------------------------------------------
def _compose(*overrides: str, hydra: bool = True):
    with initialize_config_dir(CONF, version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=hydra)


def test_slurm_preset_composes_with_cluster_overrides():
    cfg = _compose(
        "hydra/launcher=submitit_slurm", "hydra.launcher.partition=gpu", "hydra.launcher.gpus_per_node=1",
        "hydra.launcher.cpus_per_task=8", "hydra.launcher.timeout_min=240", "hydra.launcher.mem_gb=32",
        "hydra.launcher.array_parallelism=16", "hydra.launcher.max_num_timeout=5", "hydra.launcher.account=lab",
        "hydra.launcher.setup=[module load cuda]", "+hydra.launcher.additional_parameters.mail-type=END",
        "hydra/callbacks=audit", "trainer=gpu",
    )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.partition, launcher.gpus_per_node, launcher.cpus_per_task) == ("gpu", 1, 8)
    assert (launcher.timeout_min, launcher.mem_gb, launcher.array_parallelism) == (240, 32, 16)
    assert launcher.max_num_timeout == 5 and launcher.setup == ["module load cuda"]
    assert launcher.additional_parameters["mail-type"] == "END"
    assert cfg.hydra.callbacks.audit._target_ == "unlearnlab.sweep.AuditCallback"
    # every key the plugin's own schema knows is present, so none silently falls back
    from hydra_plugins.hydra_submitit_launcher.config import LocalQueueConf, SlurmQueueConf

    assert set(OmegaConf.structured(SlurmQueueConf)) <= set(launcher)
    local = _compose("hydra/launcher=submitit_local").hydra.launcher
    assert set(OmegaConf.structured(LocalQueueConf)) <= set(local)


def test_joblib_preset_and_ddp_trainer_compose():
    from hydra_plugins.hydra_joblib_launcher.config import JobLibLauncherConf

    launcher = _compose("hydra/launcher=joblib", "hydra.launcher.n_jobs=8").hydra.launcher
    assert launcher.n_jobs == 8 and set(OmegaConf.structured(JobLibLauncherConf)) <= set(launcher)
    trainer = _compose("trainer=ddp", "trainer.devices=4", hydra=False).trainer
    assert (trainer.strategy, trainer.devices, trainer.accelerator) == ("ddp", 4, "gpu")


def test_optuna_preset_composes():
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason='optional extra: pip install -e ".[optuna]"')
    # `hparams_search=` once config.yaml lists `- hparams_search: null` in its defaults; `+` until then
    plus = "" if "hparams_search" in (REPO / "conf" / "config.yaml").read_text() else "+"
    cfg = _compose(f"{plus}hparams_search=optuna_finetune")
    assert cfg.method.name == "finetune"
    assert cfg.hydra.sweeper.direction == "maximize"
    assert set(cfg.hydra.sweeper.params) == {"method.lr", "method.epochs"}


def test_audit_overrides_one_audit_per_sweep_combination():
    from unlearnlab.sweep import audit_overrides

    got = audit_overrides(["task=cell", "method=finetune,neggrad_plus", "index=range(0,8)", "n_models=8",
                           "method.lr=0.01,0.1"])
    assert got == [
        ["task=audit", "method=finetune", "n_models=8", "method.lr=0.01"],
        ["task=audit", "method=finetune", "n_models=8", "method.lr=0.1"],
        ["task=audit", "method=neggrad_plus", "n_models=8", "method.lr=0.01"],
        ["task=audit", "method=neggrad_plus", "n_models=8", "method.lr=0.1"],
    ]
    assert audit_overrides(["+index=1", "task=cell"]) == [["task=audit"]]
    assert audit_overrides(["method=finetune,scrub"]) == []  # a grid of studies: nothing to add


def test_cell_index_out_of_range_is_refused():
    from unlearnlab.errors import ConfigError
    from unlearnlab.sweep import _indices

    cfg = OmegaConf.create({"n_models": 4, "index": 4})
    with pytest.raises(ConfigError, match=r"index=4 is outside \[0, n_models=4\)"):
        _indices(cfg)
    assert _indices(OmegaConf.create({"n_models": 3})) == [0, 1, 2]


def _cells_in_process(tmp: Path, *overrides: str):
    from unlearnlab.sweep import cell_task

    with initialize_config_dir(CONF, version_base="1.3"):
        cfg = compose("config", overrides=[*TINY, "logger=none", "train.epochs=0", f"paths.root={tmp}",
                                           f"paths.output_dir={tmp}/out", *overrides])
    return cell_task(cfg)


def test_audit_refuses_mismatched_cells_and_says_what_differs(tmp_path):
    from unlearnlab.errors import ConfigError
    from unlearnlab.sweep import check_audit_inputs

    # finetune cells computed on a 20% forget set; the audit asks for the default 10%
    _cells_in_process(tmp_path, "split.fraction=0.2")
    with initialize_config_dir(CONF, version_base="1.3"):
        base = [*TINY[1:], "logger=none", "train.epochs=0", f"paths.root={tmp_path}"]
        ok = compose("config", overrides=[*base, "split.fraction=0.2"])
        other_split = compose("config", overrides=base)
        bigger_n = compose("config", overrides=[*base, "split.fraction=0.2", "n_models=3"])
        other_lr = compose("config", overrides=[*base, "split.fraction=0.2", "method.lr=0.01"])
    check_audit_inputs(ok)
    with pytest.raises(ConfigError) as err:
        check_audit_inputs(other_split)
    msg = str(err.value)
    assert "audit refused" in msg and "finetune (unlearn): 2 cell(s) missing" in msg
    assert "split.fraction (store: 0.2, this audit: 0.1)" in msg and "split.name" in msg
    assert "retrain (retrain): 2 cell(s) missing" in msg
    with pytest.raises(ConfigError, match=r"index 2\); the store holds finetune \(unlearn\) cells for index 0..1 only"):
        check_audit_inputs(bigger_n)
    with pytest.raises(ConfigError, match=r"method.lr \(store: 0.1, this audit: 0.01\)"):
        check_audit_inputs(other_lr)


# -- end to end (slow) --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The tiny sweep, uninterrupted, basic launcher, W&B offline, audit callback at the end."""
    tmp = tmp_path_factory.mktemp("reference")
    r = sweep(tmp, *TINY, INDEXES, "logger=wandb", "hydra/callbacks=audit")
    return tmp, r


@pytest.mark.slow
def test_basic_multirun_audit_callback_and_on_demand_audit(reference):
    tmp, r = reference
    assert_complete(tmp, 2)
    assert all(n == 1 for n in computed(tmp / "sweep").values()), computed(tmp / "sweep")
    callback = audit_results(tmp / "sweep")
    assert set(callback["methods"]) == {"finetune"} and callback["n_models"] == 2
    assert "audit/score" in callback["methods"]["finetune"]
    assert (tmp / "sweep" / "audit" / "all" / "report.md").is_file()
    # on demand, later: same overrides minus index, task=audit -> the same numbers
    from unlearnlab.sweep import run_audit

    with initialize_config_dir(CONF, version_base="1.3"):  # as `unlearnlab task=audit ...` composes it
        score = run_audit("config", ["task=audit", *TINY[1:], "logger=none", f"paths.root={tmp}"], tmp / "later")
    assert score == callback["methods"]["finetune"]["audit/score"]
    assert_same_audit(json.loads((tmp / "later" / "results.json").read_text()), callback)


@pytest.mark.slow
def test_sweep_wandb_runs_share_the_study_group(reference):
    from wandb_records import config, run_dirs, run_info

    tmp, _ = reference
    runs = [(run_info(d), d) for d in run_dirs(tmp / "sweep")]
    kinds = sorted(info["job_type"] for info, _ in runs)
    assert kinds == ["audit", "original", "retrain", "retrain", "unlearn", "unlearn"]
    assert {info["group"] for info, _ in runs} == {"digits-random0.1-small_cnn"}
    for info, d in runs:
        if info["job_type"] == "unlearn":
            cfg = config(d)
            assert cfg["method.lr"] == 0.1 and cfg["method.epochs"] == 1 and cfg["cell.name"] == "finetune"


@pytest.mark.slow
def test_joblib_four_jobs_train_the_original_once(tmp_path):
    # 4 jobs at once: 2 learning rates x 2 indexes; all need the one original, pairs share retrain #i
    sweep(tmp_path, *TINY, "method.lr=0.1,0.01", INDEXES, "logger=none",
          "hydra/launcher=joblib", "hydra.launcher.n_jobs=4", "hydra/callbacks=audit")
    assert_complete(tmp_path, 2, methods=("finetune", "finetune"))
    counts = computed(tmp_path / "sweep")
    assert len(counts) == 1 + 2 + 4 and all(n == 1 for n in counts.values()), counts
    jobs = [json.loads(f.read_text()) for f in (tmp_path / "sweep").glob("*/cells.json")]
    assert len(jobs) == 4 and all(job[0]["kind"] == "original" for job in jobs)
    a, b = (audit_results(tmp_path / "sweep", f"method.lr={lr}") for lr in ("0.1", "0.01"))
    assert set(a["methods"]) == set(b["methods"]) == {"finetune"}  # one audit per hyperparameter setting
    assert a["methods"]["finetune"]["forget/acc"] != b["methods"]["finetune"]["forget/acc"]


@pytest.mark.slow
def test_submitit_local_multirun(tmp_path):
    sweep(tmp_path, *BASE, "method=identity", "train.epochs=0", INDEXES, "logger=none",
          "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10", "hydra/callbacks=audit")
    assert_complete(tmp_path, 2, methods=("identity",))
    assert list((tmp_path / "sweep" / ".submitit").iterdir())
    assert set(audit_results(tmp_path / "sweep")["methods"]) == {"identity"}


@pytest.mark.slow
def test_real_slurm_multirun(tmp_path, slurm_cluster):  # noqa: F811
    r = sweep(tmp_path, *TINY, INDEXES, "logger=none", "hydra/launcher=submitit_slurm",
              f"hydra.launcher.partition={slurm_cluster.partition}", "hydra.launcher.cpus_per_task=1",
              "hydra.launcher.mem_gb=null", "hydra.launcher.timeout_min=10", "hydra/callbacks=audit")
    assert_complete(tmp_path, 2)
    assert all(n == 1 for n in computed(tmp_path / "sweep").values())
    assert "finetune" in audit_results(tmp_path / "sweep")["methods"]
    logs = list((tmp_path / "sweep" / ".submitit").rglob("*_log.out"))
    assert len(logs) == 2
    assert any("cell finetune#" in p.read_text() for p in logs), r.stdout[-2000:]


@pytest.mark.slow
def test_kill_9_then_rerun_finishes_without_recomputing(tmp_path, reference):
    store = tmp_path / "store"
    proc = sweep(tmp_path, *TINY, INDEXES, "logger=none", name="killed", popen=True)
    deadline = time.monotonic() + 300
    while sum(len(entries(store, k)) for k in ("original", "retrain", "unlearn")) < 2:
        assert proc.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    before = {p: ((p / "meta.json").read_text(), (p / "meta.json").stat().st_ino, (p / "meta.json").stat().st_mtime_ns,
                  (p / "model.safetensors").stat().st_mtime_ns)
              for k in ("original", "retrain", "unlearn") for p in entries(store, k)}
    assert 2 <= len(before) < 5
    sweep(tmp_path, *TINY, INDEXES, "logger=none", "hydra/callbacks=audit", name="rerun")
    assert_complete(tmp_path, 2)
    for p, stamp in before.items():
        meta = p / "meta.json"
        assert (meta.read_text(), meta.stat().st_ino, meta.stat().st_mtime_ns,
                (p / "model.safetensors").stat().st_mtime_ns) == stamp
    rerun = computed(tmp_path / "rerun")
    assert all(rerun[p.name] == 0 for p in before)  # fetched, not recomputed
    assert sum(rerun.values()) == 5 - len(before)
    ref_tmp, _ = reference
    assert_same_audit(audit_results(tmp_path / "rerun"), audit_results(ref_tmp / "sweep"))


@pytest.mark.slow
def test_scancel_mid_cell_then_rerun_finishes_without_recomputing(tmp_path, slurm_cluster, reference):  # noqa: F811
    """A SLURM job cancelled while it trains (a preemption), then the same sweep again."""
    on_slurm = ["hydra/launcher=submitit_slurm", f"hydra.launcher.partition={slurm_cluster.partition}",
                "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=null", "hydra.launcher.timeout_min=10"]
    store = tmp_path / "store"
    proc = sweep(tmp_path, *TINY, INDEXES, "logger=none", *on_slurm, name="cancelled", popen=True)
    deadline = time.monotonic() + 300
    while not entries(store, "original"):  # the jobs are past the original, inside their next cells
        assert proc.poll() is None, (tmp_path / "cancelled.log").read_text()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    slurm_cluster.cmd("scancel", f"--partition={slurm_cluster.partition}")
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    before = {p: ((p / "meta.json").read_text(), (p / "meta.json").stat().st_mtime_ns)
              for k in ("original", "retrain", "unlearn") for p in entries(store, k)}
    assert 1 <= len(before) < 5, "the cancel came after every cell had finished"
    sweep(tmp_path, *TINY, INDEXES, "logger=none", *on_slurm, "hydra/callbacks=audit", name="rerun")
    assert_complete(tmp_path, 2)
    for p, stamp in before.items():
        assert ((p / "meta.json").read_text(), (p / "meta.json").stat().st_mtime_ns) == stamp
    rerun = computed(tmp_path / "rerun")
    assert all(rerun[p.name] == 0 for p in before)
    assert sum(rerun.values()) == 5 - len(before)
    assert_same_audit(audit_results(tmp_path / "rerun"), audit_results(reference[0] / "sweep"))
