"""Weights & Biases (and CSV) runs of a study, grouped by study name.

- one run per method's audit (job_type `audit`): unprefixed keys (`audit/score`, `cost/rte`, ...)
  in its summary, the method's name and hyperparameters, dataset, model and N in its config,
  so one W&B panel compares methods and settings across studies;
- one study run (job_type `study`): the table of every method, ε histograms, the report's plots,
  and results.json + the report as an artifact;
- per-cell runs (job_type original/retrain/unlearn) only with `logger.cell_runs=true`: an
  N = 512 study of 10 methods would open ~5,600 of them, each wandb.init costing about a
  fast-net cell's time, and the store keeps every cell's numbers anyway.

Tracking must never cost a result: every call into wandb is guarded; an unreachable W&B
means runs kept offline, any other failure one warning and the study goes on without tracking.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from unlearnlab.errors import safe_name


def logged_in() -> bool:
    """Whether wandb itself would find credentials for the server it is pointed at.

    wandb's own lookup (wandb.sdk.lib.wbauth, wandb 0.31): the server is `base_url` from
    WANDB_BASE_URL or the settings `wandb login --host URL` wrote; its credentials are
    WANDB_API_KEY / WANDB_IDENTITY_TOKEN_FILE, then the .netrc entry for *that* host (NETRC or
    ~/.netrc), then an api_key in wandb's settings for that host. Reads only, prompts never.
    """
    import wandb

    try:
        from wandb.sdk import wandb_setup
        from wandb.sdk.lib import wbauth
    except ImportError:  # another wandb: its public login check (may print, never prompts)
        return bool(wandb.login(prompt=False, verify=False))
    settings = wandb_setup.singleton().settings
    host = wbauth.HostUrl(settings.base_url, app_url=settings.app_url)
    try:
        auth = wbauth.authenticate_session(host=host, source="unlearnlab", prompt=False, update_session=False)
    except wandb.errors.AuthenticationError as err:  # a malformed key: online would fail anyway
        warnings.warn(f"W&B credentials for {host.url} unusable ({err}); logging offline", stacklevel=2)
        return False
    return auth is not None and auth.host.is_same_url(host)


def wandb_mode(requested: str | None) -> str:
    """WANDB_MODE wins, then logger.mode; `auto`: online when wandb finds credentials, else offline.
    `online` without credentials is offline too, with a warning: wandb would otherwise stop at its
    interactive login prompt (after the study, with nobody at the terminal of a batch job)."""
    mode = os.environ.get("WANDB_MODE") or requested or "auto"
    if mode not in ("auto", "online"):
        return mode
    try:
        found = logged_in()
    except Exception as err:  # noqa: BLE001 - deciding the mode must not fail the study
        warnings.warn(f"W&B credential lookup failed ({type(err).__name__}: {err}); logging offline", stacklevel=2)
        return "offline"
    if mode == "online" and not found:
        asked = "WANDB_MODE=online" if os.environ.get("WANDB_MODE") else "logger.mode=online"
        warnings.warn(f"{asked}, but no W&B login was found (WANDB_API_KEY, `wandb login`): logging offline instead of "
                      f"waiting at wandb's login prompt; log in, then upload the runs with `wandb sync`", stacklevel=2)
        return "offline"
    return "online" if found else "offline"


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """W&B's parallel coordinates and grouping want flat keys: method.lr, not {method: {lr}}."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, f"{key}."))
        else:
            out[key] = v
    return out


class Tracker:
    """Opens runs for the configured logger kind: wandb, csv or none."""

    def __init__(self, cfg: dict[str, Any], study: str, output_dir: str | os.PathLike, config: dict[str, Any]):
        self.kind = cfg.get("kind", "none")
        self.cfg, self.study, self.output_dir = cfg, study, Path(output_dir)
        self.raw = config
        self.config = flatten(config)
        self.cell_runs = bool(cfg.get("cell_runs", self.kind == "csv"))
        self.offline = False  # set when online W&B failed: later runs are kept offline
        self._mode: str | None = None
        if self.kind == "csv" and self.cell_runs:
            for name in method_names(config):  # a csv run is a folder named after its method
                safe_name(name, "method.name")
        if self.kind == "wandb":
            self.mode()  # decided now: a missing login is said before the study, not after it

    def _warn(self, what: str, err: BaseException) -> None:
        warnings.warn(f"{what} failed ({type(err).__name__}: {err}); the study goes on without it", stacklevel=3)
        self.kind = "none" if self.kind == "wandb" else self.kind

    def mode(self) -> str:
        if self._mode is None:  # decided once per tracker: the lookup reads files
            self._mode = wandb_mode(self.cfg.get("mode"))
        return "offline" if self.offline else self._mode

    def _init_wandb(self, name: str, job_type: str, config: dict[str, Any]):
        import wandb

        run = wandb.init(
            project=self.cfg.get("project", "unlearnlab"),
            entity=self.cfg.get("entity"),
            group=self.study,
            job_type=job_type,
            name=name,
            config=config,
            mode=self.mode(),
            dir=str(self.output_dir),
            reinit="create_new",
            settings=wandb.Settings(silent=True, console="off", init_timeout=float(self.cfg.get("init_timeout", 30))),
        )
        return run

    def _open(self, name: str, job_type: str, config: dict[str, Any]):
        """A run; if W&B can't be reached, the same run offline (upload later with `wandb sync`)."""
        try:
            return self._init_wandb(name, job_type, config)
        except Exception as err:  # noqa: BLE001
            if self.offline:
                raise
            warnings.warn(
                f"W&B init failed ({type(err).__name__}: {err}); the study goes on without it online: "
                f"runs are logged offline under {self.output_dir / 'wandb'} (upload later with `wandb sync`)",
                stacklevel=3,
            )
            self.offline = True
            return self._init_wandb(name, job_type, config)

    @contextmanager
    def cell(self, name: str, job_type: str, config: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Yields {"logger": Lightning logger or None, "summary": dict filled by the caller}.
        No run at all unless `logger.cell_runs`."""
        handle: dict[str, Any] = {"logger": None, "summary": {}}
        run = None
        if self.kind == "wandb" and self.cell_runs:
            try:
                from lightning.pytorch.loggers import WandbLogger

                run = self._open(name, job_type, {**self.config, **flatten(config)})
                handle["logger"] = WandbLogger(experiment=run)
            except Exception as err:  # noqa: BLE001 - tracking must not fail the study
                self._warn("W&B init", err)
        elif self.kind == "csv" and self.cell_runs:
            from lightning.pytorch.loggers import CSVLogger

            handle["logger"] = CSVLogger(str(self.output_dir / "csv"), name=safe_name(job_type, "job_type"),
                                         version=safe_name(name, "method.name"))
        try:
            yield handle
        finally:
            if run is not None:
                try:
                    run.summary.update(handle["summary"])
                    run.finish()
                except Exception as err:  # noqa: BLE001
                    self._warn("W&B finish", err)

    # -- an audited study ---------------------------------------------------------------------
    def log_study(self, results: dict[str, Any], report, files: list[str | os.PathLike] = ()) -> None:
        """Every W&B run of an audited study: one audit run per method, then the study run.

        RESULTS: what Study.run returned ("study", "n_models", "methods", "metrics",
        "reference"); REPORT: report.write_report's Report; FILES: results.json and anything
        else to keep with the study run as one artifact (the report's files are added).
        """
        if self.kind != "wandb":
            return
        for name in results["methods"]:
            self.method_audit(name, results)
        kept = [*files, report.markdown, getattr(report, "html", None), *report.images.values()]
        self.audit(f"study-{self.study}", report.scalars, report.rows, report.histograms, report.images,
                   files=[f for f in kept if f is not None])

    def method_config(self, name: str, results: dict[str, Any]) -> dict[str, Any]:
        """What a panel compares a method's audit run by: the method's name and hyperparameters,
        its reference, dataset, split, model, recipe, precision, N and seed (flat keys)."""
        raw = self.raw
        method = (raw.get("methods") or {}).get(name, {})
        method = {"name": name, **{k: v for k, v in method.items() if k != "name"}}
        config = flatten({
            "method": method, "dataset": raw.get("dataset", {}), "split": raw.get("split", {}),
            "model": raw.get("model", {}), "recipe": raw.get("recipe", {}),
        })
        config.update({
            "study": results.get("study", self.study), "n_models": results.get("n_models"),
            "reference": (results.get("reference") or {}).get(name, "retrain"),
            "seed": raw.get("seed"), "precision": (raw.get("trainer") or {}).get("precision"),
        })
        return config

    def method_audit(self, name: str, results: dict[str, Any]) -> None:
        """Method NAME's audit run: its row's numbers under unprefixed keys in the summary, each
        declared metric's direction (`goal` max/min) set with define_metric."""
        if self.kind != "wandb":
            return
        try:
            row = results["methods"][name]
            scalars = {k: float(v) for k, v in row.items()
                       if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
            run = self._open(f"{name}-{self.study}", "audit", self.method_config(name, results))
            for metric, declared in (results.get("metrics") or {}).items():
                if declared.get("goal") in ("max", "min"):
                    run.define_metric(metric, summary=declared["goal"])
            run.summary.update(scalars)  # plain values: what parallel-coordinates/scatter panels read
            run.finish()
        except Exception as err:  # noqa: BLE001
            self._warn(f"W&B audit run of {name}", err)

    def _artifact_path(self, f: str | os.PathLike) -> str:
        """Where a file sits in the artifact: its place under the output dir (plots/x.png)."""
        try:
            return Path(f).resolve().relative_to(self.output_dir.resolve()).as_posix()
        except ValueError:
            return Path(f).name

    def audit(self, name: str, metrics: dict[str, float], table: list[dict[str, Any]],
              histograms: dict[str, Any], images: dict[str, str], files: list[str | os.PathLike] = ()) -> None:
        """The study run: scalars (method-prefixed), a table with one row per method, ε
        histograms, plots, and FILES (results.json, the report) as a `study` artifact."""
        if self.kind != "wandb":
            return
        try:
            import wandb

            run = self._open(name, "study", self.config)
            columns = list(table[0].keys()) if table else []
            payload: dict[str, Any] = dict(metrics)
            payload["results"] = wandb.Table(columns=columns, data=[[row[c] for c in columns] for row in table])
            for key, values in histograms.items():
                payload[key] = wandb.Histogram(values)
            for key, path in images.items():
                payload[key] = wandb.Image(path)
            run.log(payload)
            run.summary.update(metrics)
            if files:
                artifact = wandb.Artifact(_artifact_name(self.study), type="study",
                                          description=f"results.json and report of study {self.study}")
                for f in files:
                    artifact.add_file(str(f), name=self._artifact_path(f))
                run.log_artifact(artifact)
            run.finish()
        except Exception as err:  # noqa: BLE001
            self._warn("W&B study run", err)


def method_names(config: dict[str, Any]) -> list[str]:
    return list((config.get("methods") or {}).keys())


def _artifact_name(study: str) -> str:
    """W&B artifact names allow letters, digits, '-', '_' and '.'."""
    return "study-" + re.sub(r"[^A-Za-z0-9_.-]", "_", study)[:100]
