"""A real single-node SLURM cluster for tests: munged + slurmctld + slurmd, everything in a temp dir.

`slurm_cluster` (session-scoped fixture) writes a munge key and a slurm.conf under a temp dir,
starts the three daemons in the foreground as child processes (their own ports and socket, so
nothing in /etc is touched and another cluster on the machine is not disturbed), waits for
`sinfo` to show the node idle, sets SLURM_CONF for sbatch/squeue/sinfo (and so for submitit),
yields, and stops the daemons it started, by pid. Skips with the reason when the binaries are
missing (install: apt-get install -y slurmctld slurmd slurm-client munge) or the cluster does
not come up.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

BINARIES = ("munged", "slurmctld", "slurmd", "sinfo", "sbatch", "squeue", "scancel")
PARTITION = "debug"


@dataclass
class SlurmCluster:
    root: Path
    conf: Path
    env: dict[str, str]
    partition: str = PARTITION
    procs: list[subprocess.Popen] = field(default_factory=list)

    def cmd(self, *args: str, check: bool = True) -> str:
        r = subprocess.run(list(args), env=self.env, capture_output=True, text=True, timeout=30)
        if check and r.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {r.stderr.strip()}")
        return r.stdout

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n" + p.read_text(errors="replace")[-3000:] for p in sorted(self.root.glob("*.log"))
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mem_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 4096


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in reversed(procs):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in reversed(procs):
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)


def start_cluster(root: Path, timeout: float = 60.0) -> SlurmCluster:
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing:
        raise RuntimeError(f"SLURM binaries missing: {', '.join(missing)} "
                           f"(apt-get install -y slurmctld slurmd slurm-client munge)")
    if os.geteuid() != 0:
        raise RuntimeError("the test cluster runs its daemons as root (SlurmUser=root); not root here")
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    for d in ("state", "spool", "munge"):
        (root / d).mkdir(exist_ok=True)
    os.chmod(root / "munge", 0o700)
    key = root / "munge" / "munge.key"
    key.write_bytes(secrets.token_bytes(1024))
    os.chmod(key, 0o400)
    msock = root / "munge" / "munge.socket"
    host = socket.gethostname()
    cpus = os.cpu_count() or 1
    conf = root / "slurm.conf"
    conf.write_text(f"""\
ClusterName=unlearnlab-test
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={msock}
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
MinJobAge=300
KillWait=2
InactiveLimit=0
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={max(_mem_mb() - 1024, 512)} State=UNKNOWN
PartitionName={PARTITION} Nodes={host} Default=YES MaxTime=INFINITE State=UP
""")
    env = {**os.environ, "SLURM_CONF": str(conf)}
    cluster = SlurmCluster(root, conf, env)
    try:
        munged = subprocess.Popen(
            ["munged", "--foreground", "--force", f"--key-file={key}", f"--socket={msock}",
             f"--pid-file={root}/munge/munged.pid", f"--log-file={root}/munged.log",
             f"--seed-file={root}/munge/munged.seed"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
        cluster.procs.append(munged)
        deadline = time.monotonic() + 10
        while not msock.exists():
            if munged.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"munged did not start:\n{cluster.logs()}")
            time.sleep(0.1)
        for daemon in (["slurmctld", "-D", "-i"], ["slurmd", "-D", "-N", host]):
            cluster.procs.append(subprocess.Popen(
                [*daemon, "-f", str(conf)], stdout=open(root / f"{daemon[0]}.out.log", "w"),
                stderr=subprocess.STDOUT, env=env, start_new_session=True,
            ))
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            dead = [p.args[0] for p in cluster.procs if p.poll() is not None]
            if dead:
                raise RuntimeError(f"{', '.join(dead)} exited:\n{cluster.logs()}")
            r = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], env=env, capture_output=True, text=True)
            state = r.stdout.strip()
            if r.returncode == 0 and state == "idle":
                return cluster
            time.sleep(0.5)
        raise RuntimeError(f"node not idle after {timeout:.0f}s (sinfo: {state!r}):\n{cluster.logs()}")
    except BaseException:
        _stop(cluster.procs)
        raise


def stop_cluster(cluster: SlurmCluster) -> None:
    if cluster.procs and cluster.procs[-1].poll() is None:
        cluster.cmd("scancel", "--user=root", check=False)  # no job outlives the tests
    _stop(cluster.procs)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A running single-node SLURM cluster; SLURM_CONF points at it while the session runs."""
    try:
        cluster = start_cluster(tmp_path_factory.mktemp("slurm"))
    except RuntimeError as err:
        pytest.skip(f"no SLURM cluster: {err}")
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        yield cluster
    finally:
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old
        stop_cluster(cluster)
