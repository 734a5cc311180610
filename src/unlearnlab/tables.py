"""Results as tables: the terminal's (rich) and the report's (rows of dicts), one grouping for both.

Which table a column belongs to comes from the metrics' declarations (metrics.py), carried in
results["metrics"], so a study's tables can be redrawn from its results.json alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from unlearnlab.metrics import HEADLINE, Catalogue

REFERENCE_ROW = "retrained (reference)"


def fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if not np.isfinite(v):
            return str(v)
        return f"{v:.3g}" if abs(v) >= 1000 or (v != 0 and abs(v) < 1e-3) else f"{v:.4f}"
    if isinstance(v, (list, tuple)):
        return ", ".join(fmt(float(x)) if isinstance(x, (int, float)) else fmt(x) for x in v)
    return str(v)


def fmt_with_error(v: Any, error: Any) -> str:
    """v to the decimal of its standard error's first significant digit (at most 4 decimals): a
    band from 49 relabellings prints as 0.14, not 0.1413."""
    if not isinstance(v, (int, float)) or not isinstance(error, (int, float)) or not np.isfinite(v):
        return fmt(v)
    if not np.isfinite(error) or error <= 0:
        return fmt(v)
    decimals = int(np.clip(-np.floor(np.log10(error)), 0, 4))
    return f"{v:.{decimals}f}"


def grouped_rows(results: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    """(title, rows) per table: one row per method, the headline table first; tables with a
    column the retrained models have (accuracies, seconds) end with their reference row."""
    catalogue = Catalogue.from_results(results)
    methods = results["methods"]
    present = [k for row in methods.values() for k in row]
    tables = []
    for title, columns in catalogue.groups(present):
        rows = [{"method": name, **{c: _shown(catalogue, c, row) for c in columns}} for name, row in methods.items()]
        reference = results.get("retrain", {})
        if any(c in reference for c in columns):
            rows.append({"method": REFERENCE_ROW, **{c: reference.get(c) for c in columns}})
        tables.append((title, rows))
    return tables


def _shown(catalogue: Catalogue, column: str, row: dict[str, Any]) -> Any:
    """The row's value, as text with only the digits its declared standard error supports."""
    error = catalogue.get(column).error
    value = row.get(column)
    return fmt_with_error(value, row.get(error)) if error and value is not None and error in row else value


def rich_table(title: str, rows: list[dict[str, Any]]) -> Table:
    table = Table(title=title)
    columns = list(rows[0]) if rows else ["method"]
    for c in columns:
        table.add_column(c, justify="left" if c == "method" else "right", no_wrap=True,
                         style="bold" if c == "method" else None)
    for row in rows:
        table.add_row(*(fmt(row.get(c)) for c in columns), style="dim" if row["method"] == REFERENCE_ROW else None)
    return table


def pairwise_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The method-vs-method p-values (Holm-adjusted) as a matrix, one row per method."""
    pw = results.get("pairwise")
    if not pw or "skipped" in pw:
        return []
    names, p = pw["methods"], pw["p_adjusted"]
    return [{"method": a, **{b: (None if a == b else p[i][j]) for j, b in enumerate(names)}} for i, a in enumerate(names)]


def pairwise_summary(results: dict[str, Any]) -> str | None:
    """One sentence: which methods this N cannot tell apart."""
    pw = results.get("pairwise")
    if not pw:
        return None
    if "skipped" in pw:
        return f"Method-vs-method tests skipped: {pw['skipped']}."
    on = f", original 0 of {results['n_originals']}" if "original" in pw and results.get("n_originals") else ""
    how = (f"at N = {results['n_models']} (permutation tests of F_A − F_B, Holm-adjusted, family-wise "
           f"α = {pw['alpha']}{on})")
    together = [g for g in pw["groups"] if len(g) > 1]
    if not together:
        return f"Every pair of {', '.join(pw['methods'])} is told apart {how}."
    groups = "; ".join("{" + ", ".join(g) + "}" for g in together)
    return (f"Not told apart {how}: {groups}. Every pair not inside one of these groups is told apart; "
            "not told apart means this N cannot separate them, not that they are equal.")


def holm_summary(results: dict[str, Any]) -> str | None:
    """One sentence: which methods the table tells apart from retraining at family-wise α (Holm
    over its non-control methods), and what the permutations allowed."""
    holm = results.get("holm")
    if not holm:
        return None
    family, rejected = holm["methods"], holm["rejected"]
    rows = results["methods"]
    best = min(rows[m]["audit/p_value_holm"] for m in family)
    head = (f"Against their references (the retrained models unless a method names another), family-wise "
            f"α = {holm['alpha']} over the {len(family)} non-control method{'s' if len(family) > 1 else ''} (Holm): ")
    if not rejected:
        return head + f"none is told apart (smallest adjusted p = {best:.3g})."
    rest = [m for m in family if m not in rejected]
    told = f"told apart: {', '.join(rejected)}"
    return head + told + (f"; not told apart: {', '.join(rest)}." if rest else " (every one).")


def selection_summary(results: dict[str, Any]) -> str | None:
    """One sentence for a re-audit of a search's winner: the number to cite, and the search's own."""
    sel = results.get("selection")
    if not sel:
        return None
    params = ", ".join(f"{k}={v}" for k, v in sel["best_params"].items())
    searched = sel.get("search_value")
    biased = "" if searched is None else (
        f" The search's best {sel['metric']}, {fmt(float(searched))}, was selected against the retrained models of "
        f"seed {sel['search_seed']} and is biased up by that choice: do not cite it.")
    return (f"Re-audit on fresh cells (seed {sel['seed']}: another original, other retrained and unlearned models) "
            f"of the search's winner {sel['objective']} ({params}): {sel['metric']} = {fmt(sel.get('value'))}, the "
            f"number to cite.{biased}")


SKIPPED = "Skipped audits"


def skipped_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The audits that could not run on some methods' models, and why (logits from elsewhere may
    lack a part an audit reads: auditing.skip_reason)."""
    return [{"audit": s["audit"], "methods": ", ".join(s["methods"]), "reason": s["reason"]}
            for s in results.get("skipped", ())]


def data_line(results: dict[str, Any]) -> str | None:
    """One sentence: which data and forget set these numbers are about (results["data"])."""
    data = results.get("data")
    if not data:
        return None
    parts = []
    if "fingerprint" in data:
        parts.append(f"fingerprint {data['fingerprint'][:16]}…")
    if "n_forget" in data:
        parts.append(f"forget set of {data['n_forget']} examples, indices sha256 {data['forget_indices_sha256'][:16]}…")
    if "labels_sha256" in data:
        parts.append(f"labels file sha256 {data['labels_sha256'][:16]}…")
    if "split" in data:
        parts.append(f"split {data['split']}")
    return "Data: " + "; ".join(parts) + " (full values in results.json)." if parts else None


def print_results(console: Console, results: dict[str, Any]) -> None:
    """The headline table (titled with the study and N), one small table per further group, the
    audits skipped and why, which methods this N tells apart, and which data it was."""
    for title, rows in grouped_rows(results):
        if title == HEADLINE:
            title = f"{results['study']}  (N = {results['n_models']} models per method)"
        console.print(rich_table(title, rows))
    if summary := selection_summary(results):
        console.print(summary)
    if summary := holm_summary(results):
        console.print(summary)
    if skipped := skipped_rows(results):
        table = Table(title=SKIPPED)
        for c in ("audit", "methods", "reason"):
            table.add_column(c, style="bold" if c == "audit" else None)
        for row in skipped:
            table.add_row(row["audit"], row["methods"], row["reason"])
        console.print(table)
    if summary := pairwise_summary(results):
        console.print(summary)
    if line := data_line(results):
        console.print(line, soft_wrap=True)
