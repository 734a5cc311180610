"""Config-group schemas (issue 14 item 4, unlearnlab.schemas): a typo in a key or a value of the
wrong type in dataset / split / recipe / trainer / logger / paths fails while the config is
composed, in one line naming the fix, before Hydra makes the run folder; and the schemas change
no cell key."""

from __future__ import annotations

import dataclasses
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import inprocess_error
from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from unlearnlab import schemas

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"


def composed(*overrides: str):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def error(tmp_path: Path, *overrides: str) -> str:
    """The CLI's one-line error for `unlearnlab OVERRIDES`, checked in this process; nothing written."""
    err = inprocess_error(tmp_path / "out", f"paths.root={tmp_path}", "debug=tiny", *overrides)
    assert not (tmp_path / "out").exists() and not (tmp_path / "store").exists()
    return str(err)


# -- every option extends its schema, and the schema adds or changes nothing: tests/test_configs.py
# (test_every_option_composes_resolves_passes_the_checks_and_keeps_its_schema, one compose per option)


def test_schemas_are_registered_once_and_idempotently():
    schemas.register()
    schemas.register()
    store = ConfigStore.instance()
    for group, known in schemas.SCHEMAS.items():
        listed = [n.removesuffix(".yaml") for n in store.list(group)]
        assert sorted(listed) == sorted(known), group


def test_the_trainer_schema_is_lightning_s_own_defaults():
    import lightning

    from unlearnlab.checks import TRAINER_SET_PER_FIT

    params = inspect.signature(lightning.Trainer.__init__).parameters
    for f in dataclasses.fields(schemas.TrainerSchema):
        assert f.name in params and f.name not in TRAINER_SET_PER_FIT, f.name
        assert f.default == params[f.name].default, f"TrainerSchema.{f.name}: {f.default!r} != Lightning's {params[f.name].default!r}"


def test_interpolations_and_numbers_spelled_differently_still_compose():
    cfg = composed("dataset=image_folder", "recipe.lr=1", "recipe.epochs=10.0", "recipe.batch_size='64'",
                   "split=class", "split.classes=[3,4]", "trainer.devices=[0]", "+trainer.profiler=simple")
    assert cfg.dataset.csv == f"{cfg.paths.data}/images/labels.csv"
    assert cfg.recipe.lr == 1.0 and isinstance(cfg.recipe.lr, float)
    assert cfg.split.name == "class[3, 4]" and list(cfg.trainer.devices) == [0] and cfg.trainer.profiler == "simple"


# -- mistakes: one line, naming the fix, before anything is written -----------------------------------
@pytest.mark.parametrize(("overrides", "expected"), [
    (["recipe.lrr=0.1"], ("recipe.lrr is not a recipe key; did you mean recipe.lr? (recipe keys here: epochs, "
                         "batch_size, optimizer, lr, momentum, weight_decay, scheduler, crop_padding, flip)")),
    (["+recipe.lrr=0.1"], ("recipe.lrr is not a recipe key; did you mean recipe.lr? (recipe=digits takes epochs, "
                          "batch_size, optimizer, lr, momentum, weight_decay, scheduler, crop_padding, flip)")),
    (["+recipe.newkey=1"], ("recipe.newkey is not a recipe key; `+` cannot add one (nothing would read it): a new "
                           "recipe key needs a field in unlearnlab.schemas.RecipeSchema and code that reads it")),
    (["dataset.nme=x"], "dataset.nme is not a dataset key; did you mean dataset.name?"),
    (["logger=wandb", "logger.cell_run=true"], "logger.cell_run is not a logger key; did you mean logger.cell_runs?"),
    (["paths.lock_timout=5"], "paths.lock_timout is not a paths key; did you mean paths.lock_timeout?"),
    (["split.classes=[1]"], "split.classes is not a split key; split=class has it: use split=class"),
    (["+dataset.n_train=100"], "dataset.n_train is not a dataset key; dataset=fake_cifar10 has it"),
    (["logger=none", "logger.cell_runs=true"], "logger.cell_runs is not a logger key; logger=csv / logger=wandb have it"),
    (["logger=csv", "+logger.project=x"], "logger.project is not a logger key; logger=wandb has it: use logger=wandb"),
    (["split.kind=class"], ("split.kind=class does not go with split=random, whose keys are for random / group / "
                           "mislabeled; use split=class instead")),
    (["dataset=schema"], "dataset=schema is the dataset group's schema, not an option"),
    (["recipe.epochs=abc"], "recipe.epochs=abc must be ≥ 0, a whole number"),
    (["recipe.epochs=true"], "recipe.epochs=true must be ≥ 0, a whole number"),
    (["recipe.lr=abc"], "recipe.lr=abc must be a number"),
    (["recipe.weight_decay=-1"], "recipe.weight_decay=-1 must be a finite number ≥ 0"),
    (["logger=wandb", "logger.cell_runs=maybe"], "logger.cell_runs=maybe must be true or false, e.g. logger.cell_runs=true"),
    (["recipe.flip=null"], "recipe.flip=null must be set (not null), e.g. recipe.flip=false"),
    (["split=class", "split.classes=[a]"], "split.classes[0]=a must be a whole number, e.g. split.classes=[0]"),
    (["paths.lock_timeout=soon"], "paths.lock_timeout=soon must be a number"),
    (["trainer.max_epoch=3"], "trainer.max_epoch is not a lightning.Trainer argument; did you mean trainer.max_epochs?"),
    (["trainer.profiler=simple"], ("trainer.profiler is a lightning.Trainer argument that unlearnlab.schemas."
                                  "TrainerSchema does not list; add it with +trainer.profiler=simple")),
    (["trainer.accumulate_grad_batches=two"], ("trainer.accumulate_grad_batches=two must be a whole number, "
                                              "e.g. trainer.accumulate_grad_batches=1")),
])
def test_a_schema_mistake_is_one_line_naming_the_fix(tmp_path, overrides, expected):
    line = error(tmp_path, *overrides)
    assert line.startswith(expected), line


@pytest.mark.parametrize(("overrides", "expected"), [
    (["model.widht=8"], "model.widht is not a config key; did you mean model.width? (an argument the config lacks: +model.widht=VALUE)"),
    (["audit.competition.deltaa=1"], "audit.competition.deltaa is not a config key; did you mean audit.competition.delta?"),
    (["methods.finetune.lrr=1"], "methods.finetune.lrr is not a config key; did you mean methods.finetune.lr?"),
    (["methods.scrub.lr=0.1"], ("methods.scrub: scrub is not a method of this study (finetune); "
                                "add it: method=[finetune,scrub]")),
    (["n_model=3"], "n_model is not a config key; did you mean n_models?"),
])
def test_a_key_that_is_not_there_outside_the_schemas_is_one_line_too(tmp_path, overrides, expected):
    line = error(tmp_path, *overrides)
    assert line.startswith(expected) and "\n" not in line, line


@pytest.mark.parametrize(("overrides", "expected"), [
    (["bench=tiny"], "bench: bench.* are the options of task=bench, which this command does not run; add task=bench"),
    (["bench.repeats=3"], "bench.repeats: bench.* are the options of task=bench, which this command does not run"),
    (["files.labels=l.npz"], "files.labels: files.* are the options of task=audit_files, which this command does not"),
    (["task=plan", "export.path=x.tar"], "export.path: export.* are the options of task=export, which this command"),
    (["+import.path=x.tar"], "import.*: the options of task=import, which this command does not run; add task=import"),
])
def test_a_task_s_options_without_the_task_are_one_line_naming_it(tmp_path, overrides, expected):
    """conf/task/NAME.yaml composes a task's option group with it; no other task's config has it."""
    line = error(tmp_path, *overrides)
    assert line.startswith(expected) and "\n" not in line, line


def test_a_task_composes_its_options_and_only_its_own():
    assert "bench" not in composed() and composed().task == "study"
    bench = composed("task=bench", "bench=tiny")
    assert bench.task == "bench" and bench.bench.tiny is True
    assert not {"files", "logits", "export", "import"} & set(bench)
    files = composed("task=audit_files", "files.labels=l.npz")
    assert files.task == "audit_files" and files.files.labels == "l.npz" and "bench" not in files


def test_an_option_file_with_a_mistake_is_named(tmp_path):
    (tmp_path / "conf" / "dataset").mkdir(parents=True)
    (tmp_path / "conf" / "logger").mkdir()
    (tmp_path / "conf" / "dataset" / "mine.yaml").write_text("defaults: [schema, _self_]\nname: digits\nroot: x\nnme: y\n")
    (tmp_path / "conf" / "dataset" / "bare.yaml").write_text("name: digits\nroot: x\n")
    (tmp_path / "conf" / "logger" / "mine.yaml").write_text("defaults: [schema_csv, _self_]\nkind: csv\ncell_runs: maybe\n")
    search = f"hydra.searchpath=[file://{tmp_path / 'conf'}]"
    assert error(tmp_path, search, "dataset=mine").startswith(
        "dataset/mine: dataset.nme is not a dataset key; did you mean dataset.name?")
    assert error(tmp_path, search, "logger=mine") == \
        "logger/mine: logger.cell_runs=maybe must be true or false, e.g. logger.cell_runs=true"
    assert error(tmp_path, search, "dataset=bare").startswith(
        "dataset=bare extends no schema: start its file with `defaults: [schema, _self_]`")


def test_a_schema_mistake_fails_before_any_data_loads(tmp_path, monkeypatch):
    """Refused while Hydra composes: no data loaded, no model built, nothing written (error() checks
    the last). A timing would say the same on a quiet machine and fail on a busy one."""
    import unlearnlab.data as data
    import unlearnlab.models as models

    def forbidden(*args, **kwargs):
        raise AssertionError("work started before the config was refused")

    monkeypatch.setattr(data, "load_source", forbidden)
    monkeypatch.setattr(models, "build_model", forbidden)
    for i, mistake in enumerate(["recipe.lrr=0.1", "+recipe.lrr=0.1", "recipe.flip=maybe"]):
        assert "recipe." in error(tmp_path / str(i), mistake), mistake


def test_the_command_line_prints_the_schema_error_in_one_line(tmp_path):
    """The one real `unlearnlab` process here: exit 2, one `error:` line, no run folder."""
    proc = subprocess.run(
        [sys.executable, "-m", "unlearnlab.cli", f"paths.root={tmp_path}", f"hydra.run.dir={tmp_path / 'out'}",
         "debug=tiny", "logger=wandb", "logger.cell_run=true"],
        capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"}, timeout=300, check=False,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        ("error: logger.cell_run is not a logger key; did you mean logger.cell_runs? "
        "(logger keys here: kind, project, entity, mode, init_timeout, cell_runs)")
    ]
    assert not (tmp_path / "out").exists()
