"""A real single-node SLURM cluster on 127.0.0.1 for the tests: Debian's slurmctld, slurmd and munge
(installed when missing by tests/system_packages.py), configured under a temporary folder with ports of its
own, and stopped by the pids it started. `python tests/slurm_cluster.py DIR` starts one by hand (Ctrl-C stops it).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from system_packages import ensure

NODE = "ecgnode"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _config(root: Path, cpus: int) -> str:
    return f"""ClusterName=ecgkeras-test
SlurmctldHost={socket.gethostname().split(".")[0]}(127.0.0.1)
MailProg=/bin/true
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge.socket
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
MinJobAge=300
SlurmdTimeout=60
NodeName={NODE} NodeAddr=127.0.0.1 NodeHostname={socket.gethostname()} CPUs={cpus} State=UNKNOWN
PartitionName=debug Nodes={NODE} Default=YES MaxTime=INFINITE State=UP
"""


def _wait_for(condition, timeout: float, what: str, logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    tails = "\n".join(f"--- {log}\n{log.read_text()[-2000:]}" for log in logs if log.is_file())
    raise RuntimeError(f"SLURM test cluster: {what} did not happen in {timeout:.0f} s\n{tails}")


@contextmanager
def slurm_cluster(root: Path, cpus: int = 2) -> Iterator[dict[str, str]]:
    """Start munged, slurmctld and slurmd under `root`; yields the environment that points clients
    (sbatch, squeue, submitit) at it. The daemons are stopped by pid on exit."""
    ensure("slurm")
    root.mkdir(parents=True, exist_ok=True)
    for folder in ("state", "spool"):
        (root / folder).mkdir(exist_ok=True)
    key = root / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    conf = root / "slurm.conf"
    conf.write_text(_config(root, cpus))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    started: list[subprocess.Popen] = []
    try:
        started.append(subprocess.Popen(
            ["munged", "-F", "--force", f"--socket={root}/munge.socket", f"--key-file={key}",
             f"--pid-file={root}/munged.pid", f"--log-file={root}/munged.log", f"--seed-file={root}/munged.seed"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        _wait_for(lambda: (root / "munge.socket").exists(), 30, "munged start", [root / "munged.log"])
        started.append(subprocess.Popen(["slurmctld", "-D", "-i", "-f", str(conf)], env=env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        started.append(subprocess.Popen(["slurmd", "-D", "-N", NODE, "-f", str(conf)], env=env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        logs = [root / "slurmctld.log", root / "slurmd.log", root / "munged.log"]

        def node_idle() -> bool:
            for process in started:
                if process.poll() is not None:
                    raise RuntimeError(f"SLURM test cluster: {process.args[0]} exited ({process.returncode}); "
                                       f"logs in {root}")
            state = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], env=env, capture_output=True, text=True)
            return state.stdout.strip() == "idle"

        _wait_for(node_idle, 60, "the node becoming idle", logs)
        yield env
    finally:
        for process in reversed(started):
            process.terminate()
        for process in reversed(started):
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


if __name__ == "__main__":
    with slurm_cluster(Path(sys.argv[1]).resolve()) as cluster_env:
        print(f"export SLURM_CONF={cluster_env['SLURM_CONF']}   # then sbatch/squeue/ecgkeras --executor slurm")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
