"""Where configs and code come from: unlearnlab's own conf/, and installed plugins.

A plugin is an installed Python package that names itself in the `unlearnlab.plugins` entry-point
group, the value being its top-level package:

    [project.entry-points."unlearnlab.plugins"]
    acme = "acme_forget"

Installing it is the act of trust (as for pytest's or Hydra's own plugins): its methods, models,
audits and dataset sources become allowed `_target_`s by what they are (registry.py), and its
`conf/` folder (package data: `acme_forget/conf/method/my_method.yaml`) joins Hydra's config search
path through Hydra's public SearchPathPlugin (src/hydra_plugins/unlearnlab_plugins.py). Nothing a
config says can add a package to that set.

This module finds plugins without importing them (so `unlearnlab --help` stays light) and lists
what is wrong with them, one line each, naming the plugin, its entry point and the fix:
an entry point whose value is not a top-level package, a package that is not there, a conf/ folder
that is not one of unlearnlab's config groups, an option name that unlearnlab or another plugin
already has. `import_problems()` imports each plugin (a start-up check, before anything trains).
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
import keyword
from dataclasses import dataclass
from pathlib import Path

ENTRY_POINT_GROUP = "unlearnlab.plugins"
# Packages that can never be a plugin: unlearnlab itself, and those its built-in rules already judge.
RESERVED = frozenset({"unlearnlab", "torch", "torchvision", "hydra", "hydra_plugins", "optuna", "lightning",
                      "omegaconf", "builtins", "os", "sys", "subprocess"})


def config_dir() -> str:
    """unlearnlab's conf/: beside the package in a wheel, or at the repository root in an editable install."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parents[1] / "conf"):
        if (candidate / "config.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"unlearnlab's conf/ not found beside {here}; reinstall the package")


def config_groups(conf: Path) -> list[str]:
    """The config groups under CONF (`method`, `hydra/launcher`, …): folders holding option files."""
    return sorted({str(p.parent.relative_to(conf)) for p in conf.rglob("*.yaml") if p.parent != conf})


def options(conf: Path) -> dict[str, list[str]]:
    """{group: [option, …]} of the option files under CONF."""
    found: dict[str, list[str]] = {}
    for p in sorted(conf.rglob("*.yaml")):
        if p.parent != conf:
            found.setdefault(str(p.parent.relative_to(conf)), []).append(p.stem)
    return found


@dataclass(frozen=True)
class Plugin:
    name: str  # the entry point's name
    value: str  # the entry point's value: the plugin's top-level package
    distribution: str  # "acme-forget 0.1.0": what pip installed
    path: Path | None  # the package's folder, found without importing it (None: not found)

    @property
    def package(self) -> str:
        return self.value

    @property
    def conf(self) -> Path | None:
        return self.path / "conf" if self.path is not None and (self.path / "conf").is_dir() else None

    def options(self) -> dict[str, list[str]]:
        return options(self.conf) if self.conf is not None else {}

    @property
    def label(self) -> str:
        """How a message names it: the plugin, its entry point, its distribution."""
        return f"plugin {self.name} (entry point `{self.name} = {self.value}` of {self.distribution})"

    @property
    def uninstall(self) -> str:
        return f"pip uninstall {self.distribution.split(' ')[0]}"


def _package_dir(value: str) -> Path | None:
    """The folder of top-level package VALUE, found without running it."""
    if not _is_top_level(value):
        return None
    try:
        spec = importlib.util.find_spec(value)
    except (ImportError, ValueError):
        return None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    return Path(locations[0]) if locations else None


def _is_top_level(value: str) -> bool:
    return value.isidentifier() and not keyword.iskeyword(value)


@functools.lru_cache(maxsize=None)
def installed() -> tuple[Plugin, ...]:
    """Every installed plugin, by entry point name (a distribution found twice on the path counts once)."""
    seen: dict[tuple[str, str], Plugin] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist
        label = f"{dist.metadata['Name']} {dist.version}" if dist is not None else "an unknown distribution"
        value = ep.value.strip()
        seen.setdefault((ep.name, value), Plugin(ep.name, value, label, _package_dir(value)))
    return tuple(sorted(seen.values(), key=lambda p: p.name))


def refresh() -> None:
    """Forget what was found (after installing or removing a plugin in this process: tests)."""
    installed.cache_clear()
    _builtin_options.cache_clear()
    importlib.invalidate_caches()


def plugin_of(target: str) -> Plugin | None:
    """The installed plugin whose package TARGET (a dotted name) lies in."""
    return next((p for p in installed() if target.startswith(p.package + ".")), None)


@functools.lru_cache(maxsize=None)
def _builtin_options() -> dict[str, frozenset[str]]:
    return {group: frozenset(names) for group, names in options(Path(config_dir())).items()}


def problems() -> list[str]:
    """What is wrong with the installed plugins, found without importing them: one line each."""
    out: list[str] = []
    builtin = _builtin_options()
    owner: dict[tuple[str, str], Plugin] = {}
    packages: dict[str, Plugin] = {}
    for plugin in installed():
        value = plugin.value
        if not _is_top_level(value):
            top = value.split(":")[0].split(".")[0].strip() or "your_package"
            out.append(f"{plugin.label}: the value must be the plugin's top-level package, e.g. `{plugin.name} = {top}`"
                       f" (its classes are found by what they are, not listed)")
            continue
        if value in RESERVED or value.split(".")[0] in RESERVED:
            out.append(f"{plugin.label}: {value} cannot be a plugin (it is unlearnlab or a package its own rules "
                       f"judge); name your own package")
            continue
        if plugin.path is None:
            out.append(f"{plugin.label}: package {value} is not importable here; reinstall it "
                       f"(pip install -e PATH) or remove it ({plugin.uninstall})")
            continue
        if value in packages:
            other = packages[value]
            out.append(f"{plugin.label}: package {value} is already the plugin {other.name} of {other.distribution}; "
                       f"keep one entry point per package")
            continue
        packages[value] = plugin
        for group, names in plugin.options().items():
            if group not in builtin:
                out.append(f"{plugin.label}: conf/{group}/ is not a config group of unlearnlab "
                           f"(groups: {', '.join(sorted(builtin))}); move its files into one of them")
                continue
            for option in names:
                where = f"{value}/conf/{group}/{option}.yaml"
                if option in builtin[group]:
                    out.append(f"{plugin.label}: {where} has the name of unlearnlab's own {group} option {option}; "
                               f"rename it (e.g. {plugin.name}_{option}.yaml, and its `name:` and `# @package` line)")
                elif (group, option) in owner:
                    other = owner[(group, option)]
                    out.append(f"{plugin.label}: {where} has the name of {group} option {option} of {other.label}; "
                               f"rename one of them")
                else:
                    owner[(group, option)] = plugin
    return out


def import_problems() -> list[str]:
    """Each plugin that fails to import, one line (runs the plugins' code: a start-up check)."""
    out = []
    for plugin in installed():
        if plugin.path is None or not _is_top_level(plugin.value):
            continue
        try:
            importlib.import_module(plugin.value)
        except Exception as err:  # noqa: BLE001 - whatever breaks its import is the plugin's to fix
            message = str(err).splitlines()[0] if str(err) else ""
            out.append(f"{plugin.label} fails to import ({type(err).__name__}: {message}); fix it, or remove it "
                       f"({plugin.uninstall})")
    return out


def search_path() -> list[tuple[str, str]]:
    """(provider, path) of each plugin's conf/, for Hydra's config search path."""
    return [(f"unlearnlab-plugin-{p.name}", f"file://{p.conf}") for p in installed() if p.conf is not None]


def describe() -> list[str]:
    """One line per installed plugin: what it adds (its config options), or what is wrong with it."""
    issues = problems()
    lines = []
    for plugin in installed():
        adds = "; ".join(f"{group}: {', '.join(names)}" for group, names in plugin.options().items())
        lines.append(f"{plugin.name} ({plugin.value}, {plugin.distribution}): {adds or 'no config options'}")
        lines += [f"  problem: {line}" for line in issues if line.startswith(plugin.label)]
    return lines
