"""The import rule the README's Architecture section states, checked on the source: imports run one
way, top to bottom, and a module imports another of the project inside a function only where
start-up time is the reason (the entry point, the dispatcher, Hydra's callbacks, the checks the
CLI runs before Hydra acts and the registry they judge targets with)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "unlearnlab"

# The README's rows, top to bottom; a module may import its own row or the rows below it.
LAYERS = [
    ["__init__"], ["cli", "api", "testing"], ["tasks"],
    ["plan_task", "bench", "verify", "audit_files", "logits_task", "bundle"], ["sweep"], ["study"], ["workers"],
    ["report", "tables", "plots", "auditing"], ["pipeline", "checks"], ["plan", "cells"],
    ["methods", "audits", "models", "registry", "tracking", "certified"],
    ["data", "training", "store", "metrics", "schemas", "errors", "cores", "plugins", "hydra_internals", "files",
     "interrupts", "rundir"],
]
RANK = {name: i for i, row in enumerate(LAYERS) for name in row}
# The package itself is the front door (`unlearnlab.run`/`compose`), then the entry points: the command
# line, the library API and the test kit for plugin authors.
# Function-local project imports keep these light to import: `unlearnlab --help` and the start-up
# checks run before torch is imported (and the registry they use imports the method and source base
# classes only when it judges a target); tasks imports only the task that runs; Hydra instantiates the
# sweep and plan callbacks in every launching process; bench probes an optional benchmark.
# The package's own __init__ (`unlearnlab.run`, `unlearnlab.compose`) imports the library API only
# when called, so `import unlearnlab` imports nothing else.
LAZY = {"__init__", "cli", "tasks", "sweep", "plan_task", "checks", "registry", "bench"}


def _imports(path: Path):
    """(imported top-level module, line, inside a function?) for each project import."""
    tree = ast.parse(path.read_text())
    local = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
             for n in ast.walk(f) if n is not f}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("unlearnlab"):
            parts = node.module.split(".")
            names = [parts[1]] if len(parts) > 1 else [a.name if a.name in RANK else "__init__" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name.split(".")[1] for a in node.names if a.name.startswith("unlearnlab.")]
        else:
            continue
        for name in names:
            yield name, node.lineno, id(node) in local


def _module(path: Path) -> str:
    return path.relative_to(SRC).parts[0].removesuffix(".py")


def test_every_module_has_a_row():
    assert {_module(p) for p in SRC.rglob("*.py")} <= set(RANK)


def test_imports_run_one_way_top_to_bottom():
    upward = [(str(p.relative_to(SRC)), line, name) for p in SRC.rglob("*.py") for name, line, _ in _imports(p)
              if RANK[name] < RANK[_module(p)]]
    assert upward == []


def test_function_local_project_imports_only_where_start_up_time_is_the_reason():
    local = [(str(p.relative_to(SRC)), line, name) for p in SRC.rglob("*.py") for name, line, inside in _imports(p)
             if inside and _module(p) not in LAZY]
    assert local == []


def test_no_module_imports_another_s_private_names():
    private = [(str(p.relative_to(SRC)), node.lineno, a.name) for p in SRC.rglob("*.py")
               for node in ast.walk(ast.parse(p.read_text()))
               if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("unlearnlab")
               for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
    assert private == []
