"""Start-up checks: everything a config can get wrong that is knowable before any data is loaded
or any model trained, each refused with one ConfigError line that names the fix.

`check_config(cfg)` is the one entry. The CLI runs it on every config Hydra composes, before
Hydra configures logging or instantiates a callback, launcher or sweeper (cli.py), and
`tasks.run_task` runs it again on the job's config. It checks:

- plugins: every installed plugin (unlearnlab.plugins) imports, its entry point names a top-level
  package, its option names clash with no built-in option or other plugin's, and its config files
  name `_target_`s only in its own package or unlearnlab's allowed set;

- code: every `_target_`, `hydra.*` included (registry.check_targets); Hydra's logging config
  (no factories, known handler classes, log files only in the run's output folder), the
  environment variables `hydra.job.env_set` may set, submitit's shell fields (command line only);
- schemas: the keys of dataset, split, recipe, logger and paths are their schema's
  (unlearnlab.schemas), `+recipe.lrr=0.1` included; Hydra itself refuses other unknown keys and
  wrongly typed values while composing, and `composition_error` says so in one line;
- paths and names: `paths.*` not empty, `paths.store` not a file; config values that become
  folder names (`errors.safe_name`);
- sizes: n_models, workers, and every epochs / batch size / learning rate / weight decay of the recipe
  and of every method (the one place these are checked);
- Lightning: trainer keys bound to `lightning.Trainer.__init__`'s signature, precision by
  Lightning's own parser;
- arguments: each method's, audit's and the model's config keys bound to its class signature
  (`method.lrr=0.1` fails here, not after the original and N retrained models have trained);
- fit: a method that declares the model kinds it applies to (`model_kinds`) against the
  model's kind (`model_kind`, default "network"); at least one audit for tasks that audit;
- task options: what task=audit_files, logits, export and import need set (`files.*`,
  `logits.*`, `export.*`, `import.*`), method names that become folder names, export kinds,
  the form of a W&B artifact name. The files themselves are checked as they are read.

Importing this module imports neither torch nor Lightning, and the checks that need no import of
them run first (plugins' entry points and config files, schemas, the names of the `_target_`s,
the `hydra` node, paths, names, sizes, task options), so a mistake there is refused in about a
second; then those that import code: the plugins themselves, what each `_target_` resolves to,
the trainer's keys, the classes' signatures (tests/test_fast_errors.py).
"""

from __future__ import annotations

import difflib
import functools
import inspect
import math
import os
import re
from contextlib import contextmanager
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from unlearnlab import plugins, schemas
from unlearnlab.errors import ConfigError, safe_name
from unlearnlab.registry import RULES, check_targets, target_object, target_problem
from unlearnlab.store import KINDS, check_root

# Keys of a method config the framework reads (plan.FRAMEWORK_KEYS); the class never sees them.
METHOD_FRAMEWORK_KEYS = ("name", "reference")
MODEL_FRAMEWORK_KEYS = ("name", "channels_last", "compile")  # models.SWITCHES + name
TRAINER_SET_PER_FIT = ("max_epochs", "logger")  # cells.trainer_factory passes these itself
AUDITING_TASKS = ("study", "audit", "cell", "audit_files")
# The option group each of these tasks composes with it (conf/task/NAME.yaml); no other config has it.
TASK_OPTION_GROUPS = {"bench": "bench", "files": "audit_files", "logits": "logits", "export": "export", "import": "import"}
CELL_KINDS = KINDS  # what task=export can bundle: the kinds of cell (plan.Cell.kind)
# ENTITY/PROJECT/NAME:VERSION, as wandb's public API names an artifact (import.artifact)
ARTIFACT_NAME = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+:[A-Za-z0-9_.-]+")
DEFAULT_MODEL_KIND = "network"

# Environment variables a config may set through hydra.job.env_set (anything else, e.g.
# LD_PRELOAD or PYTHONPATH, would change what code runs in this or a child process).
ENV_SET_ALLOWED = re.compile(
    r"(OMP|MKL|OPENBLAS|NUMEXPR|VECLIB_MAXIMUM)_NUM_THREADS|CUDA_VISIBLE_DEVICES|WANDB_(MODE|SILENT)"
)
LOG_CLASSES = frozenset({"logging.StreamHandler", "logging.FileHandler", "logging.NullHandler", "logging.Formatter",
                         "colorlog.ColoredFormatter"})
LOG_STREAMS = frozenset({"ext://sys.stdout", "ext://sys.stderr"})
SHELL_KEYS = ("setup", "srun_args", "additional_parameters")  # submitit launcher fields that reach a shell


def check_config(cfg: DictConfig) -> None:
    """Refuse, before any work, a config that cannot run as meant. One ConfigError, one line.
    First every check that imports no torch, Lightning or plugin code (a mistake found there is
    refused in about a second), then those that import the classes the config names."""
    from hydra.core.hydra_config import HydraConfig

    hydra_node = cfg.get("hydra") if "hydra" in cfg else (HydraConfig.get() if HydraConfig.initialized() else None)
    check_plugin_entries()  # first: the plugins decide which packages a `_target_` may name
    check_schemas(cfg, hydra_node)  # it resolves nothing
    for key in cfg:
        if key != "hydra":
            check_targets(cfg.get(key), f"config.{key}", imports=False)
    if hydra_node is not None:
        check_hydra(hydra_node, cfg if "hydra" in cfg else None)
    if "method" in cfg:  # `+method.lr=…`: the group `method` chooses methods; it is no config node
        names = list(cfg.get("methods") or {})
        raise ConfigError(f"method.{next(iter(cfg.method), 'KEY')} is not a config key: a method's arguments sit at "
                          f"methods.NAME.KEY (this study: {', '.join(names) or 'no methods'}); method=[...] chooses them "
                          f"(a conf/method/NAME.yaml must start with `# @package methods.NAME` on its first line)")
    view = _Resolver(cfg, strict=HydraConfig.initialized() and "hydra" not in cfg)
    check_missing(cfg)
    check_paths(view)
    check_names(cfg, view)
    check_sizes(view)
    methods = method_configs(view)
    check_objective(view.get("objective"), methods)
    task = str(view.get("task") or "study")
    check_audits(view, task)
    check_task_options(view, task)
    # what imports code: the plugins, then the classes the config names
    check_plugin_imports()
    for key in cfg:
        if key != "hydra":
            check_targets(cfg.get(key), f"config.{key}")
    if hydra_node is not None:
        check_targets(hydra_node, "hydra")
    check_method_sizes(methods)
    check_trainer(view.get("trainer"))
    check_dataset(view.get("dataset"))
    model_obj = check_model(view.get("model"))
    for where, mcfg in methods.items():
        check_method(where, mcfg, model_obj, view.get("model") or {})
    check_audit_arguments(view)


class _Resolver:
    """Resolved top-level nodes of a config. While Hydra is still composing, `${hydra:...}`
    cannot resolve yet: such a node is skipped (strict=False), to be checked again by the task."""

    def __init__(self, cfg: DictConfig, strict: bool) -> None:
        self.cfg, self.strict = cfg, strict

    def get(self, key: str) -> Any:
        try:
            node = OmegaConf.select(self.cfg, key, throw_on_missing=False)
            return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
        except OmegaConfBaseException as err:
            if self.strict:
                raise ConfigError(f"{key}: {str(err).splitlines()[0]}") from None
            return None


# -- plugins ---------------------------------------------------------------------------------
def check_plugin_entries() -> None:
    """The installed plugins' entry points and config files, before any of their code is asked for
    (plugins.problems, plugin_config_problems): the first problem, one line."""
    lines = plugins.problems() or plugin_config_problems(plugins.installed())
    if lines:
        raise ConfigError(lines[0])


def check_plugin_imports() -> None:
    """Every installed plugin imports (plugins.import_problems runs their code): the first failure, one line."""
    lines = plugins.import_problems()
    if lines:
        raise ConfigError(lines[0])


@functools.lru_cache(maxsize=None)
def plugin_config_problems(installed: tuple[plugins.Plugin, ...]) -> list[str]:
    """A plugin's config files may name `_target_`s in its own package, or what unlearnlab's own
    configs may name (its methods, torch.optim, …) — never another package, another plugin's included."""
    out = []
    for plugin in installed:
        if plugin.conf is None:
            continue
        for path in sorted(plugin.conf.rglob("*.yaml")):
            try:
                node = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
            except Exception as err:  # noqa: BLE001 - a file that does not parse is the plugin's to fix
                out.append(f"{plugin.label}: {path} does not parse ({str(err).splitlines()[0]}); fix the file")
                continue
            for target in _targets(node):
                if not isinstance(target, str) or target.startswith(plugin.package + "."):
                    continue
                builtin = next((r for r in RULES if target.startswith(r.prefix)), None)
                if builtin is None or target_problem(target) is not None:
                    rel = path.relative_to(plugin.conf.parent)
                    out.append(f"{plugin.label}: {plugin.package}/{rel} names _target_ {target}, outside its package "
                               f"{plugin.package}; a plugin's configs name its own classes (move the class into "
                               f"{plugin.package}, or make its package a plugin of its own)")
    return out


def _targets(node: Any):
    if isinstance(node, dict):
        if "_target_" in node:
            yield node["_target_"]
        for value in node.values():
            yield from _targets(value)
    elif isinstance(node, list):
        for value in node:
            yield from _targets(value)


# -- code ------------------------------------------------------------------------------------
def check_hydra(h: DictConfig, root: DictConfig | None = None) -> None:
    """Hydra's own nodes, which Hydra acts on before the app runs. ROOT: the whole composed config
    when Hydra is still composing it (its values are then resolved as Hydra will resolve them);
    None in a job, where H is Hydra's own copy and values that need the rest were checked at launch.
    What its `_target_`s resolve to is checked after, with the rest of the config's (check_config)."""
    check_targets(h, "hydra", imports=False)
    with _resolvable(h, root) as (resolved, run_dir):
        for part in ("hydra_logging", "job_logging"):
            node = resolved(f"{part}")
            _check_logging(node, f"hydra.{part}", run_dir)
        _check_launcher_shell(h, resolved("launcher"))
    env = h.job.get("env_set") if h.get("job") is not None else None
    for name in env or ():
        if not ENV_SET_ALLOWED.fullmatch(str(name)):
            raise ConfigError(
                f"hydra.job.env_set.{name} is refused: a config may set only thread counts, CUDA_VISIBLE_DEVICES "
                f"and WANDB_MODE/WANDB_SILENT; set {name} in your shell if you mean it"
            )
    if h.get("job") is not None and h.job.get("name") is not None:
        safe_name(h.job.name, "hydra.job.name")
    if h.get("output_subdir") is not None:
        safe_name(h.output_subdir, "hydra.output_subdir")


RUN_DIR = "/unlearnlab-run-folder"  # where the run's folder stands while Hydra composes (it knows it only later)


@contextmanager
def _resolvable(h: DictConfig, root: DictConfig | None):
    """(resolved(KEY) -> a node of H as a plain container, resolved; the run folder it resolves
    against). While composing (ROOT given), Hydra has not chosen the run's folder yet: the
    values are resolved with `hydra.runtime.output_dir` set to RUN_DIR for the while, `${hydra:...}`
    reading ROOT; a value that cannot be resolved is refused. In a job (ROOT
    None) they resolve against the real folder, and a value that needs the rest of the config
    (checked at launch) is skipped."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict, read_write

    if root is None:
        run_dir = OmegaConf.select(h, "runtime.output_dir", default=None, throw_on_missing=False)

        def lenient(key: str) -> Any:
            try:
                node = OmegaConf.select(h, key, throw_on_missing=False)
                return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
            except OmegaConfBaseException:
                return None

        yield lenient, run_dir
        return
    runtime = root.hydra.runtime
    saved_dir = OmegaConf.to_container(runtime, resolve=False).get("output_dir")  # "???" while composing
    instance = HydraConfig.instance()
    saved = instance.cfg

    def strict(key: str) -> Any:
        try:
            node = OmegaConf.select(root.hydra, key, throw_on_missing=False)
            return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
        except OmegaConfBaseException as err:
            raise ConfigError(f"hydra.{key}: {str(err).splitlines()[0]}") from None

    # in place, restored below (a copy of the whole config cost more than every other check)
    with read_write(runtime), open_dict(runtime):
        runtime.output_dir = RUN_DIR
    instance.cfg = root  # type: ignore[assignment]  # what `${hydra:...}` reads (HydraConfig.get() is cfg.hydra)
    try:
        yield strict, RUN_DIR
    finally:
        instance.cfg = saved  # type: ignore[assignment]
        with read_write(runtime), open_dict(runtime):
            runtime.output_dir = saved_dir


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _check_launcher_shell(h: DictConfig, resolved: Any) -> None:
    """submitit writes every launcher field into each job's sbatch script (`setup` lines run as
    shell commands, `srun_args` join srun's command line, the rest become `#SBATCH` lines): no
    value may hold a control character (a newline would start a command), checked after
    resolution; and the fields that are shell commands only from the user's own command line,
    never from a config file or preset."""
    launcher = h.get("launcher")
    if launcher is None or not str(launcher.get("_target_", "")).startswith("hydra_plugins.hydra_submitit_launcher."):
        return
    for where, text in _strings(resolved, "hydra.launcher"):
        if _CONTROL.search(text):
            raise ConfigError(
                f"{where}={text!r} holds a control character (a newline, tab, ...); submitit writes it into each "
                f"job's batch script, where a newline starts a new command: remove it"
            )
    typed = {str(o).split("=", 1)[0].lstrip("+~") for o in (h.get("overrides", {}).get("hydra") or [])}
    for key in SHELL_KEYS:
        if launcher.get(key) and f"hydra.launcher.{key}" not in typed:
            raise ConfigError(
                f"hydra.launcher.{key} is set by a config file, and submitit puts it into each job's batch script "
                f"(shell commands); give it on the command line (hydra.launcher.{key}=...) if you mean it"
            )


def _strings(node: Any, where: str):
    """(where, text) for every string in a plain container, dict keys included."""
    if isinstance(node, str):
        yield where, node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(str(key), f"{where} (key)")
            yield from _strings(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _strings(value, f"{where}[{i}]")


def _check_logging(node: Any, where: str, run_dir: str | None = None) -> None:
    """logging.config.dictConfig calls whatever a `()` or `class` key names and opens any file a
    handler names: only known classes, standard streams, and files in the run's output folder —
    checked on the values as Hydra hands them to dictConfig, after interpolation (two
    interpolations may spell `..`). RUN_DIR: the run folder they resolve against (None: unknown
    here, checked at launch)."""
    if isinstance(node, list):
        for i, v in enumerate(node):
            _check_logging(v, f"{where}[{i}]", run_dir)
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        here = f"{where}.{key}"
        if key == "()":
            raise ConfigError(
                f"{here}: logging factories ('()') are refused; use class: logging.StreamHandler or logging.FileHandler"
            )
        if key == "class" and value not in LOG_CLASSES:
            raise ConfigError(f"{here}={value} is refused; use one of {sorted(LOG_CLASSES)}")
        if isinstance(value, str) and value.startswith("ext://") and value not in LOG_STREAMS:
            raise ConfigError(f"{here}={value} is refused; use ext://sys.stdout or ext://sys.stderr")
        if key == "filename" and not (run_dir is None and value is None) and not _inside(value, run_dir):
            shown = str(value).replace(RUN_DIR, "${hydra.runtime.output_dir}")
            raise ConfigError(f"{here}={shown} is refused: job logs go in the run's folder, e.g. "
                              f"{here}=${{hydra.runtime.output_dir}}/${{hydra.job.name}}.log")
        _check_logging(value, here, run_dir)


def _inside(value: Any, run_dir: str | None) -> bool:
    """Whether VALUE, a resolved file name, lies inside RUN_DIR (after `..` and `.` are applied)."""
    if not isinstance(value, str) or run_dir is None:
        return False
    path = os.path.normpath(value)
    return os.path.isabs(path) and path.startswith(os.path.normpath(run_dir) + os.sep)


# -- schemas ---------------------------------------------------------------------------------
def check_schemas(cfg: DictConfig, hydra_node: Any = None) -> None:
    """dataset, split, recipe, trainer, logger, paths: each composed from an option file that
    extends its schema (unlearnlab.schemas), with its schema's keys only and a `kind` it is for.
    Hydra refuses other keys and wrong types while composing, but lets `+recipe.lrr=0.1` through
    (a `+` opens the node): refused here, because nothing would read the key, yet it would change
    every cell key. The trainer's extra keys are bound to lightning.Trainer by check_trainer."""
    choices = _choices(hydra_node)
    for group, known in schemas.SCHEMAS.items():
        node = cfg.get(group) if group in cfg else None
        if not isinstance(node, DictConfig):
            continue
        option = choices.get(group)
        if choices and option is None and group in TASK_OPTION_GROUPS:  # `+files.x=…` made it without its task
            task = TASK_OPTION_GROUPS[group]
            raise ConfigError(f"{group}.*: the options of task={task}, which this command does not run; "
                              f"add task={task} (conf/task/{task}.yaml)")
        where = f"{group}={option}" if option else group
        if option is not None and option in known:
            raise ConfigError(f"{where} is the {group} group's schema, not an option; pick one (unlearnlab --help lists them)")
        schema = OmegaConf.get_type(node)
        if not schemas.is_schema(schema):
            raise ConfigError(
                f"{where} extends no schema: start its file with `defaults: [schema, _self_]` "
                f"(the {group} schemas in unlearnlab.schemas: {', '.join(known)})"
            )
        if group not in schemas.OPEN_GROUPS:
            for key in node:
                if str(key) not in schemas.keys(schema):
                    raise unknown_key(group, str(key), schema, option)
        _check_kind(group, node, schema, where)


def _choices(hydra_node: Any) -> dict[str, str]:
    """The option each group was composed from (hydra.runtime.choices), where Hydra says."""
    try:
        choices = OmegaConf.select(hydra_node, "runtime.choices") if hydra_node is not None else None
        return {str(k): str(v) for k, v in (choices or {}).items() if v is not None}
    except OmegaConfBaseException:
        return {}


def _check_kind(group: str, node: DictConfig, schema: type, where: str) -> None:
    kinds = getattr(schema, "kinds", ())
    try:
        kind = node.get("kind")
    except OmegaConfBaseException:
        return  # an interpolation that does not resolve yet: the task's own check sees it
    if not kinds or kind is None or kind in kinds:
        return
    every = [k for s in schemas.SCHEMAS[group].values() for k in getattr(s, "kinds", ())]
    if kind in every:
        raise ConfigError(f"{group}.kind={kind} does not go with {where}, whose keys are for {' / '.join(kinds)}; "
                          f"use {group}={kind} instead")
    raise ConfigError(f"{group}.kind={kind} is not a {group} kind; use one of {', '.join(every)}")


def unknown_key(group: str, key: str, schema: type, option: str | None = None) -> ConfigError:
    """GROUP.KEY is not a key of SCHEMA: the close key, or the option that has it, or the way to add one."""
    allowed = schemas.keys(schema)
    where = f"{group}={option} takes" if option else f"{group} keys here:"
    elsewhere = schemas.options_with(group, key)
    close = difflib.get_close_matches(key, allowed, n=1)
    if elsewhere:
        fix = f"{' / '.join(elsewhere)} {'has' if len(elsewhere) == 1 else 'have'} it: use {elsewhere[0]}"
    elif close:
        fix = f"did you mean {group}.{close[0]}?"
    else:
        fix = (f"`+` cannot add one (nothing would read it): a new {group} key needs a field in "
               f"unlearnlab.schemas.{schema.__name__} and code that reads it")
    return ConfigError(f"{group}.{key} is not a {group} key; {fix} ({where} {', '.join(allowed)})")


_EXPECTED = (  # OmegaConf's validation message -> what the value must be
    ("converted to Integer", "a whole number"),
    ("converted to Float", "a number"),
    ("not a valid bool", "true or false"),
    ("cannot be assigned None", "set (not null)"),
    ("is not Optional", "set (not null)"),
)


def composition_error(err: BaseException) -> ConfigError | None:
    """Hydra's error for a key a schema does not have or a value of the wrong type (while
    composing: from the command line or an option file) as one line naming the fix; None for
    any other composition error, left as Hydra words it."""
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

    if (line := _task_option_without_its_task(err)) is not None:
        return line
    cause = err
    while cause is not None and not isinstance(cause, OmegaConfBaseException):
        cause = cause.__cause__ or cause.__context__
    if cause is None or not getattr(cause, "full_key", None):
        return None
    text = str(err)
    in_file = re.match(r"In '([^']+)': ", text)
    prefix = f"{in_file.group(1)}: " if in_file else ""
    full_key = str(cause.full_key)
    group = re.split(r"[.\[]", full_key, maxsplit=1)[0]
    if group not in schemas.SCHEMAS:
        return _unknown_key_outside_schemas(cause, full_key, prefix)
    schema = cause.object_type if schemas.is_schema(cause.object_type) else None
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and full_key.startswith("files.methods."):
        add = re.search(r"use (\+\S+)", text)  # task=audit_files: the method names are the user's
        return ConfigError(f"{prefix}{full_key}: a method folder is a new key; add it with a plus: "
                           f"{add.group(1) if add else f'+{full_key}=DIR'}")
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and schema is not None:
        key = str(cause.key)
        if group in schemas.OPEN_GROUPS:
            try:
                check_trainer({key: None})
            except ConfigError as bad:
                return ConfigError(f"{prefix}{bad}")
            add = re.search(r"use (\+\S+)$", text)
            return ConfigError(f"{prefix}{group}.{key} is a lightning.Trainer argument that "
                               f"unlearnlab.schemas.{schema.__name__} does not list; add it with "
                               f"{add.group(1) if add else f'+{group}.{key}=VALUE'}")
        return ConfigError(f"{prefix}{unknown_key(group, key, schema)}")
    if isinstance(cause, ValidationError):
        message = str(getattr(cause, "msg", "") or cause).splitlines()[0]
        what = next((w for pattern, w in _EXPECTED if pattern in message), None)
        value = _shown(cause.value)
        if what is None:
            return ConfigError(f"{prefix}{full_key}={value}: {message}")
        field_name = re.split(r"[.\[]", full_key)[1] if "." in full_key else ""
        example = schemas.example(group, field_name)
        hint = f", e.g. {group}.{field_name}={example}" if example is not None else ""
        return ConfigError(f"{prefix}{full_key}={value} must be {what}{hint}")
    return None


def _task_option_without_its_task(err: BaseException) -> ConfigError | None:
    """`bench=tiny`, `files.labels=…` without the task whose options they are: another task's
    config has no such group in its defaults list, nor such a node."""
    text = str(err)
    given = re.match(r"(?:In '[^']+': )?Could not override '([\w.]+)'", text)
    group = given.group(1).split(".")[0] if given else None
    if group not in TASK_OPTION_GROUPS:
        return None
    causes, cause = [], err.__cause__ or err.__context__
    while cause is not None:
        causes.append(cause)
        cause = cause.__cause__ or cause.__context__
    node_missing = any(str(getattr(c, "full_key", "")) == group for c in causes)
    if "No match in the defaults list" not in text and not node_missing:
        return None
    task = TASK_OPTION_GROUPS[group]
    return ConfigError(f"{given.group(1)}: {group}.* are the options of task={task}, which this command does not "
                       f"run; add task={task} (conf/task/{task}.yaml)")


def _unknown_key_outside_schemas(cause: OmegaConfBaseException, full_key: str, prefix: str) -> ConfigError | None:
    """`model.widht=8`, `n_model=3`, `methods.scrub.lr=…` without scrub in the study: a key that is
    not there, outside the schema-checked groups, in one line (a `+` adds it, bound to a signature)."""
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    parent = getattr(cause, "parent_node", None)
    if not isinstance(cause, (ConfigAttributeError, ConfigKeyError)) or not isinstance(parent, DictConfig):
        return None
    key, where = str(cause.key), full_key.rpartition(".")[0]
    accepted = [str(k) for k in parent.keys() if k != "hydra"]
    if where == "methods":
        return ConfigError(f"{prefix}{full_key}: {key} is not a method of this study ({', '.join(accepted)}); "
                           f"add it: method=[{','.join([*accepted, key])}]")
    if not where:
        close = difflib.get_close_matches(key, accepted, n=1)
        return ConfigError(f"{prefix}{key} is not a config key" + (f"; did you mean {close[0]}?" if close else ""))
    return ConfigError(f"{prefix}{full_key} is not a config key{_did_you_mean(where, key, accepted)} "
                       f"(an argument the config lacks: +{full_key}=VALUE)")


def check_missing(cfg: DictConfig) -> None:
    """A `???` value nobody set (e.g. split.path of split=index_file); nothing is resolved."""
    missing = [k for k in _missing(cfg, "") if not k.startswith("hydra.")]
    if missing:
        raise ConfigError(f"{missing[0]} has no value (???); set it, e.g. {missing[0]}=VALUE")


def _missing(node: Any, prefix: str) -> list[str]:
    if not isinstance(node, DictConfig):
        return []
    out = []
    for key in node:
        if OmegaConf.is_missing(node, key):
            out.append(f"{prefix}{key}")
        elif not OmegaConf.is_interpolation(node, key):
            out += _missing(node._get_node(key), f"{prefix}{key}.")
    return out


# -- paths and names -------------------------------------------------------------------------
def check_paths(view: _Resolver) -> None:
    """paths.root/data/store set (an empty one would put files in the current or top folder),
    paths.store not a file."""
    if not isinstance(view.cfg.get("paths"), DictConfig):
        return
    raw = OmegaConf.to_container(view.cfg.paths, resolve=False)
    for key in ("root", "data", "store"):
        if key not in raw:
            continue
        value = view.get(f"paths.{key}")  # None while Hydra is composing and it needs ${hydra:...}
        if raw[key] is None or not str(raw[key]).strip() or (value is not None and not str(value).strip()):
            hint = " (or UNLEARNLAB_ROOT)" if key == "root" else ""
            raise ConfigError(f"paths.{key} is empty; set paths.{key}=DIR{hint}")
        if key == "store" and value is not None:
            check_root(value)
    timeout = _number(raw.get("lock_timeout"))
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                or not timeout > 0 or not math.isfinite(timeout)):
        raise ConfigError(f"paths.lock_timeout={timeout} must be a number of seconds > 0, or null (wait as long as it takes)")


def check_names(cfg: DictConfig, view: _Resolver) -> None:
    """Config values that become folder or file names (store, runs, logger folders, labels)."""
    for name, mcfg in (view.get("methods") or {}).items():
        safe_name(name, f"methods.{name}")
        if isinstance(mcfg, dict) and "name" in mcfg:
            safe_name(mcfg["name"], f"methods.{name}.name")
            if str(mcfg["name"]) != str(name):
                raise ConfigError(f"methods.{name}.name={mcfg['name']} differs from the option's name {name}: a method "
                                  f"is named by its config file (conf/method/{name}.yaml); set name: {name} or leave "
                                  f"it out")
    for name in view.get("audit") or {}:
        safe_name(name, f"audit.{name}")
    study = view.get("study_name")
    if study is not None:
        safe_name(study, "study_name")


def check_objective(objective: Any, methods: dict[str, Any]) -> None:
    """The method a hyperparameter search maximises must be in the study."""
    if objective is not None and f"methods.{objective}" not in methods:
        names = ",".join(w.split(".", 1)[1] for w in methods)
        raise ConfigError(f"objective={objective} is not a method of this study; add it: method=[{names},{objective}]")


# -- sizes -----------------------------------------------------------------------------------
def _number(value: Any) -> Any:
    """'0.5' and 0.5 alike, as the store's keys see them."""
    from unlearnlab.store import normalise

    return normalise(value)


def check_sizes(view: _Resolver) -> None:
    """n_models, workers, and the recipe's epochs, batch sizes, learning rates and weight decay
    (every method's: check_method_sizes): the one place these are range-checked."""
    n = _number(view.get("n_models"))
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 2):
        raise ConfigError(
            f"n_models={view.get('n_models')} must be a whole number ≥ 2: the audit compares two samples of models"
        )
    workers = view.get("workers")
    if workers is not None and str(workers) != "auto" and (isinstance(workers, bool) or not isinstance(workers, int)
                                                          or workers < 1):
        raise ConfigError(f"workers={workers} must be auto or a whole number ≥ 1, e.g. workers=auto")
    check_hyperparameters(view.get("recipe"), "recipe")


def check_method_sizes(methods: dict[str, dict[str, Any]]) -> None:
    """Every method's epochs, batch sizes, learning rates and weight decay (METHODS: method_configs);
    its class is imported for the arguments it annotates as float."""
    for where, mcfg in methods.items():
        target = mcfg.get("_target_")
        fractional = float_arguments(target_object(target, f"config.{where}")) if isinstance(target, str) else set()
        check_hyperparameters(mcfg, where, fractional)


def float_arguments(obj: Any) -> set[str]:
    """Arguments an __init__ annotates as float (e.g. PruneReinit's `epochs: float = 3.2`, a
    fractional epoch budget as its source has): epochs there need not be whole."""
    found: dict[str, bool] = {}
    for klass in getattr(obj, "__mro__", ()):
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        for p in list(inspect.signature(init).parameters.values())[1:]:
            if p.name not in found and p.annotation is not p.empty:
                found[p.name] = "float" in str(p.annotation)
    return {name for name, is_float in found.items() if is_float}


def check_hyperparameters(node: Any, where: str, fractional: set[str] = frozenset()) -> None:
    """Learning rates finite ≥ 0, epochs whole ≥ 0, batch sizes whole ≥ 1, weight decay ≥ 0
    (keys `lr`/`*_lr`, `epochs`/`*_epochs`, `batch_size`/`*_batch_size`, `weight_decay`; each
    item of a list, e.g. `cycle_epochs: [1, 2, 2]`). None means the method's own default; keys
    in FRACTIONAL (annotated float by the class) may be fractional."""
    if not isinstance(node, dict):
        return
    for key, raw in node.items():
        items = enumerate(raw) if isinstance(raw, list) else [(None, raw)]
        for i, item in items:
            _check_number(str(key), item, f"{where}.{key}" + ("" if i is None else f"[{i}]"), key in fractional)


def _check_number(key: str, raw: Any, name: str, fractional: bool = False) -> None:
    # shown as the keys see it: a schema's float field turns `recipe.weight_decay=-1` into -1.0
    value = _number(raw)
    if value is None or key.startswith("_"):
        return
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    whole = (isinstance(value, int) and not isinstance(value, bool)) or (fractional and numeric)
    if key == "lr" or key.endswith("_lr") or key == "weight_decay":
        if not numeric or not (value >= 0 and math.isfinite(value)):
            raise ConfigError(f"{name}={_shown(value)} must be a finite number ≥ 0, e.g. {name}=0.01")
    elif key == "epochs" or key.endswith("_epochs"):
        if not (whole and value >= 0):
            raise ConfigError(f"{name}={_shown(value)} must be ≥ 0" + ("" if whole else ", a whole number"))
    elif key == "batch_size" or key.endswith("_batch_size"):
        if not (whole and value >= 1):
            raise ConfigError(f"{name}={_shown(value)} must be ≥ 1" + ("" if whole else ", a whole number"))


def _shown(value: Any) -> str:
    """VALUE as it is typed on the command line (true, null)."""
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def method_configs(view: _Resolver) -> dict[str, dict[str, Any]]:
    """The study's methods (plan.selected_methods) by where each sits (`methods.NAME`), resolved."""
    from unlearnlab.plan import selected_methods

    out: dict[str, dict[str, Any]] = {}
    for name in selected_methods(view.cfg):
        where = f"methods.{name}"
        mcfg = view.get(where)
        if isinstance(mcfg, dict):
            out[where] = mcfg
    return out


# -- Lightning -------------------------------------------------------------------------------
def check_trainer(trainer: Any) -> None:
    """Every key a lightning.Trainer argument (not one each fit sets), precision one Lightning takes."""
    if not isinstance(trainer, dict):
        return
    import lightning

    accepted = [p for p in inspect.signature(lightning.Trainer.__init__).parameters if p != "self"]
    for key in trainer:
        if key in TRAINER_SET_PER_FIT:
            raise ConfigError(
                f"trainer.{key} is set by each fit (epochs from recipe/method, the logger from logger=); remove it"
            )
        if key not in accepted:
            raise ConfigError(
                f"trainer.{key} is not a lightning.Trainer argument{_did_you_mean('trainer', key, accepted)}"
                f" (see lightning.Trainer's arguments)"
            )
    if "precision" in trainer:
        from lightning.fabric.connector import _convert_precision_to_unified_args

        try:
            _convert_precision_to_unified_args(trainer["precision"])
        except (ValueError, TypeError) as err:
            raise ConfigError(f"trainer.precision={trainer['precision']} is not a Lightning precision: {err}") from None


def _did_you_mean(where: str, key: str, accepted: list[str]) -> str:
    close = difflib.get_close_matches(key, accepted, n=1)
    if close:
        return f"; did you mean {where}.{close[0]}?"
    return f"; it takes {', '.join(sorted(accepted))}" if len(accepted) <= 12 else ""


# -- arguments bound to signatures -----------------------------------------------------------
def accepted_arguments(obj: Callable) -> tuple[list[str], list[str], bool]:
    """(argument names, required names, accepts any keyword) of a class or function, following
    `**kwargs` that an __init__ passes on to its base class."""
    if not isinstance(obj, type):
        params = list(inspect.signature(obj).parameters.values())
        return _names(params), _required(params), any(p.kind is p.VAR_KEYWORD for p in params)
    names: list[str] = []
    required: list[str] | None = None
    for klass in obj.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        params = list(inspect.signature(init).parameters.values())[1:]
        names += [n for n in _names(params) if n not in names]
        required = _required(params) if required is None else required
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return names, required, False
    return names, required or [], klass is not object


def _names(params) -> list[str]:
    return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def _required(params) -> list[str]:
    return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.default is p.empty]


def bind_arguments(obj: Callable, given: dict[str, Any], injected: tuple[str, ...], where: str) -> None:
    """Refuse a config key that OBJ does not take, or a required argument nobody gives."""
    names, required, open_ = accepted_arguments(obj)
    own = [n for n in names if n not in injected]
    label = f"{obj.__module__}.{obj.__qualname__}"
    for key in given:
        if key in injected:
            raise ConfigError(f"{where}.{key} is given by the framework, not the config; remove it")
        if key not in names and not open_:
            raise ConfigError(f"{where}.{key} is not an argument of {label}{_did_you_mean(where, key, own)}")
    for key in required:
        if key not in given and key not in injected:
            raise ConfigError(f"{where}.{key} is required by {label}; add {where}.{key}=VALUE")


def _arguments(node: dict[str, Any], framework: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in node.items() if k not in framework and not k.startswith("_")}


def check_dataset(dataset: Any) -> None:
    """A dataset whose loader the config names (`dataset=` with `_target_`, a plugin's source):
    the loader allowed, its `options` bound to its signature (root and download are given)."""
    if not isinstance(dataset, dict) or "_target_" not in dataset:
        return
    obj = target_object(dataset["_target_"], "config.dataset")
    bind_arguments(obj, dict(dataset.get("options") or {}), ("root", "download"), "dataset.options")


def check_model(model: Any) -> Any:
    """The model's class (or builder), its arguments bound to it. None when there is no model node."""
    if not isinstance(model, dict) or "_target_" not in model:
        return None
    obj = target_object(model["_target_"], "config.model")
    bind_arguments(obj, _arguments(model, MODEL_FRAMEWORK_KEYS), ("in_channels", "num_classes", "image_size"), "model")
    return obj


def check_method(where: str, method: dict[str, Any], model_obj: Any, model: dict[str, Any]) -> None:
    """A method's arguments bound to its class, its declared reads, and the models it applies to."""
    if "_target_" not in method:
        raise ConfigError(f"{where} names no class; add {where}._target_=unlearnlab.methods.MODULE.CLASS")
    cls = target_object(method["_target_"], f"config.{where}")
    bind_arguments(cls, _arguments(method, METHOD_FRAMEWORK_KEYS), ("model", "data"), where)
    cls.check_reads()
    if model_obj is not None:
        check_applies(cls, model_obj, str(method.get("name", where)), str(model.get("name", "?")))


def method_model_kinds(cls: type) -> frozenset[str] | None:
    """The model kinds a method class applies to (None: any), from `model_kinds` on the class."""
    for klass in cls.__mro__:
        if "model_kinds" in klass.__dict__:
            kinds = klass.__dict__["model_kinds"]
            return None if kinds is None else frozenset(kinds)
    return None


def model_kind(obj: Any) -> str:
    """A model class's (or builder's) kind: its `model_kind`, or "network"."""
    for klass in getattr(obj, "__mro__", (obj,)):
        if "model_kind" in getattr(klass, "__dict__", {}):
            return str(klass.__dict__["model_kind"])
    return DEFAULT_MODEL_KIND


def kind_overrides(kinds: frozenset[str] | None) -> list[str]:
    """The overrides that give a study a model of one of KINDS: [] for networks (the default model),
    `model=logreg recipe=exact` for the certified methods' logistic regression."""
    if kinds is None or DEFAULT_MODEL_KIND in kinds:
        return []
    return ["model=logreg", "recipe=exact"] if "logreg" in kinds else []


def check_applies(cls: type, model_obj: Any, method_name: str, model_name: str) -> None:
    """A method that cannot apply to this model says so now, instead of failing after training
    or running as a no-op."""
    kinds, kind = method_model_kinds(cls), model_kind(model_obj)
    if kinds is not None and kind not in kinds:
        want = " or ".join(sorted(kinds))
        hint = " ".join(kind_overrides(kinds)) if kind_overrides(kinds) else f"a {want} model (e.g. model=small_cnn)"
        raise ConfigError(
            f"method {method_name} ({cls.__name__}) applies to {want} models, but model={model_name} is a "
            f"{kind} model; use {hint}, or a method for {kind} models"
        )


def check_audits(view: _Resolver, task: str) -> None:
    """At least one audit for a task that audits, each naming its class (bound to it: check_audit_arguments)."""
    audits = view.get("audit") or {}
    if not audits and task in AUDITING_TASKS:
        raise ConfigError(
            "no audit selected (audit is empty), so the cells would train and nothing would measure them; "
            "pick at least one, e.g. audit=[competition]"
        )
    for name, acfg in audits.items():
        if not isinstance(acfg, dict) or "_target_" not in acfg:
            raise ConfigError(f"audit.{name} names no class; add audit.{name}._target_=unlearnlab.audits.MODULE.CLASS")


def check_audit_arguments(view: _Resolver) -> None:
    """Each audit's arguments bound to its class (check_audits first: each names one)."""
    for name, acfg in (view.get("audit") or {}).items():
        obj = target_object(acfg["_target_"], f"config.audit.{name}")
        bind_arguments(obj, _arguments(acfg, ()), (), f"audit.{name}")


# -- task options ----------------------------------------------------------------------------
def check_task_options(view: _Resolver, task: str) -> None:
    """What the chosen task needs from its option group (composed with it only: conf/task/NAME.yaml)."""
    if task == "audit_files":
        files = view.get("files") or {}
        if not files.get("labels"):
            raise ConfigError("task=audit_files needs files.labels=PATH: a labels.npz with the integer labels "
                              "of forget and test (task=logits writes one)")
        if not files.get("reference"):
            raise ConfigError("task=audit_files needs files.reference=DIR: the folder of the reference (retrained) "
                              "models' .npz logits")
        if not files.get("methods"):
            raise ConfigError("task=audit_files needs at least one method folder: +files.methods.NAME=DIR "
                              "(the folder of that method's unlearned models' .npz logits)")
        for name in files["methods"]:
            safe_name(name, f"files.methods.{name}")
        if files.get("name") is not None:
            safe_name(files["name"], "files.name")
    elif task == "logits":
        logits = view.get("logits") or {}
        for key, what in (("checkpoints", "the folder of state dicts (*.safetensors, *.pt, *.pth)"),
                          ("out", "the folder to write NAME.npz per checkpoint and labels.npz into")):
            if not logits.get(key):
                raise ConfigError(f"task=logits needs logits.{key}=DIR: {what}")
        size = _number(logits.get("batch_size"))
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigError(f"logits.batch_size={logits.get('batch_size')} must be a whole number ≥ 1")
    elif task == "export":
        check_export(view.get("export") or {}, (view.get("logger") or {}).get("kind"))
    elif task == "import":
        options = view.get("import") or {}
        path, artifact = options.get("path"), options.get("artifact")
        if bool(path) == bool(artifact):
            raise ConfigError("task=import needs one of import.path=FILE (a bundle task=export wrote) or "
                              "import.artifact=ENTITY/PROJECT/NAME:VERSION (one logged with export.wandb=true)"
                              + (", not both" if path else ""))
        if artifact and not ARTIFACT_NAME.fullmatch(str(artifact)):
            raise ConfigError(f"import.artifact={artifact} is not a W&B artifact name; write it as "
                              f"ENTITY/PROJECT/NAME:VERSION, e.g. import.artifact=my-team/unlearnlab/cells-digits:v0")


def check_export(export: dict[str, Any], logger_kind: Any) -> None:
    if not export.get("path"):
        raise ConfigError("task=export needs export.path=FILE: the bundle to write (e.g. export.path=cells.tar)")
    kinds = list(export.get("kinds") or [])
    if not kinds:
        raise ConfigError(f"export.kinds is empty; name the cells to export, e.g. export.kinds=[{','.join(CELL_KINDS)}]")
    for kind in kinds:
        if kind not in CELL_KINDS:
            raise ConfigError(f"export.kinds: {kind} is not a kind of cell; use some of {', '.join(CELL_KINDS)}")
    if len(set(kinds)) != len(kinds):
        raise ConfigError(f"export.kinds={kinds} names a kind twice; name each once")
    if export.get("wandb") and logger_kind != "wandb":
        raise ConfigError("export.wandb=true logs the bundle through W&B: add logger=wandb (its project and entity "
                          "say where the artifact goes)")
