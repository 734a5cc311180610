"""Weights & Biases (and CSV) runs: one per cell and one per audit, grouped by study.

Tracking must never cost a result: every call into wandb is guarded; an unreachable W&B
means runs kept offline, any other failure one warning and the study goes on without tracking.
"""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


def wandb_mode(requested: str | None) -> str:
    """online if the user is logged in, else offline; WANDB_MODE or logger.mode wins."""
    mode = os.environ.get("WANDB_MODE") or requested or "auto"
    if mode != "auto":
        return mode
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "online" if "api.wandb.ai" in netrc.read_text() else "offline"
    except OSError:
        return "offline"


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
        self.config = flatten(config)
        self.offline = False  # set when online W&B failed: later runs are kept offline

    def _warn(self, what: str, err: BaseException) -> None:
        warnings.warn(f"{what} failed ({type(err).__name__}: {err}); the study goes on without it", stacklevel=3)
        self.kind = "none" if self.kind == "wandb" else self.kind

    def _init_wandb(self, name: str, job_type: str, config: dict[str, Any]):
        import wandb

        run = wandb.init(
            project=self.cfg.get("project", "unlearnlab"),
            entity=self.cfg.get("entity"),
            group=self.study,
            job_type=job_type,
            name=name,
            config=config,
            mode="offline" if self.offline else wandb_mode(self.cfg.get("mode")),
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
        """Yields {"logger": Lightning logger or None, "summary": dict filled by the caller}."""
        handle: dict[str, Any] = {"logger": None, "summary": {}}
        run = None
        if self.kind == "wandb":
            try:
                from lightning.pytorch.loggers import WandbLogger

                run = self._open(name, job_type, {**self.config, **flatten(config)})
                handle["logger"] = WandbLogger(experiment=run)
            except Exception as err:  # noqa: BLE001 - tracking must not fail the study
                self._warn("W&B init", err)
        elif self.kind == "csv":
            from lightning.pytorch.loggers import CSVLogger

            handle["logger"] = CSVLogger(str(self.output_dir / "csv"), name=job_type, version=name)
        try:
            yield handle
        finally:
            if run is not None:
                try:
                    run.summary.update(handle["summary"])
                    run.finish()
                except Exception as err:  # noqa: BLE001
                    self._warn("W&B finish", err)

    def audit(self, name: str, metrics: dict[str, float], table: list[dict[str, Any]],
              histograms: dict[str, Any], images: dict[str, str]) -> None:
        """The study's audit run: scalars, a table with one row per method, ε histograms, plots."""
        if self.kind != "wandb":
            return
        try:
            import wandb

            run = self._open(name, "audit", self.config)
            columns = list(table[0].keys()) if table else []
            payload: dict[str, Any] = dict(metrics)
            payload["results"] = wandb.Table(columns=columns, data=[[row[c] for c in columns] for row in table])
            for key, values in histograms.items():
                payload[key] = wandb.Histogram(values)
            for key, path in images.items():
                payload[key] = wandb.Image(path)
            run.log(payload)
            run.summary.update(metrics)
            run.finish()
        except Exception as err:  # noqa: BLE001
            self._warn("W&B audit run", err)
