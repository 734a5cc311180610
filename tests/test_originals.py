"""Three levels of seeds (issue 21 item 5): n_originals = K trains K originals, shares the retrained
models, gives each original N unlearned models per method, audits per original and reports
the per-original F beside their mean — in a real tiny study and a sliced sweep (both in-process,
every recipe at 0 epochs except finetune's one, so the cells cost little).
K = 1 plans exactly the cells, seeds and keys of a study before n_originals existed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, unlearnlab_inprocess
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from unlearnlab.plan import Planner, derive_seed

CONF = str(REPO / "conf")
TINY = ["debug=tiny", "n_models=4", "recipe.epochs=0", "methods.finetune.epochs=1", "method=[identity,finetune]",
        "audit=[competition,lower_bound]", "audit.competition.n_permutations=9"]


def _cfg(*overrides: str):
    with initialize_config_dir(CONF, version_base="1.3"):
        return compose("config", overrides=[*TINY, *overrides])


def test_one_original_plans_the_cells_of_a_study_without_originals():
    one, two = Planner(_cfg(), "data"), Planner(_cfg("n_originals=2"), "data")
    cells_one = one.cells()
    assert one.n_originals == 1 and [c.kind for c in cells_one].count("original") == 1
    # the seeds of before: derive_seed(seed, "original") and derive_seed(seed, "unlearn", name, i)
    assert one.original().seed == derive_seed(0, "original") and one.original().label == "original"
    assert [c.seed for c in cells_one if c.kind == "unlearn"] == [
        derive_seed(0, "unlearn", name, i) for name in ("identity", "finetune") for i in range(4)]
    assert all(c.origin == 0 and "#" in c.label and "@" not in c.label for c in cells_one if c.kind == "unlearn")
    # K = 2 keeps every K = 1 cell (same keys: nothing in a store is invalidated) and adds original 1's
    keys_two = {c.key for c in two.cells()}
    assert {c.key for c in cells_one} < keys_two
    assert len(keys_two) == 2 + 4 + 2 * 2 * 4
    assert two.original(1).key != two.original(0).key and two.original(1).label == "original#1"
    assert two.unlearn("finetune", 3, 1).spec["original"] == two.original(1).key
    assert two.unlearn("finetune", 3, 1).label == "finetune#3@original1"
    assert two.retrain(3).key == one.retrain(3).key  # the retrained models never see an original


def test_bad_n_originals_is_refused_with_the_fix():
    from unlearnlab.errors import ConfigError

    for bad in (0, -1, 1.5, "two"):
        with pytest.raises(ConfigError, match=r"n_originals=.* must be an integer ≥ 1"):
            Planner(OmegaConf.merge(_cfg(), {"n_originals": bad}), "data")


@pytest.fixture(scope="module")
def two_originals(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("originals")
    unlearnlab_inprocess(tmp / "out", *TINY, "n_originals=2", f"paths.root={tmp}")
    return tmp


def test_study_with_two_originals_reports_each_f_and_their_mean(two_originals):
    tmp = two_originals
    results = json.loads((tmp / "out" / "results.json").read_text())
    assert results["n_originals"] == 2
    store = tmp / "store"
    assert len(list((store / "original").iterdir())) == 2 and len(list((store / "retrain").iterdir())) == 4
    assert len(list((store / "unlearn").iterdir())) == 2 * 2 * 4  # 2 methods × 2 originals × N
    for name, row in results["methods"].items():
        per = results["originals"][name]
        assert row["audit/F_originals"] == per["audit/F"] and len(per["audit/F"]) == 2
        assert row["audit/F"] == pytest.approx(np.mean(per["audit/F"]))
        assert row["audit/F_sd"] == pytest.approx(np.std(per["audit/F"], ddof=1))
        assert row["audit/p_value"] == pytest.approx(min(1.0, 2 * min(per["audit/p_value"])))  # Bonferroni
        assert row["audit/eps_lb"] == min(per["audit/eps_lb"])
        assert row["test/acc"] == pytest.approx(np.mean(per["test/acc"]))
    # the originals differ (other training seeds), so do finetune's F values on them
    assert len(set(results["originals"]["finetune"]["forget/acc"])) == 2
    report = (tmp / "out" / "report.md").read_text()
    assert "2 original models" in report and "audit/F_originals" in report and "audit/F_sd" in report
    # Holm over the non-controls (identity is a control): finetune alone
    assert results["holm"]["methods"] == ["finetune"]
    assert results["methods"]["finetune"]["audit/p_value_holm"] == results["methods"]["finetune"]["audit/p_value"]


def _job(tmp: Path, index: int) -> list[dict]:
    from unlearnlab.sweep import cell_task

    cfg = _cfg("task=cell", "n_originals=2", "cells_per_job=2", f"index={index}", f"paths.root={tmp}",
               f"paths.output_dir={tmp}/job{index}")
    return cell_task(cfg)


def test_sliced_sweep_computes_every_original_s_cells_and_audits_like_the_study(tmp_path, two_originals):
    """Two `task=cell` jobs of 2 indices each (run here in-process, as a launcher would run them),
    then the end-of-sweep audit (sweep.run_audit, what AuditCallback calls): each job holds both
    originals and its indices' cells of both, and the audit equals the study's."""
    from sweep_runs import assert_same_audit

    from unlearnlab.sweep import run_audit

    jobs = [_job(tmp_path, 0), _job(tmp_path, 2)]
    for start, job in zip((0, 2), jobs):
        assert [c["label"] for c in job[:2]] == ["original", "original#1"]
        assert sorted({c["index"] for c in job[2:]}) == [start, start + 1]
        assert sorted(c.get("origin", 0) for c in job if c["name"] == "finetune") == [0, 0, 1, 1]
        assert len(job) == 2 + 2 * (1 + 2 * 2)  # originals + per index: retrain + 2 methods × 2 originals
    assert not any(c["cached"] for c in jobs[0]) and sum(not c["cached"] for c in jobs[1]) == len(jobs[1]) - 2
    from unlearnlab.plan_task import plan_study

    plan = plan_study(_cfg("task=plan", "n_originals=2", "cells_per_job=2", f"paths.root={tmp_path}"))
    assert plan["cells"] == {"original": 2, "retrain": 4, "unlearn": 16, "total": 22}
    assert plan["to_compute"] == 0 and plan["largest_job_cells"] == 2 + 2 * (1 + 2 * 2)
    with initialize_config_dir(CONF, version_base="1.3"):
        run_audit("config", [*TINY, "task=audit", "n_originals=2", f"paths.root={tmp_path}"], tmp_path / "audit")
    swept = json.loads((tmp_path / "audit" / "results.json").read_text())
    study = json.loads((two_originals / "out" / "results.json").read_text())
    assert_same_audit(swept, study)
    assert swept["originals"].keys() == study["originals"].keys()
