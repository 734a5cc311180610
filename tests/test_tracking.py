"""W&B that scales: one audit run per method (unprefixed keys, the method's settings in its config,
metric directions), the study run with its artifact, per-cell runs only on request, the
online/offline decision by wandb's own credential lookup, and names that become paths."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from wandb_records import artifacts, config, metrics, run_dirs, run_info, summary

REPO = Path(__file__).resolve().parents[1]
KEY = "k" * 40  # the shape of a W&B API key (40+ word characters); never sent anywhere


# -- online or offline ------------------------------------------------------------------------
def _mode(tmp: Path, netrc: str | None = None, settings: str | None = None, **env: str) -> str:
    """wandb_mode('auto') in a fresh process (wandb caches its settings per process)."""
    home = tmp / f"home{len(list(tmp.iterdir()))}"
    (home / "cfg").mkdir(parents=True)
    if netrc is not None:
        (home / "netrc").write_text(netrc)
    if settings is not None:
        (home / "cfg" / "settings").write_text(settings)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_") and k != "NETRC"}
    clean.update(HOME=str(home), NETRC=str(home / "netrc"), WANDB_CONFIG_DIR=str(home / "cfg"),
                 WANDB_SILENT="true", **env)
    r = subprocess.run([sys.executable, "-c", "from unlearnlab.tracking import wandb_mode; print(wandb_mode('auto'))"],
                       env=clean, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout.strip().splitlines()[-1]


def test_wandb_mode_follows_wandbs_own_credential_lookup(tmp_path):
    saas = f"machine api.wandb.ai\n  login user\n  password {KEY}\n"
    mine = f"machine wandb.mylab.example\n  login user\n  password local-{KEY}\n"
    on_my_server = "[default]\nbase_url = https://wandb.mylab.example\n"
    assert _mode(tmp_path) == "offline"  # no credentials anywhere
    assert _mode(tmp_path, WANDB_API_KEY=KEY) == "online"
    assert _mode(tmp_path, netrc=saas) == "online"
    # a self-hosted server (`wandb login --host URL` writes base_url and its netrc entry) counts ...
    assert _mode(tmp_path, netrc=mine, settings=on_my_server) == "online"
    assert _mode(tmp_path, netrc=mine, WANDB_BASE_URL="https://wandb.mylab.example") == "online"
    # ... and a key for another server does not
    assert _mode(tmp_path, netrc=saas, settings=on_my_server) == "offline"
    assert _mode(tmp_path, netrc=mine) == "offline"
    # WANDB_MODE still wins
    assert _mode(tmp_path, netrc=mine, settings=on_my_server, WANDB_MODE="offline") == "offline"
    assert _mode(tmp_path, WANDB_MODE="disabled") == "disabled"


# -- the runs of an audited study ---------------------------------------------------------------
@pytest.fixture(scope="module")
def logged_study(tmp_path_factory):
    """A real digits study (N = 2, identity + retrain controls + finetune), logged to W&B offline."""
    from unlearnlab.pipeline import open_pipeline
    from unlearnlab.report import write_report
    from unlearnlab.study import Study, write_results

    tmp = tmp_path_factory.mktemp("study")
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[
            "debug=tiny", "audit=[competition,mia_kit]", "method=[identity,retrain,finetune]", "methods.finetune.epochs=1",
            "methods.finetune.lr=0.05",
            "logger=wandb", f"paths.root={tmp}", f"paths.output_dir={tmp}/out",
        ])
    pipe = open_pipeline(cfg)
    results = Study(pipe).run()
    path = write_results(results, pipe.output_dir)
    report = write_report(results, cfg, pipe.output_dir)
    pipe.tracker.log_study(results, report, [path])
    runs = {}
    for d in run_dirs(tmp / "out"):
        info = run_info(d)
        runs[(info["job_type"], info["name"])] = d
    return results, runs


def test_one_audit_run_per_method_with_unprefixed_keys(logged_study):
    results, runs = logged_study
    study = results["study"]
    assert sorted(runs) == sorted([("audit", f"{m}-{study}") for m in ("identity", "retrain", "finetune")]
                                  + [("study", f"study-{study}")])  # no per-cell runs by default
    for (job_type, name), d in runs.items():
        assert run_info(d)["group"] == study
        if job_type != "audit":
            continue
        method = name.split("-")[0]
        logged, row = summary(d), results["methods"][method]
        for key in ("audit/F", "audit/score", "audit/eps_mean", "retain/acc", "forget/acc", "cost/rte"):
            assert logged[key] == pytest.approx(row[key], rel=1e-9), (method, key)
        assert not any(k.startswith(f"{method}/") for k in logged)
        declared = metrics(d)  # directions from the metrics' own declarations
        for key, decl in results["metrics"].items():
            if decl["goal"] in ("max", "min"):
                assert declared[key] == [decl["goal"]], key
        assert declared["cost/rte"] == ["max"] and declared["cost/seconds"] == ["min"]
        assert "retain/acc" not in declared  # goal "none": its ideal is the reference's value
    finetune = config(runs[("audit", f"finetune-{study}")])
    assert finetune["method.name"] == "finetune" and finetune["method.lr"] == 0.05 and finetune["method.epochs"] == 1
    assert (finetune["dataset.name"], finetune["model.name"], finetune["n_models"]) == ("digits", "small_cnn", 2)
    assert finetune["reference"] == "retrain" and finetune["split.fraction"] == 0.1
    assert config(runs[("audit", f"identity-{study}")])["method.name"] == "identity"


def test_study_run_keeps_table_plots_and_results_artifact(logged_study):
    results, runs = logged_study
    d = runs[("study", f"study-{results['study']}")]
    logged = summary(d)
    assert logged["finetune/audit/score"] == pytest.approx(results["methods"]["finetune"]["audit/score"])
    assert "results" in logged  # the W&B table, one row per method
    [artifact] = [a for a in artifacts(d) if a["type"] == "study"]
    assert artifact["name"] == f"study-{results['study']}"
    assert {"results.json", "report.md", "report.html", "plots/tradeoff.png"} <= set(artifact["files"])


def test_cell_runs_only_when_asked(tmp_path):
    from unlearnlab.tracking import Tracker

    for cell_runs in (False, True):
        out = tmp_path / str(cell_runs)
        tracker = Tracker({"kind": "wandb", "cell_runs": cell_runs}, "s", out, {"seed": 0})
        with tracker.cell("retrain#0-abcd", "retrain", {"cell": {"index": 0}}) as run:
            assert (run["logger"] is not None) == cell_runs
            run["summary"]["test/acc"] = 0.5
        dirs = run_dirs(out)
        assert len(dirs) == int(cell_runs)
    assert summary(dirs[0])["test/acc"] == 0.5 and run_info(dirs[0])["job_type"] == "retrain"
    assert Tracker({"kind": "csv"}, "s", tmp_path, {}).cell_runs  # csv files are cheap: on by default


# -- names that become paths -------------------------------------------------------------------
def test_names_that_become_paths_are_refused_or_made_safe(tmp_path):
    from unlearnlab.errors import ConfigError
    from unlearnlab.sweep import audit_label
    from unlearnlab.tracking import Tracker

    with pytest.raises(ConfigError, match=r"method.name='\.\./\.\./x'"):
        Tracker({"kind": "csv"}, "s", tmp_path, {"methods": {"../../x": {"name": "../../x"}}})
    with pytest.raises(ConfigError, match="method.name"):
        Tracker({"kind": "csv"}, "s", tmp_path, {"methods": {"..": {}}})
    tracker = Tracker({"kind": "csv"}, "s", tmp_path, {"methods": {"finetune": {"name": "finetune"}}})
    with pytest.raises(ConfigError, match="contains '/'"):
        with tracker.cell("a/../../b#0-1234", "unlearn", {}):
            pass
    assert not (tmp_path.parent / "b#0-1234").exists()
    # sweep audit labels: one folder name, never a path, and two settings never share one
    a = audit_label(["task=audit", "dataset.root=/data/../x"], {"dataset.root"})
    b = audit_label(["task=audit", "dataset.root=/data/.._x"], {"dataset.root"})
    assert "/" not in a and ".." not in a and a != b
    assert audit_label(["task=audit", "method.lr=0.1"], {"method.lr"}) == "method.lr=0.1"
    assert json.dumps(audit_label(["task=audit"], set())) == '"all"'
