"""PostgreSQL and Redis servers for the several-instances tests, on free loopback ports.

PostgreSQL refuses to run as root (and CI runs as root): its `initdb` and `pg_ctl` then run as
the `postgres` user, in a directory that user owns (../shared/FACTS.md). pytest-postgresql's
`postgresql_noproc` fixture and `DatabaseJanitor` drive that server; pytest-redis starts Redis.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

from tests.server import free_port


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else (shutil.which(name) or name)


@dataclass
class PostgresServer:
    """What pytest-postgresql's `postgresql_noproc(depends_on=...)` reads of a running server."""

    host: str
    port: int
    datadir: str
    user: str = "postgres"
    password: str | None = None
    options: str = ""
    maintenance_dbname: str = "postgres"
    template_dbname: str | None = None

    @classmethod
    def start(cls) -> "PostgresServer":
        datadir = tempfile.mkdtemp(prefix="llmservice-pg-")  # not under pytest's 0700 root-owned tmp
        as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(datadir, "postgres", "postgres")
            as_user = ["runuser", "-u", "postgres", "--"]
        server = cls(host="127.0.0.1", port=free_port(), datadir=datadir)
        subprocess.run([*as_user, _pg_bin("initdb"), "-D", f"{datadir}/data", "-A", "trust", "-U", "postgres"],
                       check=True, capture_output=True)
        subprocess.run([*as_user, _pg_bin("pg_ctl"), "-D", f"{datadir}/data", "-w", "-l", f"{datadir}/log", "-o",
                        f"-p {server.port} -k {datadir} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
                       check=True, capture_output=True)
        server._as_user = as_user
        return server

    def stop(self) -> None:
        subprocess.run([*self._as_user, _pg_bin("pg_ctl"), "-D", f"{self.datadir}/data", "-m", "fast", "-w", "stop"],
                       capture_output=True)
        shutil.rmtree(self.datadir, ignore_errors=True)
