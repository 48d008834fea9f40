"""A private PostgreSQL instance in a temp dir, pinned to the target core.

Run as the `postgres` OS user (PostgreSQL refuses root); stopped with SIGINT
(fast shutdown) by procs.Procs.  Default durability settings are kept: a ledger
write costs what it costs in production.
"""
from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import time

from procs import TARGET_CPU, Procs

USER = "postgres"


def _bindir() -> str:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise SystemExit("PostgreSQL server binaries not found (apt-get install postgresql)")
    return os.path.dirname(found[-1])


class Postgres:
    def __init__(self, procs: Procs, root: str, port: int, cpu: int = TARGET_CPU):
        self.procs, self.port, self.cpu = procs, port, cpu
        self.dir = os.path.join(root, "pg")
        self.bin = _bindir()

    def _as_pg(self, *cmd: str) -> None:
        subprocess.run(["runuser", "-u", USER, "--", *cmd], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start(self, log: str) -> None:
        os.makedirs(self.dir)
        shutil.chown(self.dir, USER, USER)
        os.chmod(os.path.dirname(self.dir), 0o755)
        self._as_pg(f"{self.bin}/initdb", "-D", f"{self.dir}/data", "-U", "postgres",
                    "-A", "trust", "-E", "UTF8", "--no-sync")
        self.proc = self.procs.start(
            "postgres", [f"{self.bin}/postgres", "-D", f"{self.dir}/data", "-p", str(self.port),
                         "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.dir}",
                         "-c", "max_connections=300"],
            cpu=self.cpu, log=log, stop_signal=signal.SIGINT, user=USER)
        for _ in range(100):
            if subprocess.run([f"{self.bin}/pg_isready", "-h", "127.0.0.1", "-p", str(self.port)],
                              capture_output=True).returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError("private PostgreSQL did not start; see " + log)

    def createdb(self, name: str) -> str:
        subprocess.run([f"{self.bin}/createdb", "-h", "127.0.0.1", "-p", str(self.port),
                        "-U", "postgres", name], check=True)
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    @property
    def pid(self) -> int:
        """The postmaster's PID (taskset and runuser exec or fork into it)."""
        from procs import tree
        for p in tree([self.proc.pid]):
            try:
                if os.path.basename(os.readlink(f"/proc/{p}/exe")) == "postgres":
                    return p
            except OSError:
                pass
        return self.proc.pid
