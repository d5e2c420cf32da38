"""PostgreSQL in production: the least-privilege application role, and a database outage answered with 503
+ Retry-After (nothing half-written) followed by automatic recovery."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from service_support import Api

from knhk.app.runtime import Runtime
from knhk.config import Settings
from knhk.storage.database import Database
from knhk.storage.roles import APPEND_ONLY, create_app_role


@pytest.fixture
def app_role(pg_url: str, pg_admin_url: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    role = f"knhk_app_{uuid.uuid4().hex[:8]}"
    db = Database(pg_url, pool_min=1, pool_max=2)
    try:  # the schema owner migrates and initialises; the application role only ever uses it
        Runtime.open(Settings(data_dir=tmp_path, database_url=pg_url, db_pool_min=1, db_pool_max=2)).close()
        create_app_role(db, role)
    finally:
        db.close()
    base, name = pg_url.rsplit("/", 1)
    app_url = base.replace("postgres@", f"{role}@") + "/" + name
    try:
        yield role, app_url
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {role}")
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f"DROP ROLE IF EXISTS {role}")


def test_application_role_runs_the_product_but_cannot_rewrite_history(app_role: tuple[str, str],
                                                                     tmp_path: Path) -> None:
    _role, url = app_role
    settings = Settings(data_dir=tmp_path, database_url=url, db_pool_min=1, db_pool_max=4)
    with Runtime.open(settings) as rt:  # as the app role: keys, packs already there; no DDL needed
        rt.ingestor.ingest({"event_type": "payment.created", "sector": "finance",
                            "value": {"account_id": "A", "transaction_amount": 2_000_000, "currency": "EUR"}})
        record = rt.run_cycle("finance")
        assert record.outcome in ("success", "partial")
        assert rt.ledger.verify("receipts").ok
        refused = 0
        with psycopg.connect(url, autocommit=True) as conn:
            columns = dict(conn.execute(
                "SELECT table_name, min(column_name) FROM information_schema.columns "
                "WHERE table_schema = 'public' GROUP BY table_name").fetchall())
        for table in APPEND_ONLY:
            col = columns[table]
            for statement in (f"UPDATE {table} SET {col} = {col}", f"DELETE FROM {table}", f"TRUNCATE {table}"):
                with psycopg.connect(url, autocommit=True) as conn, \
                        pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(statement)
                refused += 1
        assert refused == 3 * len(APPEND_ONLY)
        with psycopg.connect(url, autocommit=True) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SET session_replication_role = replica")  # cannot switch the triggers off either


def _block(pg_admin_url: str, url: str, allow: bool) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {"true" if allow else "false"}')
        if not allow:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))


def test_database_outage_is_503_with_retry_after_and_recovers(pg_url: str, pg_admin_url: str,
                                                              api_factory: Callable[..., Api]) -> None:
    api = api_factory(pg_url, db_connect_timeout_s=1.0)
    h = api.token("ingestor")
    obs = {"event_type": "payment.created", "sector": "finance",
           "value": {"account_id": "A", "transaction_amount": 1, "currency": "EUR"}}
    assert api.client.post("/api/v1/observations", json={**obs, "id": "before"}, headers=h).status_code == 201
    _block(pg_admin_url, pg_url, allow=False)
    try:
        for attempt in range(3):
            down = api.client.post("/api/v1/observations", json={**obs, "id": f"during-{attempt}"}, headers=h)
            assert down.status_code == 503, down.text
            assert int(down.headers["retry-after"]) >= 1
            assert down.headers["content-type"] == "application/problem+json"
        assert api.client.get("/health/live").status_code == 200
        assert api.client.get("/health/ready").status_code == 503
        assert api.client.get("/health").json()["status"] == "unhealthy"
    finally:
        _block(pg_admin_url, pg_url, allow=True)
    deadline = time.monotonic() + 60  # the pool reconnects on its own, with backoff
    while True:
        recovered = api.client.post("/api/v1/observations", json={**obs, "id": "after"}, headers=h)
        if recovered.status_code != 503 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert recovered.status_code == 201, recovered.text
    assert api.client.get("/health/ready").status_code == 200
    ids = [o.id for o in api.runtime.reader.query(sector="finance", limit=100).items]
    assert ids == ["before", "after"]  # nothing half-written during the outage
    assert api.runtime.ledger.verify("receipts").ok
