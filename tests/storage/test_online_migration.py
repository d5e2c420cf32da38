"""Zero-downtime migrations (seed §7): each of the newest PostgreSQL migrations is applied with ``knhk db migrate``
while a ``knhk serve`` of the previous release — the code as it was just before that migration was added, taken
from git history — keeps ingesting single observations and batches. No request may fail, and every acknowledged
observation must be stored afterwards, with a ledger that verifies."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import threading
import time
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

import knhk.storage
from knhk.config import Settings
from knhk.identity.local import LocalIssuer
from support.serve import KNHK, free_port, wait_ready

REPO = Path(__file__).resolve().parents[2]
MIGRATIONS = Path(knhk.storage.__file__).parent / "migrations"
NEWEST = sorted(p.name for p in MIGRATIONS.glob("*.postgresql.sql"))[-2:]


def _git(*argv: str) -> bytes:
    done = subprocess.run(["git", "-C", str(REPO), *argv], capture_output=True, check=False)
    assert done.returncode == 0, f"git {' '.join(argv)} failed (this test needs the repository's history): " + \
        done.stderr.decode(errors="replace")
    return done.stdout


def previous_release(migration: str, into: Path) -> Path:
    """Extract ``src/`` as it was in the parent of the commit that added ``migration``; return that ``src``."""
    rel = (MIGRATIONS / migration).relative_to(REPO).as_posix()
    if _git("rev-parse", "--is-shallow-repository").strip() == b"true":
        _git("fetch", "--quiet", "--unshallow")
    added = _git("log", "--diff-filter=A", "--format=%H", "--", rel).decode().split()
    assert added, f"{rel} has no commit adding it in this clone's history"
    archive = _git("archive", "--format=tar", f"{added[-1]}^", "src")
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    src = into / "src"
    assert not (src / "knhk" / "storage" / "migrations" / migration).exists()
    return src


@pytest.mark.parametrize("migration", NEWEST)
def test_newest_migration_applies_while_the_previous_release_ingests(migration: str, pg_url: str,
                                                                      tmp_path: Path) -> None:
    old_src = previous_release(migration, tmp_path / "release")
    data = tmp_path / "data"
    env = {**os.environ, "PYTHONPATH": str(old_src), "KNHK_DATABASE_URL": pg_url, "KNHK_DATA_DIR": str(data),
           "KNHK_DB_POOL_MIN": "1", "KNHK_DB_POOL_MAX": "6", "KNHK_CYCLE_INTERVAL_S": "2"}
    where = subprocess.run([sys.executable, "-c", "import knhk; print(knhk.__file__)"], env=env, text=True,
                           capture_output=True, check=True).stdout.strip()
    assert where.startswith(str(old_src)), f"the old release did not shadow the installed package: {where}"

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-c", "from knhk.cli.main import main; main()", "serve", "--port",
                             str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_ready(url, proc, timeout=120)
        with psycopg.connect(pg_url) as conn:
            before = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
        assert int(migration[:4]) not in before

        issuer = LocalIssuer.from_settings(Settings(data_dir=data, database_url=pg_url))
        headers = {"Authorization": "Bearer " + issuer.mint(("ingestor",), subject="line-gateway").token}
        acknowledged: list[str] = []
        failures: list[str] = []
        stop = threading.Event()

        def ingest(worker: int) -> None:
            n = 0
            with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
                while not stop.is_set():
                    n += 1
                    reading: dict[str, Any] = {"event_type": "machine.reading", "sector": "manufacturing",
                                               "value": {"machine_id": f"M-{worker}", "temperature": 70.0 + n % 9}}
                    if n % 5:
                        oid = f"w{worker}-{n}"
                        r = client.post("/api/v1/observations", json={"id": oid, **reading})
                        ids = [oid]
                    else:
                        ids = [f"w{worker}-{n}-b{i}" for i in range(50)]
                        r = client.post("/api/v1/observations/batch",
                                        json={"observations": [{"id": i, **reading} for i in ids]})
                    if r.status_code == 201:
                        acknowledged.extend(ids)
                    else:
                        failures.append(f"{r.status_code} {r.text[:200]}")

        workers = [threading.Thread(target=ingest, args=(w,)) for w in range(3)]
        for t in workers:
            t.start()
        try:
            time.sleep(3)
            during = len(acknowledged)
            migrate = subprocess.run([KNHK, "db", "migrate", "--json"], text=True, capture_output=True,
                                     env={**os.environ, "KNHK_DATABASE_URL": pg_url, "KNHK_DATA_DIR": str(data)},
                                     timeout=300, check=False)
            time.sleep(3)
        finally:
            stop.set()
            for t in workers:
                t.join()
        assert migrate.returncode == 0, migrate.stdout + migrate.stderr
        assert migration.split(".")[0] in migrate.stdout
        assert proc.poll() is None, "the previous release's serve died during the migration"
        assert during > 0, "nothing was acknowledged before the migration"
        assert len(acknowledged) > during, "ingest stopped making progress"
        assert not failures, f"{len(failures)} requests failed during the migration, first: {failures[0]}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()

    with psycopg.connect(pg_url) as conn:
        stored = {r[0] for r in conn.execute("SELECT id FROM observations")}
        after = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
    assert int(migration[:4]) in after
    missing = set(acknowledged) - stored
    assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged observations are not stored"
    print(f"\n{migration}: {len(acknowledged)} observations acknowledged by the previous release across the "
          f"migration, all stored")
    verify = subprocess.run([KNHK, "receipts", "verify", "--log", "all"], text=True, capture_output=True,
                            env={**os.environ, "KNHK_DATABASE_URL": pg_url, "KNHK_DATA_DIR": str(data)},
                            timeout=300, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
