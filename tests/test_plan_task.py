"""`task=plan`: cells, jobs, what the store holds and device time, before anything is launched;
`-m task=plan` plans a sweep exactly as `-m task=cell` would launch it, and launches nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

REPO = Path(__file__).resolve().parents[1]
CONF = str(REPO / "conf")
STUDY = ["debug=tiny", "audit=[competition,mia_kit]"]


def _cfg(tmp: Path, *overrides: str):
    with initialize_config_dir(CONF, version_base="1.3"):
        return compose("config", overrides=[*STUDY, f"paths.root={tmp}", f"paths.output_dir={tmp}/out", *overrides])


def test_plan_counts_cells_jobs_and_what_the_store_holds(tmp_path, capsys):
    from unlearnlab.plan_task import plan_task
    from unlearnlab.sweep import cell_task

    cell_task(_cfg(tmp_path, "task=cell", "n_models=4", "index=0", "cells_per_job=2"))  # 1 + 2 + 2 cells
    capsys.readouterr()
    plan = plan_task(_cfg(tmp_path, "task=plan", "n_models=4", "cells_per_job=2"))
    assert plan["cells"] == {"original": 1, "retrain": 4, "unlearn": 4, "total": 9}
    assert (plan["in_store"], plan["to_compute"]) == (5, 4)
    assert (plan["jobs"], plan["job_index"], plan["largest_job_cells"]) == (2, "index='range(0,4,2)'", 5)
    assert plan["uncovered"] == [] and plan["device_hours"] > 0
    out = capsys.readouterr().out
    assert "cells: 1 original + 4 retrain + 4 unlearn = 9; in the store: 5; to compute: 4" in out
    assert "jobs: 2 (suggested: index='range(0,4,2)' cells_per_job=2" in out
    assert len(list((tmp_path / "store" / "retrain").iterdir())) == 2  # planning computed nothing


def test_plan_warns_when_slices_leave_indices_uncovered(tmp_path, capsys):
    from unlearnlab.plan_task import plan_study, print_plan

    plan = plan_study(_cfg(tmp_path, "task=plan", "n_models=8", "cells_per_job=2"), job_starts=[0, 4])
    assert plan["jobs"] == 2 and plan["uncovered"] == [2, 3, 6, 7]
    print_plan(plan)
    assert "warning: no job computes index 2..3,6..7" in capsys.readouterr().out


def test_plan_estimates_from_the_bench_measured_here(tmp_path):
    from conftest import unlearnlab_inprocess

    from unlearnlab.plan_task import plan_study

    bench_out = tmp_path / "outputs" / "bench"
    unlearnlab_inprocess(bench_out, "task=bench", "bench=tiny", "bench.sections=[methods]",
                         "method=[retrain,finetune]", "logger=none", f"paths.root={tmp_path}")
    bench = json.loads((bench_out / "bench.json").read_text())["methods"]
    assert bench["train_epochs"] == 1  # the tiny bench times 1-epoch cells: the plan's recipe below
    plan = plan_study(_cfg(tmp_path / "study", "task=plan", "n_models=4", f"bench_file={bench_out / 'bench.json'}"))
    rates = plan["rates"]
    assert rates["source"].startswith("cells timed by task=bench on CPU")
    assert (rates["original"], rates["retrain"]) == (bench["original_s"], bench["retrain_s"])
    assert rates["unlearn"]["finetune"] == bench["methods"]["finetune"]["unlearn_s"]
    want = bench["original_s"] + 4 * bench["retrain_s"] + 4 * bench["methods"]["finetune"]["unlearn_s"]
    assert plan["seconds"] == pytest.approx(want)
    # the newest bench.json under paths.root/outputs is found without bench_file
    from unlearnlab.plan_task import find_bench

    assert find_bench(_cfg(tmp_path, "task=plan")) == bench_out / "bench.json"
    # a CPU bench says nothing about a GPU: the built-in H100 rate is used, and the plan says so
    gpu = plan_study(_cfg(tmp_path, "task=plan", "n_models=4", "trainer=gpu"))
    assert gpu["device"] == "cuda" and "built-in rate for small_cnn on a H100 GPU" in gpu["rates"]["source"]
    assert any("not on a cuda device: not used" in note for note in gpu["rates"]["assumptions"])
    assert gpu["seconds"] < plan["seconds"]


@pytest.mark.slow
def test_multirun_plan_prints_the_sweep_and_launches_nothing(tmp_path, capfd):
    """`unlearnlab -m task=plan ...` (the CLI's main, in this process): the plan, then exit 0."""
    from sweep_runs import sweep_here

    with pytest.raises(SystemExit) as ended:
        sweep_here(tmp_path, "task=plan", *STUDY, "method=finetune,neggrad_plus", "n_models=8", "cells_per_job=4",
                   "index=range(0,8,4)", "hydra/launcher=slurm")
    assert ended.value.code == 0
    out = capfd.readouterr().out
    assert out.count("plan: study digits-random0.1-small_cnn, N = 8") == 2  # one per method
    assert out.count("jobs: 2 (index=0,4 cells_per_job=4") == 2
    # finetune and neggrad_plus share the original and the 8 retrained cells: counted once
    assert "sweep: 2 studies, 4 jobs, 25 cells to compute" in out
    assert "nothing launched" in out
    assert not (tmp_path / "sweep").exists() and not (tmp_path / "store").exists()
