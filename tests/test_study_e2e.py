"""The whole pipeline through the real CLI: original -> retrained -> unlearned -> audits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# The default study at N = 3 (at N = 2 every F is 0: the controls would not bracket it), logged to W&B
# as by default: one audit run per method and the study run (per-cell runs: test_sweeps.py).
TINY = ["n_models=3", "recipe.epochs=3", "methods.finetune.epochs=1", "methods.neggrad_plus_digits.epochs=1",
        # the competition audit's permutation tests were most of a run's time and no test here reads
        # their p-values: 9 relabellings, not 49; one method-vs-method pair (retrain vs finetune), not three
        "audit.competition.n_permutations=9", "pairwise_skip=[identity,neggrad_plus_digits]"]


def unlearnlab(root: Path, *overrides: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.run(
        [sys.executable, "-m", "unlearnlab.cli", f"paths.root={root}", "hydra.run.dir=" + str(root / "out"),
         *overrides],
        capture_output=True, text=True, env=env, timeout=1500,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"unlearnlab failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def default_study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    first = unlearnlab(root, *TINY)
    results = json.loads((root / "out" / "results.json").read_text())
    return root, first, results


def test_default_study_prints_one_row_per_method(default_study):
    _, proc, results = default_study
    assert set(results["methods"]) == {"identity", "retrain", "finetune", "neggrad_plus_digits"}
    assert results["n_models"] == 3
    for name in results["methods"]:
        assert name in proc.stdout
    for column in ("audit/F", "audit/score", "audit/eps_mean", "audit/mia_acc", "cost/rte"):
        assert column in proc.stdout


def test_results_json_has_every_metric(default_study):
    _, _, results = default_study
    expected = {"audit/F", "audit/score", "audit/eps_mean", "retain/acc", "forget/acc", "test/acc",
                "audit/mia_acc", "cost/seconds", "cost/rte"}
    for name, row in results["methods"].items():
        assert expected <= set(row), name
        assert 0.0 <= row["audit/F"] <= 1.0
        assert 0.0 <= row["test/acc"] <= 1.0
    assert set(results["retrain"]) == {"retain/acc", "forget/acc", "test/acc", "cost/seconds"}
    assert results["retrain"]["test/acc"] > 0.8  # a real model was trained on real digits


def test_controls_bracket_the_metric(default_study):
    """identity = the original N times: zero spread, ε capped at 50, F = 0; the retrain control
    draws from the reference distribution, so its F is higher."""
    _, _, results = default_study
    m = results["methods"]
    assert m["identity"]["audit/F"] == 0.0
    assert m["identity"]["audit/eps_mean"] == 50.0
    assert m["retrain"]["audit/F"] > m["identity"]["audit/F"]
    assert m["identity"]["cost/rte"] > m["finetune"]["cost/rte"]


def test_second_run_recomputes_nothing_and_prints_the_same_table(default_study, capfd, monkeypatch):
    """The same study again (in this process, without W&B: neither changes a cell) fetches every cell."""
    from conftest import unlearnlab_inprocess

    root, first, results = default_study
    entries = sorted(p for p in (root / "store").rglob("meta.json"))
    mtimes = [p.stat().st_mtime_ns for p in entries]
    monkeypatch.setenv("COLUMNS", "200")
    capfd.readouterr()
    unlearnlab_inprocess(root / "out2", f"paths.root={root}", *TINY, "logger=none")
    again = capfd.readouterr().out
    assert f"{len(entries)} cached, 0 computed" in again
    assert [p.stat().st_mtime_ns for p in sorted((root / "store").rglob("meta.json"))] == mtimes
    assert json.loads((root / "out2" / "results.json").read_text())["methods"] == results["methods"]
    table = lambda out: out[out.index("digits-"):]  # noqa: E731
    assert table(again).splitlines()[:8] == table(first.stdout).splitlines()[:8]


def test_store_holds_one_original_and_n_retrained(default_study):
    root, _, _ = default_study
    kinds = {k: len(list((root / "store" / k).iterdir())) for k in ("original", "retrain", "unlearn")}
    assert kinds == {"original": 1, "retrain": 3, "unlearn": 12}


def test_method_list_chooses_the_study_methods_in_order(tmp_path):
    from conftest import unlearnlab_inprocess

    unlearnlab_inprocess(tmp_path / "out", f"paths.root={tmp_path}", "debug=tiny",
                         "method=[identity,retrain,finetune_kaggle]", "methods.finetune_kaggle.epochs=1")
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert list(results["methods"]) == ["identity", "retrain", "finetune_kaggle"]
    assert results["n_models"] == 2


def test_mistyped_option_gets_hydras_error(tmp_path):
    """In-process (Hydra's message through the CLI: test_reliability's ..._through_the_cli)."""
    from hydra.errors import MissingConfigException

    from conftest import unlearnlab_inprocess

    with pytest.raises(MissingConfigException, match="Could not find 'method/finetun'"):
        unlearnlab_inprocess(tmp_path / "out", f"paths.root={tmp_path}", "method=finetun")


def test_bad_value_gets_one_line_error(tmp_path):
    """In-process (a start-up ConfigError as the CLI prints it: test_schemas' ..._in_one_line)."""
    from conftest import inprocess_error

    err = inprocess_error(tmp_path / "out", f"paths.root={tmp_path}", "split.fraction=1.5", "logger=none")
    assert f"error: {err}" == "error: split.fraction=1.5 must be in (0, 1), e.g. split.fraction=0.1"
    assert not (tmp_path / "store").exists()  # refused before anything was computed


def test_wandb_runs_hold_what_results_json_says(default_study):
    """One offline audit run per method and the study run, all in the study's group; the study
    run's logged values equal results.json."""
    from wandb_records import run_dirs, run_info, summary

    root, _, results = default_study
    runs = run_dirs(root / "out")
    infos = [run_info(r) for r in runs]
    job_types = sorted(i["job_type"] for i in infos)
    # one `audit` run per method (unprefixed keys), one `study` run (prefixed keys, table); no per-cell runs
    assert job_types == sorted(["audit"] * 4 + ["study"])
    assert {i["group"] for i in infos} == {results["study"]}
    audit_run = runs[[i["job_type"] for i in infos].index("study")]
    logged = summary(audit_run)
    for method, row in results["methods"].items():
        for metric, value in row.items():
            expected = value if isinstance(value, str) else pytest.approx(value, rel=1e-9, abs=1e-12)
            assert logged[f"{method}/{metric}"] == expected, (method, metric)  # a str: the bound's statistic
