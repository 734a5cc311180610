"""Every use of Hydra's private `hydra._internal` API, in one place.

Hydra's public API covers most of what unlearnlab needs: composing (`hydra.compose`), the config
search path (a `SearchPathPlugin`, src/hydra_plugins/unlearnlab_plugins.py), callbacks,
launchers. Four things it does not offer, used here:

- `locate(path)`: resolve a dotted name the way `hydra.utils.instantiate` resolves a `_target_`
  (`hydra._internal.utils._locate`), so the allowlist (registry.py) judges exactly the object
  Hydra would build. `hydra.utils.get_object` wraps the same function but logs an error line for
  every name that does not resolve, which the allowlist asks about on purpose;
- `install_load_hook(hook)`: a hook on every config Hydra composes, before Hydra acts on it
  (configures logging, instantiates callbacks, a launcher or a sweeper): Hydra has none, so the
  config loader's `ConfigLoaderImpl.load_configuration` is wrapped (cli.py's start-up checks);
- `args_parser()`: Hydra's own command-line parser (`hydra._internal.utils.get_args_parser`), to
  tell `--help`/`--cfg` (which show a config) from a run;
- `split_sweep(overrides)`: the jobs a multirun's overrides expand to, as Hydra's BasicSweeper
  expands them (`BasicSweeper.split_arguments`), for the end-of-sweep audit and `-m task=plan`.

hydra-core is pinned (pyproject.toml). tests/test_hydra_internals.py checks that each of these
still exists with the shape relied on here, and names the installed Hydra version when one does
not: an upgrade that changes them fails there first, not in a user's run.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable

# The prefix of Hydra's own launcher and sweeper classes: Hydra's default config names them
# (`hydra._internal.core_plugins.basic_launcher.BasicLauncher`), so the allowlist must accept them.
CORE_PLUGINS = "hydra._internal.core_plugins."

HOOKED = "_unlearnlab_checked"


def hydra_version() -> str:
    import hydra

    return str(hydra.__version__)


def locate(path: str) -> Any:
    """The object a `_target_` names, resolved exactly as hydra.utils.instantiate resolves it."""
    from hydra._internal.utils import _locate

    return _locate(path)


def loader_class() -> type:
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    return ConfigLoaderImpl


def install_load_hook(hook: Callable[[Any, Callable[[], Any], bool], Any]) -> None:
    """Wrap Hydra's config loader once: HOOK(loader, load, from_shell) is called for every config
    Hydra composes, where `load()` composes it and `from_shell` says whether it came from the
    command line (False for the compose API). Idempotent."""
    cls = loader_class()
    load = cls.load_configuration
    if getattr(load, HOOKED, False):
        return
    signature = inspect.signature(load)

    @functools.wraps(load)
    def hooked(self, *args, **kwargs):
        from_shell = bool(signature.bind(self, *args, **kwargs).arguments.get("from_shell", True))
        return hook(self, lambda: load(self, *args, **kwargs), from_shell)

    setattr(hooked, HOOKED, True)
    cls.load_configuration = hooked  # type: ignore[method-assign]


def load_hook_installed() -> bool:
    return bool(getattr(loader_class().load_configuration, HOOKED, False))


def saved_loader() -> Any:
    """The loader's current `load_configuration`, to put back with `restore_loader` (tests)."""
    return loader_class().load_configuration


def restore_loader(saved: Any) -> None:
    loader_class().load_configuration = saved  # type: ignore[method-assign]


def args_parser() -> Any:
    """Hydra's own argparse parser (the flags `@hydra.main` understands)."""
    from hydra._internal.utils import get_args_parser

    return get_args_parser()


def split_sweep(overrides: list[Any]) -> list[list[str]]:
    """The jobs parsed sweep OVERRIDES expand to, each a list of `key=value` strings, in
    BasicSweeper's order."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    return [job for batch in BasicSweeper.split_arguments(list(overrides), None) for job in batch]
