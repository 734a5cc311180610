"""The study's report: the table people read, in Markdown, beside results.json."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from unlearnlab.study import TABLE_COLUMNS, fmt


@dataclass
class Report:
    markdown: Path
    rows: list[dict[str, Any]]
    scalars: dict[str, float]
    histograms: dict[str, Any] = field(default_factory=dict)
    images: dict[str, str] = field(default_factory=dict)


def table_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    keys = [c for c in TABLE_COLUMNS if any(c in r for r in results["methods"].values())]
    keys += sorted({k for r in results["methods"].values() for k in r} - set(keys))
    return [{"method": name, **{k: row.get(k) for k in keys}} for name, row in results["methods"].items()]


def markdown_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    cols = list(rows[0].keys())
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" if c == "method" else "---:" for c in cols) + "|"]
    lines += ["| " + " | ".join(fmt(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def write_report(results: dict[str, Any], cfg: DictConfig, out: Path) -> Report:
    rows = table_rows(results)
    scalars = {f"{r['method']}/{k}": v for r in rows for k, v in r.items() if k != "method" and v is not None}
    histograms = {
        f"{name}/audit/eps": arrays["audit/eps"]
        for name, arrays in results.get("_arrays", {}).items()
        if "audit/eps" in arrays
    }
    text = [
        f"# unlearnlab study `{results['study']}`",
        "",
        f"N = {results['n_models']} retrained and N unlearned models per method.",
        "",
        markdown_table(rows),
        "",
        "## Config",
        "",
        "```yaml",
        OmegaConf.to_yaml(cfg, resolve=True),
        "```",
    ]
    path = out / "report.md"
    path.write_text("\n".join(text))
    return Report(path, rows, scalars, histograms)
