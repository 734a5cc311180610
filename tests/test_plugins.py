"""Plugins (unlearnlab.plugins): packages installed with an entry point in `unlearnlab.plugins`.

Each test installs real plugins the way pip leaves them — a package folder and a `*.dist-info`
with METADATA and entry_points.txt, on sys.path — so importlib.metadata, Hydra's SearchPathPlugin
and the allowlist see exactly what they see after `pip install`. Nothing is downloaded."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import inprocess_error

import unlearnlab
from unlearnlab import plugins, testing
from unlearnlab.errors import ConfigError
from unlearnlab.registry import target_problem

REPO = Path(__file__).resolve().parents[1]

METHOD = '''
"""Test plugin methods."""
from typing import ClassVar

import torch.nn.functional as F

from unlearnlab.methods.base import UnlearningMethod


class RetainSteps(UnlearningMethod):
    """Cross-entropy on retain (what a first plugin method looks like)."""

    reads: ClassVar[frozenset[str]] = frozenset({"retain"})

    def train_dataloader(self):
        return self.data.batches("retain", self.batch_size)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self.model(x), y)


class Peeks(RetainSteps):
    """Reads forget without declaring it."""

    def train_dataloader(self):
        return self.data.batches("forget", self.batch_size)


def helper():
    return 1
'''
EXTRAS = '''
"""A plugin's model builder, dataset source and audit."""
import numpy as np
import torch
from torch import nn

from unlearnlab.data.sources import Source, channel_stats
from unlearnlab.metrics import Metric


def tiny_net(in_channels: int, num_classes: int, image_size: int, width: int = 8) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size * image_size, width), nn.ReLU(),
                         nn.Linear(width, num_classes))


def small_digits(root: str, download: bool = False, n_train: int = 600) -> Source:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy((d.images * 255 / 16).round().astype(np.uint8)).unsqueeze(1)
    y = torch.from_numpy(d.target.astype(np.int64))
    mean, std = channel_stats(x[:n_train])
    return Source("small_digits", x[:n_train], y[:n_train], x[n_train:n_train + 300], y[n_train:n_train + 300],
                  tuple(str(i) for i in range(10)), mean, std)


class ForgetGap:
    metrics = (Metric("audit/forget_gap", "unlearned minus retrained forget accuracy (mean); ideal 0"),)

    def __call__(self, inp):
        gap = inp.unlearn.metrics["forget/acc"].mean() - inp.retrain.metrics["forget/acc"].mean()
        return {"audit/forget_gap": float(gap)}
'''
ACME = {
    "acme_forget/__init__.py": "",
    "acme_forget/method.py": METHOD,
    "acme_forget/extras.py": EXTRAS,
    "acme_forget/conf/method/acme_steps.yaml": "# @package methods.acme_steps\nname: acme_steps\n"
                                               "_target_: acme_forget.method.RetainSteps\nepochs: 1\nbatch_size: 64\n",
    "acme_forget/conf/method/acme_peeks.yaml": "# @package methods.acme_peeks\nname: acme_peeks\n"
                                               "_target_: acme_forget.method.Peeks\nepochs: 1\nbatch_size: 64\n",
    "acme_forget/conf/model/acme_tiny.yaml": "name: acme_tiny\n_target_: acme_forget.extras.tiny_net\nwidth: 16\n",
    "acme_forget/conf/dataset/acme_digits.yaml": "defaults:\n  - schema_source\n  - _self_\nname: acme_digits\n"
                                                 "_target_: acme_forget.extras.small_digits\nroot: ${paths.data}\n"
                                                 "options:\n  n_train: 700\n",
    "acme_forget/conf/audit/forget_gap.yaml": "# @package audit.forget_gap\n_target_: acme_forget.extras.ForgetGap\n",
}


class Site:
    """A folder on sys.path that plugins are installed into."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.packages: list[str] = []

    def install(self, dist: str, entry_points: dict[str, str], files: dict[str, str]) -> None:
        for rel, text in files.items():
            path = self.root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text))
            self.packages.append(rel.split("/")[0])
        info = self.root / f"{dist.replace('-', '_')}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(
            "[unlearnlab.plugins]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items()))
        plugins.refresh()


def _forget_caches() -> None:
    plugins.refresh()
    testing.forget()


@pytest.fixture
def site(tmp_path, monkeypatch):
    s = Site(tmp_path / "site")
    s.root.mkdir()
    monkeypatch.syspath_prepend(str(s.root))
    _forget_caches()
    yield s
    for name in list(sys.modules):
        if name.split(".")[0] in s.packages:
            del sys.modules[name]
    monkeypatch.undo()
    _forget_caches()


@pytest.fixture
def acme(site):
    site.install("acme-forget", {"acme": "acme_forget"}, ACME)
    return site


# -- what a plugin adds, in a study -------------------------------------------------------------
def test_a_plugin_s_method_model_dataset_and_audit_run_in_a_study_beside_the_controls(acme, tmp_path):
    results = unlearnlab.run(["debug=tiny", "method=[identity,retrain,acme_steps]", "dataset=acme_digits",
                              "model=acme_tiny", "audit=[competition,forget_gap]", f"paths.root={tmp_path}"],
                             output_dir=tmp_path / "out")
    assert list(results["methods"]) == ["identity", "retrain", "acme_steps"]
    row = results["methods"]["acme_steps"]
    assert isinstance(row["audit/F"], float) and isinstance(row["audit/forget_gap"], float)
    assert results["methods"]["identity"]["forget/acc"] > results["methods"]["acme_steps"]["forget/acc"] - 1
    saved = (tmp_path / "out" / "results.json").read_text()
    assert '"acme_steps"' in saved and "forget_gap" in saved


def test_plugin_code_is_allowed_by_what_it_is(acme):
    for target in ("acme_forget.method.RetainSteps", "acme_forget.extras.tiny_net", "acme_forget.extras.small_digits",
                   "acme_forget.extras.ForgetGap"):
        assert target_problem(target) is None, target
    why = target_problem("acme_forget.method.helper")
    assert "not an UnlearningMethod, model, audit or dataset source of plugin acme" in why
    assert "which is not defined in acme_forget" in target_problem("acme_forget.method.F.cross_entropy")


def test_the_test_kit_checks_a_plugin_method_and_catches_an_undeclared_read(acme):
    testing.check_config("acme_steps")
    testing.check_reproducible("acme_steps", first=testing.check_run("acme_steps", limit_batches=1), limit_batches=1)
    with pytest.raises(AssertionError, match=r"method=acme_peeks: method 'acme_peeks' read 'forget' but declares "
                                             r"reads=\['retain'\]; add 'forget' to its `reads`"):
        testing.check_run("acme_peeks", limit_batches=1)


def test_an_undeclared_read_at_run_time_is_one_line_and_stores_nothing_for_that_cell(acme, tmp_path):
    err = inprocess_error(tmp_path, "debug=tiny", "method=[acme_peeks]", f"paths.root={tmp_path}")
    assert "method 'acme_peeks' read 'forget' but declares reads=['retain']; add 'forget' to its `reads`" in str(err)
    assert not list((tmp_path / "store" / "unlearn").glob("*"))  # the original and retrained cells are kept


# -- refused, one line, before anything trains -------------------------------------------------------
def test_a_module_no_plugin_registered_is_refused(acme):
    with pytest.raises(ConfigError, match=r"_target_ 'acme_unlisted.method.RetainSteps' is not allowed: .*no "
                                          r"installed plugin registered acme_unlisted"):
        unlearnlab.compose(["debug=tiny", "methods.finetune._target_=acme_unlisted.method.RetainSteps"])


def test_the_cli_refuses_a_module_no_plugin_registered_with_nothing_trained(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "unlearnlab.cli", f"paths.root={tmp_path}", "debug=tiny",
         "methods.finetune._target_=acme_forget.method.RetainSteps"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "no installed plugin registered acme_forget" in lines[0], proc.stderr[-2000:]
    assert not (tmp_path / "store").exists() and not (tmp_path / "outputs").exists()


def test_a_plugin_config_key_its_class_does_not_take(acme, tmp_path):
    (acme.root / "acme_forget/conf/method/acme_steps.yaml").write_text(
        "# @package methods.acme_steps\nname: acme_steps\n_target_: acme_forget.method.RetainSteps\nlrr: 0.1\n")
    err = inprocess_error(tmp_path, "debug=tiny", "method=[acme_steps]", f"paths.root={tmp_path}")
    assert "methods.acme_steps.lrr is not an argument of acme_forget.method.RetainSteps; did you mean " \
           "methods.acme_steps.lr?" in str(err)
    assert not (tmp_path / "store").exists()


def test_a_plugin_that_fails_to_import(site):
    site.install("broken-pkg", {"broken": "broken_pkg"}, {"broken_pkg/__init__.py": "import not_installed_anywhere\n"})
    with pytest.raises(ConfigError) as err:
        unlearnlab.compose(["debug=tiny"])
    assert str(err.value) == ("plugin broken (entry point `broken = broken_pkg` of broken-pkg 0.1) fails to import "
                              "(ModuleNotFoundError: No module named 'not_installed_anywhere'); fix it, or remove it "
                              "(pip uninstall broken-pkg)")


def test_a_plugin_option_named_like_a_built_in_one(site):
    site.install("clash", {"clash": "clash_pkg"}, {"clash_pkg/__init__.py": "",
                                                  "clash_pkg/conf/method/finetune.yaml": "name: finetune\n"})
    with pytest.raises(ConfigError, match=r"plugin clash \(entry point `clash = clash_pkg` of clash 0.1\): "
                                          r"clash_pkg/conf/method/finetune.yaml has the name of unlearnlab's own "
                                          r"method option finetune; rename it"):
        unlearnlab.compose(["debug=tiny"])


def test_two_plugins_defining_the_same_option(acme):
    acme.install("other", {"other": "other_pkg"}, {"other_pkg/__init__.py": "",
                                                  "other_pkg/conf/method/acme_steps.yaml": "name: acme_steps\n"})
    with pytest.raises(ConfigError, match=r"plugin other .*: other_pkg/conf/method/acme_steps.yaml has the name of "
                                          r"method option acme_steps of plugin acme .*; rename one of them"):
        unlearnlab.compose(["debug=tiny"])


def test_a_plugin_config_naming_code_outside_its_package(acme):
    acme.install("other", {"other": "other_pkg"}, {
        "other_pkg/__init__.py": "",
        "other_pkg/conf/method/other_steps.yaml": "name: other_steps\n_target_: acme_forget.method.RetainSteps\n"})
    with pytest.raises(ConfigError, match=r"plugin other .*: other_pkg/conf/method/other_steps.yaml names _target_ "
                                          r"acme_forget.method.RetainSteps, outside its package other_pkg"):
        unlearnlab.compose(["debug=tiny"])


def test_an_entry_point_that_is_not_a_top_level_package(site):
    site.install("dotted", {"dotted": "dotted_pkg.methods:Method"}, {"dotted_pkg/__init__.py": ""})
    with pytest.raises(ConfigError, match=r"the value must be the plugin's top-level package, e.g. `dotted = dotted_pkg`"):
        unlearnlab.compose(["debug=tiny"])


def test_a_method_named_other_than_its_option(acme):
    with pytest.raises(ConfigError, match="methods.acme_steps.name=other differs from the option's name acme_steps"):
        unlearnlab.compose(["debug=tiny", "method=acme_steps", "methods.acme_steps.name=other"])


def test_help_lists_the_installed_plugins_and_what_each_adds(acme):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(acme.root), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "unlearnlab.cli", "--help"], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert ("acme (acme_forget, acme-forget 0.1): audit: forget_gap; dataset: acme_digits; method: acme_peeks, "
            "acme_steps; model: acme_tiny") in proc.stdout
    assert "acme_steps" in proc.stdout.split("== Plugins ==")[0]  # Hydra's own list of the method group's options


def test_import_unlearnlab_and_help_stay_light(acme):
    code = "import sys, unlearnlab, unlearnlab.cli; print(sorted(m for m in ('torch', 'lightning') if m in sys.modules))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(acme.root), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.stdout.strip() == "[]", out.stderr[-2000:]
