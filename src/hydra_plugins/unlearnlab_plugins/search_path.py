"""Hydra's public way to add config folders: a SearchPathPlugin, found by Hydra in the
`hydra_plugins` namespace package. For unlearnlab's own config only (Hydra calls every installed
SearchPathPlugin for every Hydra app), it appends the `conf/` folder of each installed unlearnlab
plugin (unlearnlab.plugins), after unlearnlab's own conf/: `unlearnlab 'method=[identity,retrain,my_method]'`
then finds `acme_forget/conf/method/my_method.yaml`. Light on purpose (no torch, nothing imported
from the plugins): Hydra runs it for `--help` too. What is wrong with a plugin (a clashing option
name, a package that fails to import) is refused later, in one line, by the start-up checks."""

from __future__ import annotations

from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


def _is_unlearnlab(search_path: ConfigSearchPath, conf: str) -> bool:
    own = Path(conf).resolve()
    for element in search_path.get_path():
        path = str(element.path or "")
        if path.startswith("file://"):
            path = path[len("file://"):]
        if "://" not in path and path and Path(path).resolve() == own:
            return True
    return False


class UnlearnlabPluginsSearchPath(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        try:
            from unlearnlab.plugins import config_dir, search_path as plugin_paths
        except ImportError:  # unlearnlab's own folder is gone (uninstalled): nothing to add
            return
        try:
            own = config_dir()
        except FileNotFoundError:
            return
        if not _is_unlearnlab(search_path, own):
            return
        for provider, path in plugin_paths():
            search_path.append(provider=provider, path=path)
