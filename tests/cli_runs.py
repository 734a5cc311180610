"""`unlearnlab ARGS` as a process of its own, without a fresh interpreter's ~6 s of imports.

The process is forked from multiprocessing's fork server, the one the cell workers come from,
which has imported the CLI and what a study runs on (torch, Lightning) once per test process. It
is a real process all the same: its own pid, signal handlers, exit status (-9 when SIGKILLed),
environment, working directory, stdout and stderr; it runs `unlearnlab.cli.main` with its argv
(or a driver script as `__main__`) and ends as an interpreter does: non-daemon threads joined,
atexit handlers run. What only a fresh interpreter shows is tested with one: a config mistake
that imports no torch (test_fast_errors.py), the installed plugins that --help lists
(test_plugins.py), a data fingerprint that does not depend on the process (test_data_fingerprint.py),
and the default study end to end (test_study_e2e.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

PRELOAD = ["unlearnlab.workers", "unlearnlab.cli"]


def _exit_status(code: object) -> int:
    """What the interpreter makes of SystemExit(CODE)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _main(argv: list[str], env: dict[str, str], cwd: str, out: str, err: str, driver: str | None,
          new_session: bool) -> None:
    import atexit
    import runpy
    import threading
    import traceback

    if new_session:
        os.setsid()
    os.dup2(os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 1)
    os.dup2(1 if err == out else os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 2)
    os.environ.clear()  # the fork server's environment is the one it started with
    os.environ.update(env)
    os.chdir(cwd)
    sys.argv = list(argv)
    try:
        if driver is not None:
            runpy.run_path(driver, run_name="__main__")
        else:
            from unlearnlab.cli import main

            main()
        code = 0
    except SystemExit as stop:
        code = _exit_status(stop.code)
    except BaseException:  # noqa: BLE001 - as an interpreter does: the traceback, exit 1
        traceback.print_exc()
        code = 1
    threading._shutdown()  # type: ignore[attr-defined] - what the interpreter does at exit, in its order
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class CliProcess:
    """A started `unlearnlab` process: the part of subprocess.Popen the tests use."""

    def __init__(self, args: list[str], *, env: dict[str, str] | None = None, cwd: str | Path | None = None,
                 driver: str | Path | None = None, stdout: str | Path, stderr: str | Path | None = None,
                 start_new_session: bool = False):
        from unlearnlab.workers import worker_context

        ctx = worker_context()
        ctx.set_forkserver_preload(PRELOAD)  # read when this process's server starts
        self.args = ([str(driver)] if driver is not None else ["unlearnlab"]) + [str(a) for a in args]
        self._process = ctx.Process(
            target=_main, name="unlearnlab",
            args=(self.args, dict(os.environ if env is None else env), str(cwd or os.getcwd()), str(stdout),
                  str(stderr or stdout), None if driver is None else str(driver), start_new_session))
        self._process.start()
        self.pid = self._process.pid

    def poll(self) -> int | None:
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self._process.exitcode

    def kill(self) -> None:
        self._process.kill()


def run_cli(args: list[str], *, env: dict[str, str] | None = None, cwd: str | Path | None = None,
            driver: str | Path | None = None, timeout: float = 1500) -> subprocess.CompletedProcess:
    """`unlearnlab ARGS` (or `python DRIVER ARGS`) in its own process; ENV replaces the environment
    (default: this process's). Returns what subprocess.run(..., capture_output=True, text=True) would."""
    with tempfile.TemporaryDirectory(prefix="cli-run-") as tmp:
        out, err = Path(tmp, "stdout"), Path(tmp, "stderr")
        proc = CliProcess(args, env=env, cwd=cwd, driver=driver, stdout=out, stderr=err)
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise subprocess.TimeoutExpired(proc.args, timeout, out.read_text(), err.read_text()) from None
        return subprocess.CompletedProcess(proc.args, code, out.read_text(), err.read_text())
