"""The study report: files on disk, embedded plots, its tables equal results.json, and the W&B
audit run holds the same numbers and the images (read back from the offline run file)."""

from __future__ import annotations

import base64
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from unlearnlab.report import REFERENCE_ROW, write_report
from unlearnlab.study import write_results
from wandb_records import history, media_files, run_dirs, run_info, summary

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ALL_AUDITS = "[competition,ulira,mia_kit,mia_svc,one_run]"


def synthetic_results(n_models: int = 16, n_forget: int = 60, seed: int = 0) -> dict:
    """A results dict shaped like Study.audit's, with every audit's keys and a few edge cases:
    a tiny value (printed in %.3g), a missing metric, an infinite rte."""
    rng = np.random.default_rng(seed)
    methods, arrays = {}, {}
    for i, name in enumerate(["retrain", "identity", "finetune", "neggrad_plus"]):
        eps = np.clip(rng.exponential(2 + 10 * i, n_forget), 0, 50)
        eps[: 3 * i] = 50.0
        row = {
            "retain/acc": 0.99 - 0.01 * i, "forget/acc": 0.93 + 0.02 * i, "test/acc": 0.94 - 0.005 * i,
            "cost/seconds": 10.0 / (i + 1), "cost/rte": (i + 1) * 2.5,
            "audit/F": 0.25 / (i + 1), "audit/score": 0.24 / (i + 1), "audit/eps_mean": float(eps.mean()),
            "audit/ulira_acc": 0.5 + 0.1 * i, "audit/ulira_auc": 0.5 + 0.12 * i,
            "audit/ulira_tpr@1%": 0.01 * (i + 1), "audit/ulira_tpr@0.1%": 2.5e-5 * (i + 1),
            "audit/mia_acc": 0.5 + 0.02 * i, "audit/mia_acc_retrain": 0.51,
            "audit/mia_efficacy": 0.2 - 0.03 * i, "audit/mia_efficacy_retrain": 0.19,
            "audit/eps_lower_bound": 0.7 * i, "audit/one_run_guesses": 8.0, "audit/one_run_correct": 4.0 + i,
        }
        methods[name] = row
        arrays[name] = {"audit/eps": eps}
    methods["identity"]["cost/rte"] = math.inf  # identity takes ~0 s
    del methods["neggrad_plus"]["audit/mia_efficacy"]
    return {
        "study": "synthetic-study", "n_models": n_models, "methods": methods,
        "retrain": {"retain/acc": 0.985, "forget/acc": 0.931, "test/acc": 0.941, "cost/seconds": 25.0},
        "_arrays": arrays,
    }


STUDY_CFG = {"study_name": "synthetic-study", "n_models": 16, "audit": {"competition": {"delta": 1e-5}},
             "dataset": {"name": "digits"}}


# --- reading the report back -----------------------------------------------------------------


def markdown_tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """Every pipe table in a Markdown text: (header, rows of cell strings)."""
    tables, block = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            block.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif block:
            assert all(re.fullmatch(r":?-+:?", c) for c in block[1]), block[1]
            tables.append((block[0], block[2:]))
            block = []
    return tables


def shown_tolerance(cell: str) -> float:
    """Half a unit in the last digit the cell shows: 0.2587 → 5e-5, 2.5e-05 → 5e-7."""
    mantissa, _, exponent = cell.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    return 0.5 * 10.0 ** (-decimals + (int(exponent) if exponent else 0))


def assert_tables_equal_results(md_text: str, public: dict) -> None:
    """Each number in the report's tables is the results.json value, to the digits shown;
    every method and every metric of results.json is in the tables exactly once. The
    method-vs-method section, when there, holds the Holm-adjusted p-values of results.json."""
    results_md, _, rest = md_text.partition("\n## ")[2].partition("\n## ")
    assert results_md.startswith("Results"), "the report's first section is its results"
    if "pairwise" in public and public["pairwise"]:
        section = md_text[md_text.index("## Which methods differ"):]
        (header, rows), *_ = markdown_tables(section)
        pw = public["pairwise"]
        assert header == ["method", *pw["methods"]] and [r[0] for r in rows] == pw["methods"]
        for i, cells in enumerate(rows):
            for j, cell in enumerate(cells[1:]):
                if i == j:
                    assert cell == "–"
                else:
                    p = pw["p_adjusted"][i][j]
                    assert abs(float(cell) - p) <= shown_tolerance(cell) * (1 + 1e-9), (i, j, cell, p)
    seen: dict[str, dict[str, str]] = {}
    for header, rows in markdown_tables(results_md):
        assert header[0] == "method"
        for cells in rows:
            row = seen.setdefault(cells[0], {})
            for col, cell in zip(header[1:], cells[1:]):
                assert col not in row, f"{cells[0]} / {col} appears twice"
                row[col] = cell
    assert set(seen) == set(public["methods"]) | {REFERENCE_ROW}
    for name, shown in seen.items():
        expected = public["retrain"] if name == REFERENCE_ROW else public["methods"][name]
        if name != REFERENCE_ROW:
            all_keys = {k for r in public["methods"].values() for k in r}
            assert set(shown) == all_keys
        for key, cell in shown.items():
            if key not in expected:
                assert cell == "–", (name, key, cell)
                continue
            value = expected[key]
            if not math.isfinite(value):
                assert float(cell) == value or (math.isnan(value) and cell == "nan"), (name, key, cell)
                continue
            assert abs(float(cell) - value) <= shown_tolerance(cell) * (1 + 1e-9), (name, key, cell, value)
    for key, value in public["retrain"].items():
        assert key in seen[REFERENCE_ROW], f"retrained reference {key} missing"


def check_report_files(out: Path, results_json: dict, n_methods: int) -> str:
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    # trade-off, accuracies, one ε histogram per method
    assert len(images) == 2 + n_methods, images
    for ref in images:
        png = out / ref
        assert png.is_file() and png.read_bytes().startswith(PNG_MAGIC), ref
    uris = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(uris) == len(images)
    embedded = {base64.b64decode(u) for u in uris}
    assert embedded == {(out / ref).read_bytes() for ref in images}
    assert "src=\"http" not in html and "<link" not in html  # self-contained
    assert_tables_equal_results(md, results_json)
    assert "## Config" in md and "<pre>" in html
    return md


# --- unit: synthetic results -----------------------------------------------------------------


def test_report_from_synthetic_results(tmp_path):
    results = synthetic_results()
    write_results(results, tmp_path)
    report = write_report(results, OmegaConf.create(STUDY_CFG), tmp_path)
    public = json.loads((tmp_path / "results.json").read_text())
    md = check_report_files(tmp_path, public, n_methods=len(results["methods"]))
    assert report.markdown == tmp_path / "report.md" and report.html == tmp_path / "report.html"
    assert "study_name: synthetic-study" in md and "study_name: synthetic-study" in report.html.read_text()
    assert set(report.images) == {"report/tradeoff", "report/accuracies"} | {
        f"report/eps/{m}" for m in results["methods"]
    }
    assert set(report.histograms) == {f"{m}/audit/eps" for m in results["methods"]}
    for name, row in results["methods"].items():
        for key, value in row.items():
            assert report.scalars[f"{name}/{key}"] == value
    assert [r["method"] for r in report.rows] == list(results["methods"])


def test_report_without_competition_audit_still_plots_what_it_can(tmp_path):
    results = synthetic_results()
    for row in results["methods"].values():
        for key in ("audit/F", "audit/score", "audit/eps_mean"):
            row.pop(key)
    results["_arrays"] = {}
    report = write_report(results, OmegaConf.create(STUDY_CFG), tmp_path)
    md = report.markdown.read_text()
    assert set(report.images) == {"report/accuracies"}
    assert "No trade-off plot" in md
    write_results(results, tmp_path)
    assert_tables_equal_results(md, json.loads((tmp_path / "results.json").read_text()))


def test_eps_histogram_counts_every_forget_example_in_its_bin():
    """Each panel's bars are the counts of its method's per-example ε in 0.5-wide bins, ε = ∞
    counted at the cap (50) and NaN left out; the control's panel beside it."""
    from matplotlib.patches import StepPatch

    from unlearnlab.plots import eps_histogram_figure

    results = synthetic_results()
    eps = np.array([0.1, 0.2, 0.7, 3.0, 49.9, 50.0, np.inf, np.nan])
    results["_arrays"]["finetune"]["audit/eps"] = eps
    fig = eps_histogram_figure(results, "finetune")
    panels = [[p for p in ax.patches if isinstance(p, StepPatch)] for ax in fig.axes]
    assert [len(p) for p in panels] == [1, 1]
    counts, edges, _ = panels[0][0].get_data()
    assert np.array_equal(edges, np.arange(0.0, 50.5, 0.5))
    expected = np.zeros(100)
    expected[[0, 1, 6, 99]] = [2, 1, 1, 3]  # 49.9, 50 and ∞ in the last bin, [49.5, 50]
    assert np.array_equal(counts, expected) and counts.sum() == 7
    control, _, _ = panels[1][0].get_data()
    assert control.sum() == len(results["_arrays"]["retrain"]["audit/eps"])


def test_markdown_table_parser_checks_digits():
    assert shown_tolerance("0.2587") == pytest.approx(5e-5)
    assert shown_tolerance("2.5e-05") == pytest.approx(5e-7)
    assert shown_tolerance("1.24e+03") == pytest.approx(5)
    with pytest.raises(AssertionError):
        bad = "| method | audit/F |\n|---|---:|\n| a | 0.2600 |\n"
        assert_tables_equal_results(bad, {"methods": {"a": {"audit/F": 0.2587}}, "retrain": {}})


# --- W&B: the audit run carries the numbers and the images -----------------------------------


def test_wandb_audit_run_has_scalars_histograms_and_images(tmp_path):
    from unlearnlab.tracking import Tracker

    results = synthetic_results()
    report = write_report(results, OmegaConf.create(STUDY_CFG), tmp_path)
    tracker = Tracker({"kind": "wandb", "mode": "offline"}, "synthetic-study", tmp_path, STUDY_CFG)
    with _no_warning():
        tracker.audit("audit-synthetic", report.scalars, report.rows, report.histograms, report.images)
    (run,) = run_dirs(tmp_path)
    assert run_info(run)["job_type"] == "study" and run_info(run)["group"] == "synthetic-study"
    check_wandb_audit_run(run, results)


class _no_warning:
    """Tracking swallows failures as warnings; here a warning is a failure."""

    def __enter__(self):
        import warnings

        self._cm = warnings.catch_warnings()
        self._cm.__enter__()
        warnings.simplefilter("error", UserWarning)

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)


def check_wandb_audit_run(run: Path, results: dict) -> None:
    (step,) = history(run)
    final = summary(run)
    for name, row in results["methods"].items():
        for key, value in row.items():
            for logged in (step[f"{name}/{key}"], final[f"{name}/{key}"]):
                assert logged == pytest.approx(value), (name, key, logged, value)
        if name in results.get("_arrays", {}):
            hist = step[f"{name}/audit/eps"]
            assert hist["_type"] == "histogram"
            assert sum(hist["values"]) == np.isfinite(results["_arrays"][name]["audit/eps"]).sum()
    files = {p.relative_to(run / "files").as_posix() for p in media_files(run)}
    keys = {"report/tradeoff", "report/accuracies"} | {f"report/eps/{m}" for m in results["methods"]}
    for key in keys:
        image = step[key]
        assert image["_type"] == "image-file" and image["format"] == "png", image
        assert image["path"] in files, (image["path"], files)
        assert (run / "files" / image["path"]).read_bytes().startswith(PNG_MAGIC)
    assert step["results"]["_type"] == "table-file"


# --- end to end (in-process): the study writes the report and logs it -------------------------


@pytest.mark.slow
def test_study_writes_report_and_logs_images(tmp_path):
    # In-process (W&B offline: conftest); the study, report and W&B logging are tested, not the CLI.
    from conftest import unlearnlab_inprocess

    # 9 relabellings, not 49: the p-values are checked against results.json, not for their resolution
    unlearnlab_inprocess(tmp_path / "out", "n_models=4", f"audit={ALL_AUDITS}", "method=[retrain,finetune]",
                         "recipe.epochs=2", "audit.competition.n_permutations=9",
                         f"paths.root={tmp_path}")
    out = tmp_path / "out"
    public = json.loads((out / "results.json").read_text())
    assert set(public["methods"]) == {"finetune", "retrain"}
    row = public["methods"]["finetune"]
    for key in ("audit/F", "audit/score", "audit/eps_mean", "audit/ulira_auc", "audit/mia_acc",
                "audit/mia_efficacy", "audit/eps_lower_bound"):
        assert key in row, key
    md = check_report_files(out, public, n_methods=2)
    assert "dataset:" in md and "name: digits" in md
    study_runs = [r for r in run_dirs(out) if run_info(r)["job_type"] == "study"]
    assert len(study_runs) == 1
    check_wandb_audit_run(study_runs[0], public)
    assert len([r for r in run_dirs(out) if run_info(r)["job_type"] == "audit"]) == 2  # finetune, retrain
