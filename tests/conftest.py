"""Shared fixtures: every storage test runs on embedded SQLite and on a real PostgreSQL server.

PostgreSQL is reached at ``KNHK_TEST_PG_ADMIN_URL`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``);
each test gets its own fresh database, dropped afterwards. When PostgreSQL is unreachable the tests fail:
they are never skipped (``make test`` starts or installs the server first).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from knhk.app.runtime import Runtime
from knhk.config import Settings
from knhk.ops import resilience
from knhk.storage.database import Database

PG_ADMIN_URL = os.environ.get("KNHK_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(autouse=True)
def _closed_breakers() -> None:
    """Each test starts with the process's circuit breakers closed (a fault one test injects into its own
    database must not refuse the next test's calls)."""
    resilience.reset()


def _pg_base(url: str) -> str:
    return url.rsplit("/", 1)[0]


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {PG_ADMIN_URL} ({exc}); run the README's test command, "
            "which starts it", pytrace=False
        )
    return PG_ADMIN_URL


def create_pg_database(admin_url: str) -> str:
    name = f"knhk_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{_pg_base(admin_url)}/{name}"


def drop_pg_database(admin_url: str, url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(pg_admin_url: str) -> Iterator[str]:
    url = create_pg_database(pg_admin_url)
    try:
        yield url
    finally:
        drop_pg_database(pg_admin_url, url)


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database of each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'knhk.db'}"
        return
    admin = request.getfixturevalue("pg_admin_url")
    url = create_pg_database(admin)
    try:
        yield url
    finally:
        drop_pg_database(admin, url)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        db_pool_min=1,
        db_pool_max=8,
        checkpoint_every_entries=1000,
        checkpoint_every_seconds=3600,
    )


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    rt = Runtime.open(settings)
    try:
        yield rt
    finally:
        rt.close()


@pytest.fixture
def db(runtime: Runtime) -> Database:
    return runtime.db
