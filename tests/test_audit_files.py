"""task=audit_files (issue 20 item 1): logits of models trained elsewhere, one .npz per model, go
through the study's own audits and give the numbers the library functions give on the same
arrays; an audit that needs a part the files lack is skipped with the reason; every malformed
file is refused in one line naming it and the fix."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from conftest import inprocess_error, unlearnlab_inprocess
from omegaconf import OmegaConf

from unlearnlab.audit_files import load_files
from unlearnlab.audits._features import cross_entropy
from unlearnlab.audits.competition import (final_score, forgetting_quality, indistinguishability_test,
                                           logit_scaled_confidence, pairwise_tests)
from unlearnlab.audits.lower_bound import epsilon_lower_bound
from unlearnlab.audits.mia_kit import kit_mia_accuracy
from unlearnlab.audits.mia_svc import mia_efficacy
from unlearnlab.errors import ConfigError

N, C = 4, 5
SIZES = {"forget": 12, "test": 10, "retain": 16, "val": 4}
# every audit that reads these parts, at test size: 9 relabellings (p-value resolution 0.1), 3 kit MIA splits
AUDITS = ["audit=[competition,lower_bound,mia_kit,mia_svc]", "audit.competition.n_permutations=9",
          "+audit.mia_kit.n_splits=3"]


def write_side(folder: Path, rng, shift: float, parts=("forget", "test", "retain", "val"), n: int = N) -> np.ndarray:
    """N model files of float32 logits; forget confidences shifted by SHIFT (a leak to find)."""
    folder.mkdir(parents=True, exist_ok=True)
    stacked = {p: [] for p in parts}
    for i in range(n):
        arrays = {p: rng.normal(size=(SIZES[p], C)).astype(np.float32) for p in parts}
        arrays["forget"][:, 0] += shift
        np.savez(folder / f"model_{i}.npz", **arrays)  # model_10 would sort after model_9
        for p in parts:
            stacked[p].append(arrays[p])
    return {p: np.stack(v) for p, v in stacked.items()}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("files")
    rng = np.random.default_rng(0)
    labels = {p: rng.integers(0, C, n) for p, n in SIZES.items()}
    labels["forget"][:] = 0  # so the shift below moves the true class's confidence
    labels["retain_sample"] = np.arange(0, SIZES["retain"], 2)  # the rows the MIAs read
    np.savez(root / "labels.npz", **labels)
    sides = {"ref": write_side(root / "ref", rng, 0.0), "mine": write_side(root / "mine", rng, 2.0),
             "theirs": write_side(root / "theirs", rng, 0.0)}
    return root, labels, sides


def overrides(root: Path, *more: str) -> list[str]:
    return ["task=audit_files", "logger=none", f"paths.root={root}", f"files.labels={root / 'labels.npz'}",
            f"files.reference={root / 'ref'}", *more]


def test_audited_with_the_numbers_the_library_functions_give_on_the_same_arrays(files, tmp_path):
    root, labels, sides = files
    out = tmp_path / "out"
    unlearnlab_inprocess(out, *overrides(root, *AUDITS, f"+files.methods.mine={root / 'mine'}",
                                         f"+files.methods.theirs={root / 'theirs'}"))
    results = json.loads((out / "results.json").read_text())
    y = labels["forget"]
    ref = sides["ref"]
    conf_r = logit_scaled_confidence(ref["forget"], y)
    acc = lambda side, p: float(np.mean((side[p].argmax(-1) == labels[p]).mean(axis=1)))  # noqa: E731
    rows = [labels["retain_sample"]]
    svc = lambda side: np.mean([mia_efficacy(*m) for m in zip(  # noqa: E731
        *(np.exp(-cross_entropy(side[p] if p != "retain" else side[p][:, rows[0]],
                                labels[p] if p != "retain" else labels[p][rows[0]])) for p in ("retain", "test", "forget")))])
    confs = {}
    for name in ("mine", "theirs"):
        side, row = sides[name], results["methods"][name]
        conf_u = confs[name] = logit_scaled_confidence(side["forget"], y)
        F, eps = forgetting_quality(conf_r, conf_u)
        F_p, p = indistinguishability_test(conf_r, conf_u, n_permutations=9, seed=0)
        assert row["audit/F"] == pytest.approx(F, abs=0) and F_p == F
        assert row["audit/p_value"] == p and row["audit/eps_mean"] == pytest.approx(float(eps.mean()), abs=0)
        assert row["audit/eps_lb"] == epsilon_lower_bound(conf_r, conf_u, delta=1e-5, level=0.95, seed=0)
        for part in ("forget", "test", "retain"):  # accuracies from the logits, retain over every row
            assert row[f"{part}/acc"] == pytest.approx(acc(side, part), abs=1e-15 if part == "retain" else 1e-7)
        assert row["audit/score"] == pytest.approx(final_score(F, acc(side, "retain"), acc(ref, "retain"),
                                                               acc(side, "test"), acc(ref, "test")), abs=1e-6)
        kit = np.mean([kit_mia_accuracy(f, t, n_splits=3) for f, t in zip(cross_entropy(side["forget"], y),
                                                               cross_entropy(side["test"], labels["test"]))])
        assert row["audit/mia_acc"] == pytest.approx(kit, abs=1e-15)
        assert row["audit/mia_efficacy"] == pytest.approx(svc(side), abs=1e-15)
        assert row["audit/mia_efficacy_retrain"] == pytest.approx(svc(ref), abs=1e-15)
    # the leak is found (N = 4: 35 distinct relabellings, so p ≥ 1/10 and a draw may repeat the real one),
    # the copy of the reference's distribution is not
    mine, theirs = results["methods"]["mine"], results["methods"]["theirs"]
    assert mine["audit/p_value"] <= 0.2 < theirs["audit/p_value"] and mine["audit/F"] < theirs["audit/F"]
    tests = pairwise_tests(conf_r, confs, seed=0, delta=1e-5, alpha=0.05)
    assert results["pairwise"]["p_adjusted"] == tests.adjusted.tolist()
    assert results["retrain"]["test/acc"] == pytest.approx(acc(ref, "test"), abs=1e-7)
    assert results["study"] == "files-ref" and results["n_models"] == N and "skipped" not in results
    assert results["data"]["labels_sha256"] and (out / "report.md").is_file()


def test_an_audit_that_reads_a_part_the_files_lack_is_skipped_with_the_reason(tmp_path, capsys):
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "labels.npz", forget=rng.integers(0, C, SIZES["forget"]), test=rng.integers(0, C, SIZES["test"]))
    write_side(tmp_path / "ref", rng, 0.0, parts=("forget", "test"), n=4)
    write_side(tmp_path / "mine", rng, 1.0, parts=("forget", "test"), n=4)
    out = tmp_path / "out"
    unlearnlab_inprocess(out, *overrides(tmp_path, *AUDITS, f"+files.methods.mine={tmp_path / 'mine'}"))
    results = json.loads((out / "results.json").read_text())
    row = results["methods"]["mine"]
    assert {"audit/F", "audit/p_value", "audit/eps_lb", "audit/mia_acc", "forget/acc", "test/acc"} <= set(row)
    assert not {"audit/mia_efficacy", "audit/score", "retain/acc"} & set(row)
    skipped = {s["audit"]: s for s in results["skipped"]}
    assert skipped["mia_svc"] == {"audit": "mia_svc", "methods": ["mine"],
                                  "reason": "reads retain logits, which these models lack"}
    assert "retain/acc" in skipped["competition: audit/score"]["reason"]
    printed = capsys.readouterr().out
    assert "Skipped audits" in printed and "reads retain logits, which these models lack" in printed
    assert "reads retain logits" in (out / "report.md").read_text()


# -- malformed input: one line naming the file and the fix -------------------------------------------
def _files_cfg(root: Path, **methods) -> OmegaConf:
    return OmegaConf.create({"labels": str(root / "labels.npz"), "reference": str(root / "ref"), "name": None,
                             "methods": {k: str(v) for k, v in (methods or {"mine": root / "mine"}).items()}})


def _good(root: Path, n: int = 2) -> None:
    rng = np.random.default_rng(2)
    np.savez(root / "labels.npz", forget=rng.integers(0, C, 8), test=rng.integers(0, C, 6))
    for side in ("ref", "mine"):
        (root / side).mkdir(exist_ok=True)
        for i in range(n):
            np.savez(root / side / f"{i}.npz", forget=rng.normal(size=(8, C)), test=rng.normal(size=(6, C)))


class Evil:
    def __reduce__(self):
        return (Path.write_text, (Path("/tmp/unlearnlab-audit-files-pwned"), "x"))


def _break(root: Path, case: str) -> None:
    mine = root / "mine" / "0.npz"
    good = dict(np.load(mine))
    if case == "wrong shape":
        np.savez(mine, forget=good["forget"][:, 0], test=good["test"])
    elif case == "nan":
        good["test"][3, 1] = np.nan
        np.savez(mine, **good)
    elif case == "inf":
        good["forget"][0, 0] = np.inf
        np.savez(mine, **good)
    elif case == "class count":
        np.savez(mine, forget=np.zeros((8, C + 1)), test=np.zeros((6, C + 1)))
        np.savez(root / "mine" / "1.npz", forget=np.zeros((8, C + 1)), test=np.zeros((6, C + 1)))
    elif case == "label out of range":
        y = dict(np.load(root / "labels.npz"))
        y["test"][2] = C
        np.savez(root / "labels.npz", **y)
    elif case == "one model":
        (root / "mine" / "1.npz").unlink()
    elif case == "forget sizes":
        for i in (0, 1):
            np.savez(root / "mine" / f"{i}.npz", forget=np.zeros((7, C)), test=np.zeros((6, C)))
    elif case == "pickle":
        arr = np.empty(1, dtype=object)
        arr[0] = Evil()
        np.savez(mine, forget=good["forget"], test=good["test"], evil=arr)
    elif case == "integer logits":
        np.savez(mine, forget=good["forget"].astype(np.int64), test=good["test"])
    elif case == "no test":
        np.savez(mine, forget=good["forget"])
    elif case == "unknown key":
        np.savez(mine, forget=good["forget"], test=good["test"], retrain=good["test"])
    elif case == "not npz":
        mine.write_bytes(pickle.dumps({"forget": 1}))
    elif case == "truncated":
        mine.write_bytes(mine.read_bytes()[:100])
    elif case == "labels count":
        y = dict(np.load(root / "labels.npz"))
        np.savez(root / "labels.npz", forget=y["forget"][:-1], test=y["test"])
    elif case == "different N":
        np.savez(root / "mine" / "2.npz", forget=good["forget"], test=good["test"])


@pytest.mark.parametrize(("case", "file", "expected"), [
    ("wrong shape", "mine/0.npz", "forget must be float logits of shape (n_forget, classes), got float64 of shape (8,)"),
    ("nan", "mine/0.npz", "test holds NaN/inf logits (first in row 3); write the model's finite logits"),
    ("inf", "mine/0.npz", "forget holds NaN/inf logits (first in row 0)"),
    ("class count", "mine/0.npz", "forget has 6 classes, "),
    ("label out of range", "labels.npz", f"test has label {C}, outside 0..{C - 1} (the logits have {C} classes)"),
    ("one model", "mine", "holds 1 model file (.npz); the audit compares samples of models: give it at least 2"),
    ("forget sizes", "mine/0.npz", "has 7 forget rows, "),
    ("pickle", "mine/0.npz", "is pickled or holds an object array, which is never unpickled"),
    ("integer logits", "mine/0.npz", "forget must be float logits"),
    ("no test", "mine/0.npz", "has no 'test' logits"),
    ("unknown key", "mine/0.npz", "holds an array 'retrain'; a model file's keys are forget, test, retain, val"),
    ("not npz", "mine/0.npz", "is pickled or holds an object array, which is never unpickled"),
    ("truncated", "mine/0.npz", "is not a readable .npz file"),
    ("labels count", "labels.npz", "has 7 forget labels, "),
    ("different N", "mine", "holds 3 models, files.reference="),
])
def test_malformed_files_are_refused_in_one_line_naming_the_file(tmp_path, case, file, expected):
    _good(tmp_path)
    _break(tmp_path, case)
    with pytest.raises(ConfigError) as err:
        load_files(_files_cfg(tmp_path))
    message = str(err.value)
    assert "\n" not in message and expected in message and str(tmp_path / file) in message, message
    assert not Path("/tmp/unlearnlab-audit-files-pwned").exists()


def test_the_forget_set_sizes_of_reference_and_methods_must_agree_through_the_cli(tmp_path):
    """The CLI path: a one-line error (exit 2 from the command line), nothing written."""
    _good(tmp_path)
    _break(tmp_path, "forget sizes")
    err = inprocess_error(tmp_path / "out", *overrides(tmp_path, f"+files.methods.mine={tmp_path / 'mine'}"))
    assert "reference and methods must be scored on the same forget set" in str(err)
    assert not (tmp_path / "out" / "results.json").exists()


@pytest.mark.parametrize(("extra", "expected"), [
    ([], "task=audit_files needs at least one method folder: +files.methods.NAME=DIR"),
    (["files.labels=null"], "task=audit_files needs files.labels=PATH"),
    ([f"+files.methods.{'m' * 201}=x"], "is 201 characters long"),  # a method's name becomes a folder name
    (["files.lables=x"], "files.lables is not a files key; did you mean files.labels?"),
    (["files.methods.mine=x"], "files.methods.mine: a method folder is a new key; add it with a plus: +files.methods.mine=x"),
])
def test_missing_or_misspelt_options_are_refused_at_start_up(tmp_path, extra, expected):
    err = inprocess_error(tmp_path / "out", *overrides(tmp_path), *extra)
    assert expected in str(err)
    assert not (tmp_path / "out").exists()
