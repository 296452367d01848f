"""A real PostgreSQL server on 127.0.0.1 for the tests: Debian's postgresql (installed when missing by
tests/system_packages.py), a fresh cluster in a temporary folder of its own (pytest's are closed to other
users) on a port of its own, run as the `postgres` user and stopped by the pid it started, its folder removed.
`python tests/postgres_server.py` starts one by hand (Ctrl-C stops it).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from system_packages import ensure, postgresql_binaries

SERVER_USER = "postgres"  # the server refuses to run as root; Debian's package creates this user


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a PostgreSQL server; yields its URL (postgresql://, database `postgres`, trust authentication
    on 127.0.0.1). Stopped by pid on exit, its data removed."""
    ensure("postgresql")
    binaries = postgresql_binaries()
    root = Path(tempfile.mkdtemp(prefix="ecgkeras-postgres-"))
    data, log = root / "data", root / "server.log"
    shutil.chown(root, SERVER_USER)
    as_server = {"user": SERVER_USER, "group": SERVER_USER, "cwd": root}
    subprocess.run([binaries / "initdb", "-D", data, "-U", SERVER_USER, "--auth=trust", "--no-sync"], check=True,
                   capture_output=True, **as_server)
    port = _free_port()
    with open(log, "w") as output:
        shutil.chown(log, SERVER_USER)
        server = subprocess.Popen([binaries / "postgres", "-D", data, "-h", "127.0.0.1", "-p", str(port), "-k", root,
                                   "-c", "fsync=off"], stdout=output, stderr=subprocess.STDOUT, **as_server)
    try:
        deadline = time.monotonic() + 60
        while subprocess.run([binaries / "pg_isready", "-h", "127.0.0.1", "-p", str(port)],
                             capture_output=True).returncode != 0:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL test server did not start: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield f"postgresql://{SERVER_USER}@127.0.0.1:{port}/postgres"
    finally:
        server.send_signal(signal.SIGINT)  # the server's fast shutdown: clients disconnected
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    with postgres_server() as url:
        print(f"ecgkeras tune --storage {url} ...")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
