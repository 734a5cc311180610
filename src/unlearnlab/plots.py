"""The report's figures, drawn from a study's `results` dict (see unlearnlab.study.Study.audit).

Figures are built on matplotlib's object API with the Agg canvas (no pyplot, no global
backend switch): safe in worker processes, headless machines and threads. Each `*_figure`
function returns a Figure (or None when the results lack what it needs); `save_png` writes one.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator

EPS_CAP = 50.0  # the competition audit caps ε at 50
CONTROL = "retrain"  # the method whose unlearned models are retrained ones: the ε control
ACCURACIES = (("retain/acc", "retain"), ("forget/acc", "forget"), ("test/acc", "test"))
# Challenge efficiency rule: an unlearning run slower than ~20% of retraining was rejected.
RTE_RULE = 5.0
DPI = 110
# matplotlib's tab10 without its grey (kept for the control).
_TAB10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf"]


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=DPI)
    return path


def method_colors(names: list[str]) -> dict[str, Any]:
    """One colour per method, the same in every figure; the retrain control is dark grey."""
    colors, i = {}, 0
    for name in names:
        if name == CONTROL:
            colors[name] = "#4d4d4d"
        else:
            colors[name] = _TAB10[i % len(_TAB10)]
            i += 1
    return colors


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def f_cutoff(n_models: int) -> float:
    """ε from which an example adds 0 to F: ceil(ln(N − 1)) (the official metric, google-deepmind/unlearning_evaluation)."""
    return float(np.ceil(np.log(max(n_models - 1, 2))))


def eps_histogram_figure(results: dict[str, Any], name: str) -> Figure | None:
    """Per-example ε of method `name`, beside the retrain control's (same bins, same y scale)."""
    arrays = results.get("_arrays", {})
    eps = arrays.get(name, {}).get("audit/eps")
    if eps is None:
        return None
    panels = [(name, np.asarray(eps, float))]
    control = arrays.get(CONTROL, {}).get("audit/eps")
    if name != CONTROL and control is not None:
        panels.append((f"{CONTROL} (control)", np.asarray(control, float)))
    n = int(results.get("n_models", 0))
    cutoff = f_cutoff(n) if n >= 2 else None
    bins = np.arange(0.0, EPS_CAP + 0.5, 0.5)
    fig = _figure(5.2 * len(panels), 3.6)
    axes = fig.subplots(1, len(panels), sharex=True, sharey=True, squeeze=False)[0]
    colors = method_colors(list(results.get("methods", {})) or [name])
    for ax, (label, values) in zip(axes, panels):
        key = name if label == name else CONTROL
        shown = np.clip(values[~np.isnan(values)], 0.0, EPS_CAP)  # +inf counts as the cap
        counts, _ = np.histogram(shown, bins=bins)
        # one filled outline, not a patch per bin (ax.hist): the same counts, drawn in half the time
        ax.stairs(counts, bins, fill=True, color=colors.get(key, "#1f77b4"))
        row = results.get("methods", {}).get(key, {})
        stats = f"mean ε = {np.mean(shown):.2f}" if len(shown) else "no values"
        if _finite(row.get("audit/F")):
            stats += f",  F = {row['audit/F']:.3f}"
        ax.set_title(f"{label}\n{stats}", fontsize=10)
        ax.set_xlabel("per-example ε (capped at 50)")
        if cutoff is not None:
            ax.axvline(cutoff, color="black", linestyle="--", linewidth=1)
            ax.annotate(
                f"ε ≥ {cutoff:g} adds 0 to F", xy=(cutoff, 1), xycoords=("data", "axes fraction"),
                xytext=(4, -4), textcoords="offset points", va="top", fontsize=8,
            )
        ax.set_xlim(0, EPS_CAP + 0.5)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel(f"forget examples (of {len(panels[0][1])})")
    fig.suptitle(f"Per-example ε, competition audit (N = {n} models per side)", fontsize=11)
    return fig


def tradeoff_figure(results: dict[str, Any]) -> Figure | None:
    """audit/score (or audit/F) against cost/rte for every method; log x axis."""
    methods = results.get("methods", {})
    metric = next((m for m in ("audit/score", "audit/F") if any(m in r for r in methods.values())), None)
    if metric is None:
        return None
    points = [
        (name, row["cost/rte"], row[metric]) for name, row in methods.items()
        if _finite(row.get("cost/rte")) and row["cost/rte"] > 0 and _finite(row.get(metric))
    ]
    if not points:
        return None
    colors = method_colors(list(methods))
    fig = _figure(6.8, 4.4)
    ax = fig.subplots()
    xs = np.array([p[1] for p in points])
    lo, hi = min(xs.min(), 1.0) / 2, max(xs.max(), RTE_RULE) * 2
    ax.axvspan(lo, RTE_RULE, color="#d62728", alpha=0.07, linewidth=0)
    ax.axvline(1.0, color="grey", linestyle=":", linewidth=1)
    ax.annotate("as slow as retraining", xy=(1.0, 0.02), xycoords=("data", "axes fraction"),
                xytext=(3, 0), textcoords="offset points", rotation=90, fontsize=8, color="grey")
    ax.annotate(f"rte < {RTE_RULE:g}: slower than 20% of retraining\n(rejected in the 2023 challenge)",
                xy=(lo, 0.98), xycoords=("data", "axes fraction"), xytext=(4, -2),
                textcoords="offset points", va="top", fontsize=8, color="#a01010")
    for name, x, y in points:
        ax.scatter([x], [y], s=60, color=colors[name], edgecolor="black", linewidth=0.5, zorder=3)
        ax.annotate(name, (x, y), xytext=(6, 4), textcoords="offset points", fontsize=9)
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ys = [p[2] for p in points]
    ax.set_ylim(min(0.0, min(ys)), max(ys) * 1.15 + 1e-3)
    what = "F × RA_U/RA_R × TA_U/TA_R" if metric == "audit/score" else "forgetting quality"
    ax.set_ylabel(f"{metric}  (higher is better)")
    ax.set_xlabel("cost/rte = retrain seconds / unlearn seconds  (log scale; higher is faster)")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}×"))
    ax.set_title(f"Forgetting vs. speed-up over retraining  (N = {results.get('n_models')} models per method)\n"
                 f"{metric} = {what}", fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    skipped = [f"{n} ({metric} = {r.get(metric)}, cost/rte = {r.get('cost/rte')})"
               for n, r in methods.items() if n not in {p[0] for p in points}]
    if skipped:
        ax.annotate("not shown (no finite value): " + "; ".join(skipped), xy=(0.99, 0.01),
                    xycoords="axes fraction", ha="right", va="bottom", fontsize=7, color="grey", wrap=True)
    return fig


def accuracy_figure(results: dict[str, Any]) -> Figure | None:
    """Retain / forget / test accuracy of every method (mean over its N models), with the
    retrained models' mean as the reference line a perfect method would sit on."""
    methods = results.get("methods", {})
    reference = results.get("retrain", {})
    present = [(k, label) for k, label in ACCURACIES if any(_finite(r.get(k)) for r in methods.values())]
    if not present:
        return None
    names = list(methods)
    colors = method_colors(names)
    fig = _figure(3.6 * len(present) + 1.2, 0.45 * len(names) + 1.8)
    axes = fig.subplots(1, len(present), sharey=True, squeeze=False)[0]
    ypos = np.arange(len(names))[::-1]
    for ax, (key, label) in zip(axes, present):
        vals = [100 * methods[n][key] if _finite(methods[n].get(key)) else np.nan for n in names]
        ref = 100 * reference[key] if _finite(reference.get(key)) else None
        ax.scatter(vals, ypos, s=55, c=[colors[n] for n in names], edgecolor="black", linewidth=0.5, zorder=3)
        for v, y in zip(vals, ypos):
            if math.isfinite(v):
                ax.annotate(f"{v:.1f}", (v, y), xytext=(0, 7), textcoords="offset points", ha="center", fontsize=8)
        known = [v for v in vals if math.isfinite(v)] + ([ref] if ref is not None else [])
        if ref is not None:
            ax.axvline(ref, color="black", linestyle="--", linewidth=1.2)
        span = max(max(known) - min(known), 2.0)
        ax.set_xlim(max(0.0, min(known) - 0.25 * span), min(100.0, max(known) + 0.25 * span) + 0.5)
        ax.set_title(f"{label} accuracy" + (f"\n(retrained models: {ref:.1f}%, dashed)" if ref is not None else ""),
                     fontsize=10)
        ax.set_xlabel(f"{key} (%)")
        ax.grid(axis="x", alpha=0.3)
        ax.set_ylim(-0.7, len(names) - 0.3)
    axes[0].set_yticks(ypos, names)
    fig.suptitle(f"Accuracies, mean of N = {results.get('n_models')} models: methods vs. retrained models",
                 fontsize=11)
    return fig
