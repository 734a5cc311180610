"""A config mistake that is knowable without torch fails through the real command line without
importing torch or Lightning (so in about a second, not the ~6 s their import takes): Hydra's own
errors, a schema's refusal (checks.composition_error) and a `_target_` in a package no plugin
registered (the registry's name check, which check_config runs before anything is imported).

Checked by what was imported, not by timing: each case runs unlearnlab.cli.main() in a fresh
interpreter, which prints the heavy modules it imported as it ends."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

HEAVY = ("torch", "lightning")
DRIVER = f"""
import sys
try:
    from unlearnlab.cli import main
    main()
finally:
    print("imported:", sorted(m for m in {HEAVY!r} if m in sys.modules), flush=True)
"""


@pytest.mark.parametrize("overrides, status, line", [
    (["method=nosuch"], 1, "Could not find 'method/nosuch'"),  # Hydra's unknown option
    (["logger=wandb", "logger.cell_run=true"], 2,
     "error: logger.cell_run is not a logger key; did you mean logger.cell_runs?"),  # a schema's refusal
    (["methods.finetune._target_=acme_forget.method.RetainSteps"], 2,
     "error: config.methods.finetune: _target_ 'acme_forget.method.RetainSteps' is not allowed: it is outside the "
     "allowed packages"),  # the target allowlist, by name
], ids=["unknown-option", "schema-key", "unregistered-target"])
def test_a_config_mistake_found_without_torch_imports_no_torch(tmp_path, overrides, status, line):
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, f"paths.root={tmp_path}", f"hydra.run.dir={tmp_path / 'out'}", "debug=tiny",
         *overrides],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == status, proc.stderr[-2000:]
    assert line in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "imported: []" in proc.stdout, proc.stdout[-2000:]
    assert not (tmp_path / "out").exists() and not (tmp_path / "store").exists()
