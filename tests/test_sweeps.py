"""Sweeps: Hydra jobs of one cell or a set of cells (basic, local/submitit), workers
sharing a job's device, the audit at the end of the multirun and on demand, one original under
concurrency, the audit's refusal of mismatched cells, and the launcher/optuna presets. Slices of
cells per job, the joblib pool, a real SLURM cluster and kill -9 / scancel: test_sweeps_slices.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from sweep_runs import (
    CONF,
    INDEXES,
    TINY,
    assert_complete,
    assert_same_audit,
    audit_results,
    computed,
    sweep_here,
)


# -- presets and small pieces (fast) ------------------------------------------------------------
def _compose(*overrides: str, hydra: bool = True):
    with initialize_config_dir(CONF, version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=hydra)


def test_slurm_preset_composes_with_cluster_overrides():
    cfg = _compose(
        "hydra/launcher=slurm", "hydra.launcher.partition=gpu", "hydra.launcher.gpus_per_node=1",
        "hydra.launcher.cpus_per_task=8", "hydra.launcher.timeout_min=240", "hydra.launcher.mem_gb=32",
        "hydra.launcher.array_parallelism=16", "hydra.launcher.max_num_timeout=5", "hydra.launcher.account=lab",
        "hydra.launcher.setup=[module load cuda]", "+hydra.launcher.additional_parameters.mail-type=END",
        "trainer=gpu",
    )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.partition, launcher.gpus_per_node, launcher.cpus_per_task) == ("gpu", 1, 8)
    assert (launcher.timeout_min, launcher.mem_gb, launcher.array_parallelism) == (240, 32, 16)
    assert launcher.max_num_timeout == 5 and launcher.setup == ["module load cuda"]
    assert launcher.additional_parameters["mail-type"] == "END"
    # the sweep callbacks are on without `+hydra/callbacks=...` (adding them again fails in Hydra)
    assert cfg.hydra.callbacks.audit._target_ == "unlearnlab.sweep.AuditCallback"
    assert cfg.hydra.callbacks.plan._target_ == "unlearnlab.plan_task.PlanCallback"


@pytest.mark.parametrize("preset, plugin, schema, ours", [
    ("slurm", "submitit_slurm", "SlurmQueueConf", {"cpus_per_task": 4, "max_num_timeout": 3, "array_parallelism": 64}),
    ("local", "submitit_local", "LocalQueueConf", {"timeout_min": 60}),
    ("pool", "joblib", "JobLibLauncherConf", {"n_jobs": 2, "batch_size": "1"}),  # str in the schema; int at launch
])
def test_launcher_presets_extend_the_plugins_configs(preset, plugin, schema, ours):
    import importlib
    import warnings

    module = "hydra_plugins.hydra_joblib_launcher.config" if plugin == "joblib" else \
        "hydra_plugins.hydra_submitit_launcher.config"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        launcher = _compose(f"hydra/launcher={preset}").hydra.launcher
    assert not [w for w in caught if "schema" in str(w.message)], [str(w.message) for w in caught]
    # every key of the plugin's schema is there (its defaults, where the preset sets nothing) ...
    plugin_cfg = OmegaConf.structured(getattr(importlib.import_module(module), schema))
    assert set(plugin_cfg) <= set(launcher) and launcher._target_ == plugin_cfg._target_
    # ... and the preset's own values on top
    assert {k: launcher[k] for k in ours} == ours
    assert _compose(f"hydra/launcher={plugin}").hydra.launcher._target_ == plugin_cfg._target_  # still there


def test_optuna_preset_composes():
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason='optional extra: pip install -e ".[optuna]"')
    cfg = _compose("hparams_search=optuna_finetune")
    assert list(cfg.methods) == ["identity", "retrain", "finetune"] and cfg.objective == "finetune"
    assert cfg.hydra.sweeper.direction == "maximize"
    assert set(cfg.hydra.sweeper.params) == {"methods.finetune.lr", "methods.finetune.epochs"}
    assert cfg.hydra.callbacks.reaudit._target_ == "unlearnlab.sweep.ReauditCallback"  # beside audit and plan
    assert {"audit", "plan"} <= set(cfg.hydra.callbacks)


def test_reaudit_overrides_set_the_winner_on_fresh_seeds():
    from unlearnlab.sweep import reaudit_overrides

    got = reaudit_overrides(["hparams_search=optuna_finetune", "n_models=8", "methods.finetune.lr=interval(0.01,0.1)",
                             "seed=3"], {"methods.finetune.lr": 0.05, "methods.finetune.epochs": 4}, 1003)
    assert got == ["task=study", "hparams_search=optuna_finetune", "n_models=8", "methods.finetune.lr=0.05",
                   "methods.finetune.epochs=4", "seed=1003"]


@pytest.mark.slow
def test_optuna_search_maximises_the_objective_method_s_audit_score(tmp_path, capfd):
    """Two real trials: Optuna's best value is the best trial's results[finetune][audit/score]; then
    the winner is re-audited on fresh cells (another study seed: another original, other retrained
    and unlearned models), and that re-audit is the labelled number to cite."""
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason='optional extra: pip install -e ".[optuna]"')
    import yaml
    from sweep_runs import entries

    sweep_here(tmp_path, "hparams_search=optuna_finetune", "hydra.sweeper.n_trials=2", "debug=tiny",
               "audit.competition.n_permutations=9")
    said = capfd.readouterr().out
    trials = [json.loads((tmp_path / "sweep" / str(i) / "results.json").read_text()) for i in range(2)]
    scores = [t["methods"]["finetune"]["audit/score"] for t in trials]
    best = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(max(scores))
    assert 0.001 <= best["best_params"]["methods.finetune.lr"] <= 0.3
    # the re-audit: the best params, seed 0 + 1000, cells no trial computed
    reaudit = json.loads((tmp_path / "sweep" / "reaudit" / "results.json").read_text())
    selection = json.loads((tmp_path / "sweep" / "reaudit" / "selection.json").read_text())
    assert selection["best_params"] == best["best_params"] and (selection["search_seed"], selection["seed"]) == (0, 1000)
    assert selection["search_value"] == pytest.approx(best["best_value"])
    assert selection["value"] == reaudit["methods"]["finetune"]["audit/score"] == reaudit["selection"]["value"]
    assert len(entries(tmp_path / "store", "original")) == 2  # the trials' original and the re-audit's
    assert len(entries(tmp_path / "store", "retrain")) == 2 * 2  # N = 2 each: none shared with the trials
    report = (tmp_path / "sweep" / "reaudit" / "report.md").read_text()
    assert "the number to cite" in report and "biased up" in report and "the number to cite" in said


def test_audit_overrides_one_audit_per_sweep_combination():
    from unlearnlab.sweep import audit_overrides

    got = audit_overrides(["task=cell", "method=identity,retrain,finetune", "index=range(0,8)", "n_models=8",
                           "recipe.lr=0.01,0.1"])
    assert got == [  # the sweep's methods in one audit, per setting of everything else
        ["task=audit", "method=[identity,retrain,finetune]", "n_models=8", "recipe.lr=0.01"],
        ["task=audit", "method=[identity,retrain,finetune]", "n_models=8", "recipe.lr=0.1"],
    ]
    assert audit_overrides(["task=cell", "method=[identity,retrain],finetune,identity"]) == [
        ["task=audit", "method=[identity,retrain,finetune]"]]
    assert audit_overrides(["+index=1", "task=cell"]) == [["task=audit"]]
    # how cells are spread over jobs never changes which cells the audit reads
    assert audit_overrides(["task=cell", "index=range(0,8,4)", "cells_per_job=4", "workers_per_device=2",
                            "n_models=8"]) == [["task=audit", "n_models=8"]]
    assert audit_overrides(["method=finetune,scrub"]) == []  # a grid of studies: nothing to add


def test_cell_index_out_of_range_is_refused():
    from unlearnlab.errors import ConfigError
    from unlearnlab.sweep import job_indices

    cfg = OmegaConf.create({"n_models": 4, "index": 4})
    with pytest.raises(ConfigError, match=r"index=4 is outside \[0, n_models=4\)"):
        job_indices(cfg)
    assert job_indices(OmegaConf.create({"n_models": 3})) == [0, 1, 2]


def test_cells_per_job_slices_are_clipped_to_n_models():
    from unlearnlab.errors import ConfigError
    from unlearnlab.sweep import job_indices

    def slice_of(index, k, n=10):
        return job_indices(OmegaConf.create({"n_models": n, "index": index, "cells_per_job": k}))

    assert slice_of(0, 4) == [0, 1, 2, 3] and slice_of(4, 4) == [4, 5, 6, 7] and slice_of(8, 4) == [8, 9]
    assert [slice_of(i, 32, 512)[-1] for i in range(0, 512, 32)] == list(range(31, 512, 32))
    assert slice_of(None, 4) == list(range(10))  # no index: the whole study in one job
    for bad in (0, -1, 1.5, "two"):
        with pytest.raises(ConfigError, match=r"cells_per_job=.* must be an integer ≥ 1"):
            slice_of(0, bad)


def _cells_in_process(tmp: Path, *overrides: str):
    from unlearnlab.sweep import cell_task

    with initialize_config_dir(CONF, version_base="1.3"):
        cfg = compose("config", overrides=[*TINY, "logger=none", "recipe.epochs=0", f"paths.root={tmp}",
                                           f"paths.output_dir={tmp}/out", *overrides])
    return cell_task(cfg)


def test_workers_per_device_2_computes_the_same_cells_as_1(tmp_path, monkeypatch):
    """Two workers share the job's cells: same keys, bit-identical stored outputs (CPU).
    Bit-identical needs one thread count in every process (CPU float sums depend on it), so the
    job owns one core here: each worker, and the parent computing the original, get 1 thread."""
    import torch
    from safetensors.torch import load_file

    monkeypatch.setenv("OMP_NUM_THREADS", "1")

    trained = ["recipe.epochs=1", "n_models=3", "cells_per_job=3", "index=0"]
    one = _cells_in_process(tmp_path / "w1", *trained, "workers_per_device=1")
    two = _cells_in_process(tmp_path / "w2", *trained, "workers_per_device=2")
    assert [c["key"] for c in one] == [c["key"] for c in two] and len(two) == 1 + 3 + 3
    assert not any(c["cached"] for c in one + two)
    parent = {c["pid"] for c in two if c["kind"] == "original"}
    workers = {c["pid"] for c in two if c["kind"] != "original"}
    assert len(parent) == 1 and workers and not workers & parent and len(workers) <= 2
    for c in one:
        a, b = (load_file(tmp_path / w / "store" / c["kind"] / c["key"] / "outputs.safetensors") for w in ("w1", "w2"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), c["label"]
    assert json.loads((tmp_path / "w2" / "out" / "cells.json").read_text()) == two


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_workers_per_device_2_share_a_gpu(tmp_path):
    """The fork server that starts the workers never touched CUDA, so both workers can use the
    device: every cell computed, the unlearned ones outside the job's process."""
    cells = _cells_in_process(tmp_path, "trainer=gpu", "recipe.epochs=1", "n_models=2", "cells_per_job=2",
                              "index=0", "workers_per_device=2")
    assert len(cells) == 1 + 2 + 2 and not any(c["cached"] for c in cells)
    parent = {c["pid"] for c in cells if c["kind"] == "original"}
    assert {c["pid"] for c in cells if c["kind"] != "original"}.isdisjoint(parent)


def test_threads_come_from_the_cores_the_job_owns(monkeypatch):
    from unlearnlab.workers import job_cores, threads_per_worker

    cores = len(os.sched_getaffinity(0))
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert job_cores() == cores
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")  # sbatch --cpus-per-task=1
    assert job_cores() == 1
    monkeypatch.delenv("SLURM_CPUS_PER_TASK")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # what loky exports to each of its jobs: cores // n_jobs
    assert job_cores() == 1 and threads_per_worker(2) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "64")
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "64")
    assert job_cores() == cores  # never more than the affinity mask allows


def test_audit_refuses_mismatched_cells_and_says_what_differs(tmp_path):
    from unlearnlab.errors import ConfigError
    from unlearnlab.sweep import check_audit_inputs

    # finetune cells computed on a 20% forget set; the audit asks for the default 10%
    _cells_in_process(tmp_path, "split.fraction=0.2")
    with initialize_config_dir(CONF, version_base="1.3"):
        base = [*TINY[1:], "logger=none", "recipe.epochs=0", f"paths.root={tmp_path}"]
        ok = compose("config", overrides=[*base, "split.fraction=0.2"])
        other_split = compose("config", overrides=base)
        bigger_n = compose("config", overrides=[*base, "split.fraction=0.2", "n_models=3"])
        other_lr = compose("config", overrides=[*base, "split.fraction=0.2", "methods.finetune.lr=0.01"])
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
    """The tiny sweep, uninterrupted, basic launcher (in this process), W&B offline with per-cell runs,
    audit callback."""
    tmp = tmp_path_factory.mktemp("reference")
    sweep_here(tmp, *TINY, INDEXES, "logger=wandb", "logger.cell_runs=true")
    return tmp


@pytest.mark.slow
def test_basic_multirun_audit_callback_and_on_demand_audit(reference):
    tmp = reference
    assert_complete(tmp, 2)
    assert all(n == 1 for n in computed(tmp / "sweep").values()), computed(tmp / "sweep")
    callback = audit_results(tmp / "sweep")
    assert set(callback["methods"]) == {"finetune"} and callback["n_models"] == 2
    assert "audit/score" in callback["methods"]["finetune"]
    assert (tmp / "sweep" / "audit" / "all" / "report.md").is_file()
    # on demand, later: same overrides minus index, task=audit -> the same numbers
    from unlearnlab.sweep import run_audit

    with initialize_config_dir(CONF, version_base="1.3"):  # as `unlearnlab task=audit ...` composes it
        score = run_audit("config", ["task=audit", *TINY[1:], "logger=none", "objective=finetune", f"paths.root={tmp}"],
                          tmp / "later")
    assert score == callback["methods"]["finetune"]["audit/score"]
    assert_same_audit(json.loads((tmp / "later" / "results.json").read_text()), callback)


@pytest.mark.slow
def test_sweep_wandb_runs_share_the_study_group(reference):
    from wandb_records import config, run_dirs, run_info, summary

    tmp = reference
    runs = [(run_info(d), d) for d in run_dirs(tmp / "sweep")]
    kinds = sorted(info["job_type"] for info, _ in runs)
    # logger.cell_runs=true: one run per cell; the end-of-sweep audit: finetune's audit run + the study run
    assert kinds == ["audit", "original", "retrain", "retrain", "study", "unlearn", "unlearn"]
    assert {info["group"] for info, _ in runs} == {"digits-random0.1-small_cnn"}
    for info, d in runs:
        if info["job_type"] == "unlearn":
            cfg = config(d)
            assert cfg["method.lr"] == 0.1 and cfg["method.epochs"] == 1 and cfg["cell.name"] == "finetune"
    # a cell's run holds the metrics its store entry holds
    meta = {p.parent.name: json.loads(p.read_text()) for p in (tmp / "store" / "retrain").glob("*/meta.json")}
    retrain_runs = [d for info, d in runs if info["job_type"] == "retrain"]
    for run in retrain_runs:
        key = run_info(run)["name"].rsplit("-", 1)[1]
        cell = next(m for k, m in meta.items() if k.startswith(key))
        assert summary(run)["test/acc"] == pytest.approx(cell["metrics"]["test/acc"])
    assert len(retrain_runs) == 2


@pytest.mark.slow
def test_local_jobs_at_once_train_the_original_and_each_retrained_model_once(tmp_path):
    """hydra/launcher=local (submitit: one process per job, all at once): 2 jobs, one per learning
    rate, each computing both indexes, so both need the one original and both retrained models at
    the same moment. (The pool launcher's jobs at once: test_sweeps_slices.py's reference sweep.)"""
    sweep_here(tmp_path, *TINY, "methods.finetune.lr=0.1,0.01", "index=0", "cells_per_job=2", "logger=none",
               "hydra/launcher=local", "hydra.launcher.timeout_min=10")  # submitit starts the job processes
    assert_complete(tmp_path, 2, methods=("finetune", "finetune"))
    counts = computed(tmp_path / "sweep")
    assert len(counts) == 1 + 2 + 4 and all(n == 1 for n in counts.values()), counts
    jobs = [json.loads(f.read_text()) for f in (tmp_path / "sweep").glob("*/cells.json")]
    assert len(jobs) == 2 and all(job[0]["kind"] == "original" and len(job) == 1 + 2 + 2 for job in jobs)
    assert len({job[0]["pid"] for job in jobs}) == 2  # two job processes
    assert list((tmp_path / "sweep" / ".submitit").iterdir())  # submitit's job folders
    a, b = (audit_results(tmp_path / "sweep", f"methods.finetune.lr={lr}") for lr in ("0.1", "0.01"))
    assert set(a["methods"]) == set(b["methods"]) == {"finetune"}  # one audit per hyperparameter setting
    assert a["methods"]["finetune"]["forget/acc"] != b["methods"]["finetune"]["forget/acc"]
