"""A throwaway PostgreSQL server for the tests and the benchmarks: initdb in a temporary folder, on a free loopback
port, as an unprivileged system user when run as root (initdb and postgres refuse root), stopped and removed at the end.

    with throwaway_cluster() as cluster:
        url = cluster.url(cluster.create_database())

The superuser ``postgres`` connects without a password (trust on loopback); ``PASSWORD_ROLE`` must give ``PASSWORD``
(scram-sha-256), for what a connection error may say. Durability is off (fsync, synchronous commit): the data is thrown
away anyway. What is missing to run one (psycopg, the server's programs, runuser) raises :class:`PostgresMissing`, so a
caller can skip or fail as it sees fit; a server that would not start raises :class:`PostgresFailed`.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The system user the cluster runs as when we are root.
CLUSTER_USER = "dvw-postgres"
#: A role that must give its password (scram-sha-256).
PASSWORD_ROLE = "dvw_password"
PASSWORD = "right-Pa55word-7d3f"


class PostgresMissing(RuntimeError):
    """What a throwaway cluster needs is not installed here."""


class PostgresFailed(RuntimeError):
    """The cluster could not be made or would not start."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def bindir() -> Path | None:
    """Where initdb and pg_ctl are: pg_config's answer, Debian's /usr/lib/postgresql/<version>/bin, or the PATH."""
    candidates: list[Path] = []
    if pg_config := shutil.which("pg_config"):
        answer = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        if answer.returncode == 0:
            candidates.append(Path(answer.stdout.strip()))
    versions = Path("/usr/lib/postgresql").glob("*/bin")
    candidates.extend(sorted(versions, key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0,
                             reverse=True))
    if initdb := shutil.which("initdb"):
        candidates.append(Path(initdb).resolve().parent)
    return next((path for path in candidates if (path / "initdb").is_file() and (path / "pg_ctl").is_file()), None)


def _as_cluster_user(root: Path) -> list[str]:
    """The prefix that runs a command as an unprivileged user, when we are root."""
    if os.geteuid() != 0:
        return []
    if shutil.which("runuser") is None:
        raise PostgresMissing("runuser (util-linux) is not installed: the cluster cannot run as another user")
    try:
        pwd.getpwnam(CLUSTER_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell",
                        "/usr/sbin/nologin", CLUSTER_USER], check=True, capture_output=True)
    shutil.chown(root, CLUSTER_USER, CLUSTER_USER)
    return ["runuser", "-u", CLUSTER_USER, "--"]


@dataclass
class Cluster:
    """A running throwaway cluster on 127.0.0.1:``port``."""

    port: int
    pid: int = 0
    """The postmaster's process id (its backends are its children)."""
    _names: Iterator[int] = field(default_factory=lambda: itertools.count(1), repr=False)

    def url(self, database: str, user: str = "postgres", password: str | None = None) -> str:
        secret = f":{password}" if password is not None else ""
        return f"postgresql://{user}{secret}@127.0.0.1:{self.port}/{database}"

    def admin(self, database: str = "postgres") -> Any:
        """A superuser connection in autocommit mode (CREATE DATABASE runs outside a transaction)."""
        import psycopg

        return psycopg.connect(self.url(database), autocommit=True)

    def create_database(self, name: str | None = None, owner: str = PASSWORD_ROLE) -> str:
        """A fresh, empty database (``t_1``, ``t_2``… unless named), owned by ``owner``; its name."""
        name = name or f"t_{next(self._names)}"
        with self.admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}" OWNER "{owner}"')
        return name

    def drop_database(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def throwaway_cluster() -> Iterator[Cluster]:
    """A cluster for the block, with the password role made; stopped (immediately) and removed after it."""
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        raise PostgresMissing("psycopg and psycopg_pool are not installed; ./scripts/setup-env installs them from "
                              "requirements/test.lock") from None
    programs = bindir()
    if programs is None:
        raise PostgresMissing("PostgreSQL's server (initdb, pg_ctl) is not installed; ./scripts/setup-env "
                              "--with-test-programs installs it where it can (as root with apt)")
    root = Path(tempfile.mkdtemp(prefix="dvw-postgres-"))
    data, log = root / "data", root / "server.log"
    run_as: list[str] = []
    try:
        run_as = _as_cluster_user(root)
        try:
            subprocess.run([*run_as, str(programs / "initdb"), "-D", str(data), "-U", "postgres", "-E", "UTF8",
                            "--locale=C", "--auth=trust", "--no-sync"], check=True, capture_output=True, text=True)
        except subprocess.CalledProcessError as error:
            raise PostgresFailed(f"{' '.join(error.cmd)}: {error.stderr}") from None
        (data / "pg_hba.conf").write_text(
            "local all all trust\n"
            f"host all {PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256\n"
            "host all all 127.0.0.1/32 trust\n")
        port = 0
        for _ in range(3):  # the free port may be taken before the server binds it
            port = free_port()
            settings = [f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root}",
                        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"]
            done = subprocess.run([*run_as, str(programs / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t",
                                   "60", "-o", " ".join(settings), "start"], capture_output=True, text=True)
            if done.returncode == 0:
                break
        else:
            told = log.read_text(errors="replace") if log.exists() else ""
            raise PostgresFailed(f"the throwaway PostgreSQL did not start: {done.stderr}\n{told}")
        cluster = Cluster(port, int((data / "postmaster.pid").read_text().split()[0]))
        with cluster.admin() as conn:
            conn.execute(f"CREATE ROLE {PASSWORD_ROLE} LOGIN PASSWORD '{PASSWORD}'")
        yield cluster
    finally:
        if (data / "postmaster.pid").exists():  # also a server that started too slowly for pg_ctl's wait
            subprocess.run([*run_as, str(programs / "pg_ctl"), "-D", str(data), "stop", "-m", "immediate", "-w"],
                           capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
