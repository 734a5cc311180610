"""The `unlearnlab` command: compose the Hydra config, check it, run one task. Thin on purpose.

Three things happen around Hydra:

- the config groups' schemas (unlearnlab.schemas), which conf/*/*.yaml extend, are registered
  in Hydra's ConfigStore when this module is imported (cheap: no torch);
- every config Hydra composes (the run's, a multirun's, each sweep job's, and those composed
  in-process by Hydra's compose API) goes through `checks.check_config` before Hydra acts on
  it: before it configures logging from it, instantiates its callbacks, launcher or sweeper, or
  starts the task. Hydra has no hook for that, so `install_config_check` wraps its config
  loader's `load_configuration` (hydra-core is pinned; tests/test_security.py would notice).
  The same wrapper turns Hydra's own refusal of a key a schema lacks or a value of the wrong
  type (`recipe.lrr=0.1`, `logger.cell_runs=maybe`) into one line (checks.composition_error);
- errors that are the user's to fix print as one line, `error: ...`, exit status 2 (see
  ONE_LINE_ERRORS); anything else is a bug and keeps its traceback;
- SIGTERM / SIGINT end the run with one line saying where it stopped, exit 128 + the signal
  (unlearnlab.interrupts: Lightning alone turned SIGTERM during a fit into exit 0).
"""

from __future__ import annotations

import functools
import inspect
import os
import sys

import hydra
from omegaconf import DictConfig

from unlearnlab import config_dir, interrupts, schemas
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
    - OmegaConf's MissingMandatoryValue: a `???` value left unset.
    A plain ValueError/TypeError/RuntimeError stays a traceback: it may be a bug.
    """
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from omegaconf.errors import MissingMandatoryValue

    from unlearnlab.store import CorruptEntryError
    from unlearnlab.training import DivergedError

    return (ConfigError, DivergedError, CorruptEntryError, FileNotFoundError, MisconfigurationException,
            MissingMandatoryValue)


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
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    load = ConfigLoaderImpl.load_configuration
    if getattr(load, "_unlearnlab_checked", False):
        return
    signature = inspect.signature(load)

    @functools.wraps(load)
    def checked(self, *args, **kwargs):
        from hydra.errors import ConfigCompositionException

        from unlearnlab.checks import check_config, composition_error

        try:
            try:
                cfg = load(self, *args, **kwargs)
            except ConfigCompositionException as err:
                line = composition_error(err)  # a schema's refusal; anything else as Hydra words it
                if line is None:
                    raise
                raise line from None
            check_config(cfg)
        except ConfigError as err:
            # the command line (and each sweep job's config): one line, exit 2. Hydra's compose
            # API (from_shell=False: an audit or plan composed in-process) gets the exception.
            if signature.bind(self, *args, **kwargs).arguments.get("from_shell", True):
                fail(err)
            raise
        return cfg

    checked._unlearnlab_checked = True  # type: ignore[attr-defined]
    ConfigLoaderImpl.load_configuration = checked  # type: ignore[method-assign]


def _inspecting(argv: list[str]) -> bool:
    """--cfg/--help/--info/--shell-completion show a config, they do not run it: no checks."""
    from hydra._internal.utils import get_args_parser

    try:
        args, _ = get_args_parser().parse_known_args(argv)
    except SystemExit:
        return True  # Hydra reports the bad arguments itself
    return bool(args.cfg or args.help or args.hydra_help or args.info or args.shell_completion)


def main() -> None:
    interrupts.install()
    if not _inspecting(sys.argv[1:]):
        install_config_check()
    try:
        app()
    except Interrupted as err:  # a sweep's launching process: waiting for its jobs, or its end-of-sweep audit
        stopped(err)


if __name__ == "__main__":
    main()
