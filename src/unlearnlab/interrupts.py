"""Stopping on a signal: SIGTERM (what SLURM, systemd and `kill` send before SIGKILL) and SIGINT
(Ctrl-C) become `Interrupted`, raised where the main thread is, so every `finally` on the way out
runs (a store entry's temp folder removed, its lock released, a pool's workers ended) and the
command exits non-zero (128 + the signal) with one line saying what it was doing.

Why not Lightning's own handling: during a fit, Lightning's SIGTERM handler only sets a flag, and
its loops then raise SIGTERMException — a SystemExit without a code, so a preempted study exited
0 with nothing written, like a success. Lightning calls a SIGTERM handler installed before the fit
after its own, so the Interrupted raised here passes through its teardown (which re-raises any
BaseException) and up to the CLI. Outside a fit, Python's default ends the process silently.

`doing(what)` names the step under way (a cell, the audit, writing results): the message says it.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from contextlib import contextmanager
from typing import Iterator

SIGNALS = (signal.SIGTERM, signal.SIGINT)
GRACE_SECONDS = 10.0  # after its parent died, a pool worker that has not ended by then is ended
_doing: list[str] = []
_context: dict = {"background": "", "reason": "", "watching": None}


class Interrupted(BaseException):
    """The process received SIGTERM or SIGINT. A BaseException, like KeyboardInterrupt, so that no
    `except Exception` (W&B's guards, a loader's fallbacks) swallows it."""

    def __init__(self, signum: int, doing: str = "") -> None:
        self.signum, self.doing = int(signum), doing
        name = signal.Signals(self.signum).name + (f" ({_context['reason']})" if _context["reason"] else "")
        where = f" while {doing}" if doing else ""
        super().__init__(f"stopped by {name}{where}; finished cells are kept in the store: rerun the same "
                         f"command and only the rest is computed")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention for a death by signal: 143 for SIGTERM, 130 for SIGINT


@contextmanager
def doing(what: str) -> Iterator[None]:
    """Name the step under way for the message of an Interrupted raised inside it."""
    _doing.append(what)
    try:
        yield
    finally:
        _doing.pop()


def background(what: str) -> None:
    """What this process does when no `doing` step is under way (a sweep's launcher: waiting for its jobs)."""
    _context["background"] = what


def _raise(signum: int, frame) -> None:
    for sig in SIGNALS:  # one signal is enough: cleanup on the way out runs uninterrupted
        signal.signal(sig, signal.SIG_IGN)
    raise Interrupted(signum, _doing[-1] if _doing else _context["background"])


def exit_with_parent(every: float = 1.0) -> None:
    """End this process (as SIGTERM would: Interrupted, cleanup, exit 143) when its parent dies.
    For a sweep job in a joblib worker: a launching process killed with SIGKILL cannot end its
    workers, which went on training orphaned. Not for a command started from a shell, which
    `nohup` is meant to keep alive after the shell is gone."""
    parent = os.getppid()
    if _context.get("watching") == parent:  # a worker runs job after job: one watcher is enough
        return
    _context["watching"] = parent

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        _context["reason"] = f"the sweep's launching process, pid {parent}, is gone"
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(GRACE_SECONDS)  # cleanup on the way out takes well under a second
        os._exit(128 + signal.SIGTERM)

    threading.Thread(target=watch, name="unlearnlab-exit-with-parent", daemon=True).start()


def exit_with_requester() -> None:
    """End this worker process at once when the process that asked for it dies (kill -9 of a job
    left its cell workers idling on the device). Its OS parent is multiprocessing's fork server,
    not that process, so it waits on multiprocessing's parent sentinel: a pipe the requesting
    process holds open for as long as it lives. Blocks: run it in a daemon thread."""
    import multiprocessing

    parent = multiprocessing.parent_process()
    if parent is None:  # not started by multiprocessing: there is no requester to watch
        return
    parent.join()
    os._exit(1)


def install() -> bool:
    """Turn SIGTERM and SIGINT into Interrupted in this process (only the main thread can); returns
    whether it did."""
    if threading.current_thread() is not threading.main_thread():
        return False
    for sig in SIGNALS:
        signal.signal(sig, _raise)
    return True
