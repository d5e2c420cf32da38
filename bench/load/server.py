"""A real ``knhk serve`` for the benches: a scratch PostgreSQL database and data directory, tokens from the
local issuer, torn down afterwards. Shared by the load test and the HTTP ingest benches."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg

ADMIN = os.environ.get("KNHK_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
KNHK = str(Path(sys.executable).with_name("knhk"))


class ServerFailed(RuntimeError):
    """The service did not come up (its log tail is the message)."""


@dataclass
class Server:
    url: str
    env: dict[str, str]
    data: Path
    database_url: str
    proc: subprocess.Popen[str] | None = None
    log: Path | None = None
    overrides: dict[str, str] = field(default_factory=dict)

    def mint(self, *roles: str, subject: str | None = None, ttl: int = 3600) -> str:
        """A bearer token of the local issuer (``knhk token mint``) for this server's data directory."""
        cmd = [KNHK, "token", "mint", "--ttl", str(ttl)]
        for role in roles:
            cmd += ["--role", role]
        if subject:
            cmd += ["--subject", subject]
        return subprocess.run(cmd, env=self.env, check=True, capture_output=True, text=True).stdout.strip()

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text().splitlines()[-lines:]) if self.log and self.log.exists() else ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[str] | None, timeout: float = 120) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    return False


@contextmanager
def scratch_database(prefix: str = "knhk_bench") -> Iterator[str]:
    """A new empty PostgreSQL database on the admin server; dropped afterwards. Yields its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield ADMIN.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def knhk_server(workers: int = 2, overrides: Mapping[str, str] | None = None) -> Iterator[Server]:
    """``knhk serve --workers N`` on a scratch database with the service's default settings, plus
    ``overrides`` (``KNHK_*`` variables; the benches print whichever they flip)."""
    data = Path(tempfile.mkdtemp(prefix="knhk-bench-"))
    try:
        with scratch_database() as db:
            env = {**os.environ, "KNHK_DATABASE_URL": db, "KNHK_DATA_DIR": str(data), **(overrides or {})}
            port = free_port()
            log = data / "server.log"
            with log.open("w") as log_file:
                proc = subprocess.Popen([KNHK, "serve", "--port", str(port), "--workers", str(workers)], env=env,
                                        stdout=log_file, stderr=subprocess.STDOUT, text=True)
                server = Server(f"http://127.0.0.1:{port}", env, data, db, proc, log, dict(overrides or {}))
                try:
                    if not wait_ready(server.url, proc):
                        raise ServerFailed(f"knhk serve did not become ready:\n{server.log_tail()}")
                    yield server
                finally:
                    proc.terminate()
                    try:
                        proc.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
    finally:
        shutil.rmtree(data, ignore_errors=True)
