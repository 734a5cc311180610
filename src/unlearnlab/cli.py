"""The `unlearnlab` command: compose the Hydra config, check it, run one task. Thin on purpose.

Three things happen around Hydra:

- the config groups' schemas (unlearnlab.schemas), which conf/*/*.yaml extend, are registered
  in Hydra's ConfigStore when this module is imported (cheap: no torch);
- every config Hydra composes (the run's, a multirun's, each sweep job's, and those composed
  in-process by Hydra's compose API) goes through `checks.check_config` before Hydra acts on
  it: before it configures logging from it, instantiates its callbacks, launcher or sweeper, or
  starts the task. Hydra has no hook for that, so `install_config_check` wraps its config
  loader (hydra_internals.install_load_hook: hydra-core is pinned, tests/test_hydra_internals.py
  would notice a change).
  The same wrapper turns Hydra's own refusal of a key a schema lacks or a value of the wrong
  type (`recipe.lrr=0.1`, `logger.cell_runs=maybe`) into one line (checks.composition_error).
  Neither Hydra's errors nor the checks that need no class (an unknown option, a schema's key, a
  package no plugin registered, a preset's log file) import torch: such a mistake fails in about
  a second (tests/test_fast_errors.py);
- errors that are the user's to fix print as one line, `error: ...`, exit status 2 (see
  ONE_LINE_ERRORS); anything else is a bug and keeps its traceback;
- SIGTERM / SIGINT end the run with one line saying where it stopped, exit 128 + the signal
  (unlearnlab.interrupts: Lightning alone turned SIGTERM during a fit into exit 0).
"""

from __future__ import annotations

import os
import sys

import hydra
from omegaconf import DictConfig

from unlearnlab import interrupts, schemas
from unlearnlab.plugins import config_dir
from unlearnlab.errors import ConfigError
from unlearnlab.interrupts import Interrupted

schemas.register()  # before @hydra.main composes anything, here and in every process that imports the app


def one_line_errors() -> tuple[type[BaseException], ...]:
    """Exception types whose message is the whole story for the user:

    - ConfigError (StoreWriteError, LockTimeoutError included): bad input or a refusing disk;
    - DivergedError: the loss became NaN/inf (names class, phase, epoch; the fix is the lr);
    - CorruptEntryError: a damaged store entry (names the entry and task=verify);
    - FileNotFoundError: a file or folder the config names is not there;
    - Lightning's MisconfigurationException: Lightning refusing a Trainer setting;
    - OmegaConf's MissingMandatoryValue: a `???` value left unset;
    - DataAccessError: a method read a data part it does not declare (names the method and the
      part to declare; nothing is stored for that cell).
    A plain ValueError/TypeError/RuntimeError stays a traceback: it may be a bug.
    """
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from omegaconf.errors import MissingMandatoryValue

    from unlearnlab.methods.base import DataAccessError
    from unlearnlab.store import CorruptEntryError
    from unlearnlab.training import DivergedError

    return (ConfigError, DivergedError, CorruptEntryError, FileNotFoundError, MisconfigurationException,
            MissingMandatoryValue, DataAccessError)


def fail(err: BaseException) -> None:
    print(f"error: {err}", file=sys.stderr, flush=True)
    sys.exit(2)


def stopped(err: Interrupted, process_ends: bool = False) -> None:
    """A run ended by SIGTERM/SIGINT: one line saying where, exit 128 + the signal (never 0).
    PROCESS_ENDS: end the process itself (a pool worker would otherwise catch the exit and idle on)."""
    print(f"error: {err}", file=sys.stderr, flush=True)
    if process_ends:
        sys.stdout.flush()
        os._exit(err.exit_code)
    sys.exit(err.exit_code)


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")
def app(cfg: DictConfig) -> float | None:
    from unlearnlab.tasks import run_task

    interrupts.install()  # also in each sweep job's process (joblib, submitit), where main() never ran
    pool_worker = _in_pool_worker()
    if pool_worker:
        interrupts.exit_with_parent()
    try:
        return run_task(cfg)
    except one_line_errors() as err:
        fail(err)
    except Interrupted as err:
        stopped(err, process_ends=pool_worker)
    return None


def _in_pool_worker() -> bool:
    """Whether this is a sweep job in a joblib (hydra/launcher=pool) worker process."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return False
    h = HydraConfig.get()
    return h.mode == RunMode.MULTIRUN and "joblib" in str(h.launcher.get("_target_", ""))


def install_config_check() -> None:
    """Check every config Hydra composes (with its `hydra` node) before Hydra uses it."""
    from unlearnlab.hydra_internals import install_load_hook

    install_load_hook(_checked_load)


def _checked_load(loader, load, from_shell: bool):
    from hydra.errors import ConfigCompositionException

    try:
        try:
            cfg = load()
        except ConfigCompositionException as err:
            from unlearnlab.checks import composition_error

            line = composition_error(err)  # a schema's refusal; anything else as Hydra words it
            if line is None:
                raise
            raise line from None
        from unlearnlab.checks import check_config  # after Hydra composed: its own errors import nothing more

        check_config(cfg)
    except ConfigError as err:
        # the command line (and each sweep job's config): one line, exit 2. Hydra's compose
        # API (from_shell=False: an audit or plan composed in-process) gets the exception.
        if from_shell:
            fail(err)
        raise
    return cfg


def _flags(argv: list[str]) -> object | None:
    from unlearnlab.hydra_internals import args_parser

    try:
        args, _ = args_parser().parse_known_args(argv)
    except SystemExit:
        return None  # Hydra reports the bad arguments itself
    return args


def _inspecting(argv: list[str]) -> bool:
    """--cfg/--help/--info/--shell-completion show a config, they do not run it: no checks."""
    args = _flags(argv)
    return args is None or bool(args.cfg or args.help or args.hydra_help or args.info or args.shell_completion)


def plugins_help() -> str:
    """`--help`'s last section: the installed plugins and what each adds (found without importing them)."""
    from unlearnlab.plugins import ENTRY_POINT_GROUP, describe

    lines = describe()
    if not lines:
        return (f"== Plugins ==\nnone installed (a package joins with an entry point in group {ENTRY_POINT_GROUP}; "
                f"README, \"Bring your own method\")")
    return "== Plugins ==\n" + "\n".join(lines)


def main() -> None:
    interrupts.install()
    argv = sys.argv[1:]
    if not _inspecting(argv):
        install_config_check()
    args = _flags(argv)
    try:
        app()
    except Interrupted as err:  # a sweep's launching process: waiting for its jobs, or its end-of-sweep audit
        stopped(err)
    finally:
        if args is not None and args.help:
            print(plugins_help(), flush=True)


if __name__ == "__main__":
    main()
