"""What a metric is: one declaration that the table, the report, results.json and W&B all read.

Audits declare the metrics they return (`Audit.metrics`), methods those they report about their
own run (`UnlearningMethod.metrics`, e.g. a certificate's ε); the framework declares the
accuracies and costs every cell has. Adding an audit = one file + one config: its declaration
places its columns in a table group, gives them a legend line and a W&B summary direction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Literal

Goal = Literal["max", "min", "none"]

HEADLINE = "Summary"  # the terminal's headline table and the report's first table


@dataclass(frozen=True)
class Metric:
    name: str  # "audit/F": one name per quantity, everywhere
    help: str  # the report's legend line: unit / range, and what a perfect method shows
    group: str = HEADLINE  # which table it belongs to
    goal: Goal = "none"  # W&B summary direction; "none" where the ideal is a reference value
    headline: bool = False  # also a column of the terminal's headline table
    array: bool = False  # a per-example array (report plots only), never a table column
    error: str | None = None  # the metric holding this one's standard error: tables print only the digits it supports
    follows: str | None = None  # a framework metric placed right after this one (e.g. a p-value's adjustment)

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"help": self.help, "group": self.group, "goal": self.goal, "headline": self.headline}
        if self.error:
            out["error"] = self.error
        return out


# Every cell measures these; a method's row holds their mean over its N models.
CORE = (
    Metric("retain/acc", "accuracy on the retain set (fraction, mean over the N models); ideal: the retrained models'",
           headline=True),
    Metric("forget/acc", "accuracy on the forget set (fraction); ideal: the retrained models'", headline=True),
    Metric("test/acc", "accuracy on the test set (fraction); ideal: the retrained models'", headline=True),
    Metric("cost/seconds", "wall seconds of one unlearning run (mean over the N models)", goal="min", group="Cost"),
    Metric("cost/rte", "retrain seconds / unlearn seconds; higher is faster (the 2023 challenge rejected rte < 5)",
           goal="max", headline=True),
)
ACCURACIES = ("retain/acc", "forget/acc", "test/acc")
# The framework's verdict on a certified method (auditing.certificate_check), beside its cert/* metrics.
VERDICT = (
    Metric("cert/verdict", "the certificate against the audit's ε lower bound: 'violated' only when audit/eps_lb "
           "exceeds cert/epsilon; 'not testable at this N' when even audit/eps_lb_max cannot; else 'consistent' "
           "(not contradicted, which does not prove it), with the power it had against a true ε of twice the "
           "certificate", group="Certified removal"),
    Metric("cert/power", "the chance that this N's bound says 'violated' if the true ε were twice cert/epsilon, "
           "for an auditor who knows the mechanism (each held-out model misclassified with probability "
           "1/(1+e^ε), the pure-DP trade-off); the power behind a 'consistent'", group="Certified removal"),
    Metric("cert/n_needed", "models per side at which cert/power reaches 80% (a violation of twice the "
           "certificate found 4 times in 5)", group="Certified removal"),
)
# What the framework adds to the audits' rows (auditing.py): multiplicity and the originals' spread.
FRAMEWORK = (
    Metric("audit/p_value_holm", "audit/p_value Holm-adjusted over the table's non-control methods (config "
           "`controls`): ≤ 0.05 tells a method apart from retraining with the family-wise error of the whole "
           "table at 5%; its smallest value is (number of methods)/(K+1)", headline=True, follows="audit/p_value"),
    Metric("audit/F_sd", "standard deviation of audit/F over the n_originals original models (the training "
           "seed's share of F's uncertainty); audit/F is their mean", headline=True, follows="audit/F"),
    Metric("audit/F_originals", "audit/F of each original model (n_originals > 1)", group="Originals"),
)

class Catalogue:
    """The declared metrics of one study: core + its audits' + its methods'."""

    def __init__(self, metrics: Iterable[Metric]) -> None:
        self.by_name: dict[str, Metric] = {}
        for m in metrics:
            self.by_name.setdefault(m.name, m)
        for m in [m for m in self.by_name.values() if m.follows in self.by_name]:
            names = [n for n in self.by_name if n != m.name]
            names.insert(names.index(m.follows) + 1, m.name)
            self.by_name = {n: self.by_name[n] for n in names}

    @classmethod
    def of(cls, audits: Iterable[object] = (), methods: Iterable[type] = ()) -> "Catalogue":
        declared: list[Metric] = []
        for a in audits:
            declared += list(getattr(a, "metrics", ()))
        declared += list(CORE) + list(VERDICT) + list(FRAMEWORK)
        for m in methods:
            declared += list(getattr(m, "metrics", ()))
        return cls(declared)

    @classmethod
    def from_results(cls, results: dict) -> "Catalogue":
        """The declarations a results.json carries, so a report can be drawn from the file alone."""
        return cls([*(Metric(name, **d) for name, d in results.get("metrics", {}).items()), *CORE])

    def get(self, name: str) -> Metric:
        """A metric nobody declared still shows (under "Other metrics"), never silently dropped."""
        return self.by_name.get(name) or Metric(name, "", group="Other metrics")

    def headline(self, present: Iterable[str]) -> list[str]:
        present = set(present)
        return [n for n, m in self.by_name.items() if m.headline and n in present]

    def groups(self, present: Iterable[str]) -> list[tuple[str, list[str]]]:
        """(title, columns) per group, headline group first, then in declaration order."""
        present = list(dict.fromkeys(present))
        titles: list[str] = []
        cols: dict[str, list[str]] = {}
        declared = [n for n in self.by_name if n in present] + [n for n in present if n not in self.by_name]
        for name in declared:
            m = self.get(name)
            if m.array:
                continue
            group = HEADLINE if m.headline else m.group
            if group not in cols:
                titles.append(group)
                cols[group] = []
            cols[group].append(name)
        titles.sort(key=lambda t: (t != HEADLINE, t == "Other metrics"))
        return [(t, cols[t]) for t in titles]

    def help(self, name: str) -> str:
        return self.get(name).help
