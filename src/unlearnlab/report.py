"""The study's report, beside results.json: report.md (PNG plots in plots/) and report.html
(self-contained: the same content, plots embedded as base64 data URIs).

Contents: the results as tables (one per audit family, the retrained models' reference row in
the summary), what each metric means, the trade-off plot (score or F against cost/rte), the
accuracies against the retrained models', per-method ε histograms beside the retrain control's,
and the study's config. The same numbers feed the W&B audit run (`Report.scalars`, `.rows`,
`.histograms`, `.images`).
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from unlearnlab import plots
from unlearnlab.metrics import Catalogue
from unlearnlab.tables import (
    REFERENCE_ROW, SKIPPED, data_line, fmt, grouped_rows, holm_summary, pairwise_rows, pairwise_summary,
    selection_summary, skipped_rows,
)

PLOTS_DIR = "plots"


@dataclass
class Report:
    markdown: Path
    rows: list[dict[str, Any]]
    scalars: dict[str, float]
    histograms: dict[str, Any] = field(default_factory=dict)
    images: dict[str, str] = field(default_factory=dict)
    html: Path | None = None


def table_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per method with every column, headline columns first (the W&B table)."""
    columns = [c for _, rows in grouped_rows(results) for c in rows[0] if c != "method"]
    return [{"method": name, **{k: row.get(k) for k in columns}} for name, row in results["methods"].items()]


def markdown_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    cols = list(rows[0].keys())
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" if c == "method" else "---:" for c in cols) + "|"]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


# --- a tiny document model rendered both to Markdown and to HTML -----------------------------

@dataclass
class _Doc:
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def add(self, kind: str, value: Any) -> None:
        self.blocks.append((kind, value))

    def markdown(self) -> str:
        out = []
        for kind, v in self.blocks:
            if kind == "h1":
                out.append(f"# {v}")
            elif kind == "h2":
                out.append(f"## {v}")
            elif kind == "h3":
                out.append(f"### {v}")
            elif kind == "p":
                out.append(v)
            elif kind == "list":
                out.append("\n".join(f"- {item}" for item in v))
            elif kind == "table":
                out.append(markdown_table(v))
            elif kind == "img":
                alt, path, _ = v
                out.append(f"![{alt}]({path})")
            elif kind == "code":
                lang, text = v
                out.append(f"```{lang}\n{text.rstrip()}\n```")
        return "\n\n".join(out) + "\n"

    def html(self, title: str) -> str:
        body = []
        for kind, v in self.blocks:
            if kind in ("h1", "h2", "h3"):
                body.append(f"<{kind}>{_inline(v)}</{kind}>")
            elif kind == "p":
                body.append(f"<p>{_inline(v)}</p>")
            elif kind == "list":
                body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in v) + "</ul>")
            elif kind == "table":
                body.append(_html_table(v))
            elif kind == "img":
                alt, _, file = v
                data = base64.b64encode(Path(file).read_bytes()).decode("ascii")
                body.append(f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'
                            f"<figcaption>{html.escape(alt)}</figcaption></figure>")
            elif kind == "code":
                _, text = v
                body.append(f"<details open><summary>config (YAML)</summary><pre>{html.escape(text)}</pre></details>")
        return _HTML.format(title=html.escape(title), body="\n".join(body))


def _inline(text: str) -> str:
    """Markdown `code` → <code>, everything else escaped."""
    parts = str(text).split("`")
    return "".join(f"<code>{html.escape(p)}</code>" if i % 2 else html.escape(p) for i, p in enumerate(parts))


def _html_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    cols = list(rows[0].keys())
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join(
        "<tr" + (' class="reference"' if r.get("method") == REFERENCE_ROW else "") + ">"
        + "".join(
            f"<td>{html.escape(fmt(r.get(c)))}</td>" if c == "method" else f'<td class="num">{html.escape(fmt(r.get(c)))}</td>'
            for c in cols
        )
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; }}
th {{ background: #f2f2f2; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
tr.reference td {{ font-style: italic; background: #fafafa; }}
img {{ max-width: 100%; }}
figure {{ margin: 1em 0; }}
figcaption {{ color: #666; font-size: 0.85em; }}
pre {{ background: #f7f7f7; padding: 1em; overflow-x: auto; font-size: 0.85em; }}
code {{ background: #f2f2f2; padding: 0 0.2em; }}
</style></head>
<body>
{body}
</body></html>
"""


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _config_yaml(cfg: DictConfig | dict | None) -> str:
    if cfg is None:
        return ""
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.create(cfg)
    try:
        return OmegaConf.to_yaml(cfg, resolve=True)
    except Exception:  # noqa: BLE001 - e.g. ${hydra:...} outside a Hydra run: show it unresolved
        return OmegaConf.to_yaml(cfg)


def _plots(results: dict[str, Any], out: Path) -> list[tuple[str, str, str, Path]]:
    """Draw every figure; returns (W&B key, section, caption, path) per PNG written."""
    made = []

    def save(fig, key: str, section: str, caption: str, filename: str) -> None:
        if fig is not None:
            made.append((key, section, caption, plots.save_png(fig, out / PLOTS_DIR / filename)))

    save(plots.tradeoff_figure(results), "report/tradeoff", "Trade-off",
         "Forgetting score against speed-up over retraining (log x axis)", "tradeoff.png")
    save(plots.accuracy_figure(results), "report/accuracies", "Accuracies",
         "Retain / forget / test accuracy per method against the retrained models'", "accuracies.png")
    for name in results.get("methods", {}):
        save(plots.eps_histogram_figure(results, name), f"report/eps/{name}", "Per-example ε",
             f"Per-example ε of {name}" + ("" if name == plots.CONTROL else " beside the retrain control's"),
             f"eps_{_safe(name)}.png")
    return made


def write_report(results: dict[str, Any], cfg: DictConfig | dict | None, out: Path) -> Report:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = table_rows(results)
    scalars = {f"{r['method']}/{k}": v for r in rows for k, v in r.items() if k != "method" and v is not None}
    histograms = {}
    for name, arrays in results.get("_arrays", {}).items():
        if "audit/eps" in arrays:
            eps = np.asarray(arrays["audit/eps"], float)
            histograms[f"{name}/audit/eps"] = eps[np.isfinite(eps)]
    figures = _plots(results, out)

    methods = list(results["methods"])
    audits = list((cfg or {}).get("audit") or {}) if cfg is not None else []
    doc = _Doc()
    doc.add("h1", f"unlearnlab study `{results['study']}`")
    intro = (f"N = {results['n_models']} retrained models, and N unlearned models per method; every number "
             f"is a mean over the N models. Methods: {', '.join(f'`{m}`' for m in methods)}.")
    if (k := results.get("n_originals", 1)) > 1:
        intro += (f" {k} original models (training seeds), each with its own N unlearned models per method, "
                  "audited against the same retrained models: audit/F is the mean of the per-original F values "
                  "(audit/F_originals; their spread: audit/F_sd), audit/p_value combines the per-original tests "
                  f"(Bonferroni: {k} × the smallest), audit/eps_lb is the smallest per-original bound (valid for "
                  "each original's ε), the null band is the mean of the per-original bands' ends, and every other "
                  "number is the mean over originals.")
    if audits:
        intro += f" Audits: {', '.join(f'`{a}`' for a in audits)}."
    if plots.CONTROL in methods:
        intro += (f" `{plots.CONTROL}` is the control: retrained models audited against the reference ones, "
                  "the best any method can look.")
    doc.add("p", intro)
    if chosen := selection_summary(results):
        doc.add("h2", "A search's winner, re-audited")
        doc.add("p", chosen)
    if data := results.get("data"):
        doc.add("p", data_line(results))
        doc.add("list", [f"`{k}`: `{v}`" for k, v in data.items()])
    doc.add("h2", "Results")
    catalogue = Catalogue.from_results(results)
    for title, table in grouped_rows(results):
        doc.add("h3", title)
        doc.add("table", table)
        legend = [f"`{c}`: {catalogue.help(c)}" for c in table[0] if c != "method" and catalogue.help(c)]
        if legend:
            doc.add("list", legend)
    if multiplicity := holm_summary(results):
        doc.add("p", multiplicity)
    if skipped := skipped_rows(results):
        doc.add("h3", SKIPPED)
        doc.add("table", skipped)
    if matrix := pairwise_rows(results):
        doc.add("h2", "Which methods differ")
        doc.add("p", pairwise_summary(results))
        doc.add("table", matrix)
        doc.add("p", "Each cell: the Holm-adjusted p-value of H0 \"the two methods' unlearned models are "
                     "exchangeable\" (statistic F_A − F_B, against the same retrained models). A small p says "
                     "this N tells them apart; a large one says it cannot, not that they are equal.")
    elif skipped := pairwise_summary(results):
        doc.add("h2", "Which methods differ")
        doc.add("p", skipped)
    for section in ("Trade-off", "Accuracies", "Per-example ε"):
        chosen = [f for f in figures if f[1] == section]
        if not chosen:
            continue
        doc.add("h2", section)
        for key, _, caption, path in chosen:
            doc.add("img", (caption, f"{PLOTS_DIR}/{path.name}", path))
    if not any(f[1] == "Trade-off" for f in figures):
        doc.add("p", "No trade-off plot: it needs `audit/score` or `audit/F` (the `competition` audit) "
                     "and a finite `cost/rte`.")
    doc.add("h2", "Config")
    doc.add("code", ("yaml", _config_yaml(cfg)))

    md = out / "report.md"
    md.write_text(doc.markdown())
    page = out / "report.html"
    page.write_text(doc.html(f"unlearnlab study {results['study']}"))
    images = {key: str(path) for key, _, _, path in figures}
    return Report(md, rows, scalars, histograms, images, page)
