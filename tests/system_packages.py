"""The Debian packages of the real components the tests start (SLURM, PostgreSQL, headless Chromium), installed
with apt when missing (needs root; the test machines are fresh). `make test` runs `python3
tests/system_packages.py` beside the Python install, so that one `apt-get` installs them all before the suite
starts; each component's fixture calls `ensure` too, for pytest run on its own. Standard library only: it runs
before the virtual environment exists.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# component -> its Debian packages, without their recommendations (Chromium's would add avahi, printing and
# udev: 227 packages instead of 35)
PACKAGES = {
    "slurm": ("slurmctld", "slurmd", "slurm-client", "munge"),
    "postgresql": ("postgresql",),
    "chromium": ("chromium", "fonts-liberation"),
}
SLURM_PROGRAMS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "srun")
LOCK = Path(tempfile.gettempdir()) / "ecgkeras-apt.lock"  # test workers install one at a time


def postgresql_binaries() -> Path | None:
    """The bin folder of the newest PostgreSQL Debian installed (/usr/lib/postgresql/<version>/bin)."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda path: int(path.parts[-3]))
    return versions[-1].parent if versions else None


def installed(component: str) -> bool:
    """Whether `component`'s programs are on this machine."""
    if component == "slurm":
        return all(shutil.which(name) or Path("/usr/sbin", name).exists() for name in SLURM_PROGRAMS)
    if component == "postgresql":
        return postgresql_binaries() is not None
    return shutil.which(component) is not None


def missing(components=tuple(PACKAGES)) -> list[str]:
    """Those of `components` not installed."""
    return [component for component in components if not installed(component)]


def ensure(*components: str) -> None:
    """Install the packages of whichever of `components` are missing, in one `apt-get`; RuntimeError (one line)
    without root or apt. Packages do not start their own services (policy-rc.d): the tests start their own."""
    if not (absent := missing(components)):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        packages = " ".join(package for component in absent for package in PACKAGES[component])
        raise RuntimeError(f"{', '.join(absent)} not installed and installing needs root and Debian's apt: "
                           f"apt-get install {packages}")
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (absent := missing(components)):  # another test process installed them meanwhile
            return
        packages = [package for component in absent for package in PACKAGES[component]]
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        policy = Path("/usr/sbin/policy-rc.d")  # Debian's switch: exit 101 = no service may start
        added = not policy.exists()
        if added:
            policy.write_text("#!/bin/sh\nexit 101\n")
            policy.chmod(0o755)
        try:
            for command in (["apt-get", "update", "-qq"],
                            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]):
                done = subprocess.run(command, env=env, capture_output=True, text=True)
                if done.returncode:
                    last = (done.stderr.strip().splitlines() or ["no message"])[-1]
                    raise RuntimeError(f"`{' '.join(command[:2])}` failed for {', '.join(absent)}: {last}")
        finally:
            if added:
                policy.unlink()


def main() -> int:
    """Install every missing component as root; without root or apt, say which tests will fail and go on."""
    absent = missing()
    if absent and (os.geteuid() != 0 or not shutil.which("apt-get")):
        print(f"tests/system_packages.py: {', '.join(absent)} missing, and installing needs root and Debian's "
              "apt: their tests will fail", file=sys.stderr)
        return 0
    try:
        ensure(*absent)
    except RuntimeError as error:
        print(f"tests/system_packages.py: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
