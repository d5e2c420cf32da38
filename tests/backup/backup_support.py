"""Helpers for the backup tests (not a test module): product writes, the backup operations, the CLI, and a raw
look into stores.

Writes go through the product (the ingestor and the ledger, or the HTTP service); backups through the
application layer's operations, as ``knhk backup`` calls them; checks read the stores with plain SQL or run the
real ``knhk`` command. Nothing here stands in for a part of KNHK.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from knhk.app.access import LocalAccess, local_principal
from knhk.app.application import Application
from knhk.app.backup import Recovery
from knhk.app.runtime import Runtime
from knhk.backup.manifest import Manifest
from knhk.config import Settings

KNHK = str(Path(sys.executable).with_name("knhk"))
MARKER = "KNHK-PLAINTEXT-MARKER"
OPERATOR = local_principal("backup-operator@test")


def create_backup(rt: Runtime, **options: Any) -> Manifest:
    """``knhk backup create`` on the installation ``rt`` wires (its settings say where and how), audited."""
    return Application(rt, LocalAccess()).create_backup(OPERATOR, **options)


def recovery(settings: Settings) -> Recovery:
    """``knhk backup list|verify|restore`` for the installation ``settings`` configure (none is opened)."""
    return Recovery(settings, LocalAccess())


def payment(oid: str, amount: int, marker: str = MARKER) -> dict[str, Any]:
    """A finance payment; above 1,000,000 it violates guard FIN-LIMIT-001 (two receipts)."""
    return {"id": oid, "sector": "finance", "event_type": "payment.created",
            "value": {"account_id": f"{marker}-{oid}", "transaction_amount": amount, "currency": "EUR"}}


def write(rt: Runtime, prefix: str, n: int, every: int = 4) -> tuple[list[str], list[str]]:
    """``n`` observations through the ingestor, every ``every``-th violating the guard; returns the stored
    observation ids and the ids of the receipts the product appended for them."""
    bodies = [payment(f"{prefix}-{i}", 2_000_000 if i % every == 0 else 100 + i) for i in range(n)]
    results = rt.ingestor.ingest_batch(bodies)
    return [r.observation.id for r in results], [rid for r in results for rid in r.receipt_ids]


def cli(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KNHK, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "KNHK_LOG_LEVEL": "WARNING", **env}, check=False)


def cli_json(args: list[str], env: dict[str, str], timeout: float = 300) -> Any:
    done = cli([*args, "--json"], env, timeout)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return orjson.loads(done.stdout)


def env_for(settings: Settings) -> dict[str, str]:
    env = {"KNHK_DATA_DIR": str(settings.data_dir), "KNHK_DATABASE_URL": settings.resolved_database_url,
           "KNHK_BACKUP_DIR": str(settings.resolved_backup_dir)}
    if settings.backup_key_file is not None:
        env["KNHK_BACKUP_KEY_FILE"] = str(settings.backup_key_file)
    return env


def sqlite_ids(path: Path, table: str = "observations") -> set[str]:
    """The ids in a table of an SQLite file, read from a private copy (the file is not touched)."""
    conn = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        return {str(r[0]) for r in conn.execute(f"SELECT id FROM {table}")}
    finally:
        conn.close()


def receipt_ids(path: Path) -> set[str]:
    return sqlite_ids(path, "ledger_entries")
