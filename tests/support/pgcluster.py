"""A private PostgreSQL 15 cluster for tests that inject real faults (stop, crash, hang, restore, failover).

The shared server on 127.0.0.1:5432 is never touched: each cluster is a fresh ``initdb`` in a directory of its
own, owned by the ``postgres`` user (``initdb`` refuses to run as root), listening on a free loopback port.
Faults are real: ``stop("fast")`` / ``stop("immediate")`` through ``pg_ctl``, :meth:`kill` sends SIGKILL to
the postmaster, :meth:`hang` / :meth:`resume` SIGSTOP / SIGCONT every server process (a hung database, not a
refused one).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path

import psycopg

PG_BIN = Path(os.environ.get("KNHK_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def as_postgres(*argv: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a command as the ``postgres`` OS user (tests run as root here; as that user already, directly)."""
    cmd = list(argv) if os.geteuid() != 0 else ["runuser", "-u", "postgres", "--", *argv]
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=timeout)


class PrivateCluster:
    """One throw-away PostgreSQL cluster. Use :func:`private_cluster` to get one that is cleaned up."""

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.data = root / "data"
        self.port = port
        self.logfile = root / "server.log"

    # -- life cycle -------------------------------------------------------------------------------------
    @classmethod
    def create(cls, settings: Mapping[str, str] | None = None) -> PrivateCluster:
        root = Path(tempfile.mkdtemp(prefix="knhk-pg-"))
        os.chmod(root, 0o755)
        if os.geteuid() == 0:
            shutil.chown(root, "postgres", "postgres")
        cluster = cls(root, free_port())
        as_postgres(str(PG_BIN / "initdb"), "-D", str(cluster.data), "-U", "postgres", "--auth=trust",
                    "-E", "UTF8", "--locale=C.UTF-8")
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(cluster.port),
            "unix_socket_directories": f"'{root}'",
            "fsync": "on",
            "max_connections": "200",
            "shared_buffers": "64MB",
            **(settings or {}),
        }
        with open(cluster.data / "postgresql.auto.conf", "a") as handle:
            for key, value in conf.items():
                handle.write(f"{key} = {value}\n")
        return cluster

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str = "knhk") -> str:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def start(self, timeout: float = 60) -> None:
        as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.logfile), "-w",
                    "-t", str(int(timeout)), "start", timeout=timeout + 10)
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.admin_url, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m fast|smart|immediate`` (immediate is a crash: no checkpoint, WAL recovery on start)."""
        as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def postmaster_pid(self) -> int | None:
        pidfile = self.data / "postmaster.pid"
        try:
            return int(pidfile.read_text().splitlines()[0])
        except (FileNotFoundError, IndexError, ValueError):
            return None

    def server_pids(self) -> list[int]:
        """The postmaster and all its children."""
        main = self.postmaster_pid()
        if main is None:
            return []
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(main)], capture_output=True, text=True).stdout
        return [main, *(int(p) for p in out.split())]

    def kill(self) -> None:
        """SIGKILL the postmaster (its children exit on their own): the database crashes."""
        pid = self.postmaster_pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            for child in self.server_pids()[1:]:
                with suppress(ProcessLookupError):
                    os.kill(child, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            # A killed postmaster leaves its pid file; pg_ctl start copes, but remove stale shared memory users.
            time.sleep(0.2)

    def hang(self) -> None:
        """SIGSTOP every server process: connections are accepted by the kernel but nothing answers."""
        for pid in self.server_pids():
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)

    def resume(self) -> None:
        for pid in self.server_pids():
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def destroy(self) -> None:
        self.resume()
        self.stop("immediate")
        pid = self.postmaster_pid()
        if pid is not None and _alive(pid):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@contextmanager
def private_cluster(settings: Mapping[str, str] | None = None) -> Iterator[PrivateCluster]:
    """A started private cluster, destroyed (processes and files) afterwards."""
    cluster = PrivateCluster.create(settings)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()
