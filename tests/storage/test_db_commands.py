"""``knhk db grant-app-role`` and ``knhk db migrate`` as an operator runs them (subprocesses), on the shared
PostgreSQL with a database and a login role of the test's own.

Proves: step one of the production set-up in docs/service.md works as written — ``--password-file`` sets the
role's password (the stored SCRAM-SHA-256 verifier matches the file's content, quotes, backslashes and ``$1``
included, and the clear text is never stored); a second run is idempotent; a missing password file is a usage
error (exit 2) that changes nothing. ``db migrate --dry-run`` prints the pending migrations and their SQL and
applies none (both backends); two migrators started at once apply each migration exactly once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import psycopg
import pytest

from knhk.storage import schema
from knhk.storage.database import Database

KNHK = str(Path(sys.executable).with_name("knhk"))


def knhk(*args: str, url: str, data: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KNHK_")}
    env.update(KNHK_DATABASE_URL=url, KNHK_DATA_DIR=str(data))
    return subprocess.run([KNHK, *args], capture_output=True, text=True, env=env, timeout=120, check=False)


def scram_matches(verifier: str, password: str) -> bool:
    """Check a PostgreSQL ``SCRAM-SHA-256$iter:salt$StoredKey:ServerKey`` verifier against a password
    (RFC 5802 / RFC 7677)."""
    method, params, keys = verifier.split("$")
    iterations, salt = params.split(":")
    stored, server = (base64.b64decode(k) for k in keys.split(":"))
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    return method == "SCRAM-SHA-256" and hashlib.sha256(client_key).digest() == stored and server_key == server


@pytest.fixture
def role(pg_url: str, pg_admin_url: str) -> Iterator[str]:
    name = f"knhk_app_{uuid.uuid4().hex[:8]}"
    try:
        yield name
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone():
                conn.execute(f"DROP OWNED BY {name}")
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f"DROP ROLE IF EXISTS {name}")


def _verifier(pg_url: str, role: str) -> str | None:
    with psycopg.connect(pg_url) as conn:
        row = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,)).fetchone()
    return None if row is None else row[0]


def test_grant_app_role_with_password_file_as_documented(pg_url: str, role: str, tmp_path: Path) -> None:
    password = "pa'ss\\word $1 \"; DROP ROLE postgres; --"
    secret = tmp_path / "knhk_app_password"
    secret.write_text(password + "\n")
    done = knhk("db", "grant-app-role", role, "--password-file", str(secret), "--json",
                url=pg_url, data=tmp_path / "data")
    assert done.returncode == 0, done.stderr
    assert orjson.loads(done.stdout)["role"] == role
    verifier = _verifier(pg_url, role)
    assert verifier is not None
    assert verifier.startswith("SCRAM-SHA-256$")
    assert password not in verifier
    assert scram_matches(verifier, password)
    assert not scram_matches(verifier, password + "x")
    with psycopg.connect(pg_url) as conn:  # the statements of the role really hold
        assert conn.execute("SELECT has_table_privilege(%s, 'observations', 'INSERT'), "
                            "has_table_privilege(%s, 'observations', 'UPDATE')", (role, role)).fetchone() \
            == (True, False)

    again = knhk("db", "grant-app-role", role, "--password-file", str(secret), url=pg_url, data=tmp_path / "data")
    assert again.returncode == 0, again.stderr  # idempotent: the role exists, its grants are re-stated
    assert scram_matches(_verifier(pg_url, role) or "", password)

    missing = knhk("db", "grant-app-role", role, "--password-file", str(tmp_path / "nope"),
                   url=pg_url, data=tmp_path / "data")
    assert missing.returncode == 2
    assert "nope" in "".join(missing.stderr.split()).replace("│", "")  # the path, however the panel wraps it
    assert "Traceback" not in missing.stderr

    empty = tmp_path / "empty"
    empty.write_text("\n")
    refused = knhk("db", "grant-app-role", role, "--password-file", str(empty), url=pg_url, data=tmp_path / "data")
    assert refused.returncode == 2
    assert "password" in refused.stderr
    assert scram_matches(_verifier(pg_url, role) or "", password)  # unchanged


def test_migrate_dry_run_prints_the_plan_and_applies_nothing(database_url: str, tmp_path: Path) -> None:
    dialect = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    everything = schema.available(dialect)
    plan = knhk("db", "migrate", "--dry-run", "--json", url=database_url, data=tmp_path / "data")
    assert plan.returncode == 0, plan.stderr
    body = orjson.loads(plan.stdout)
    assert body["schema_version"] == 0
    assert body["applied"] == []
    assert [m["version"] for m in body["pending"]] == [m.version for m in everything]
    assert [m["sql"] for m in body["pending"]] == [m.sql for m in everything]
    assert all(m["digest"] == hashlib.sha256(m["sql"].encode()).hexdigest() for m in body["pending"])
    db = Database(database_url, pool_min=1, pool_max=2)
    try:
        assert schema.applied(db) == {}  # nothing applied, not even the bookkeeping table
    finally:
        db.close()

    text = knhk("db", "migrate", "--dry-run", url=database_url, data=tmp_path / "data")
    assert text.returncode == 0, text.stderr
    assert f"{len(everything)} pending migration(s)" in text.stdout
    for migration in everything:
        assert f"{migration.version:04d}_{migration.name}" in text.stdout
    assert "CREATE TABLE" in text.stdout

    migrated = knhk("db", "migrate", "--json", url=database_url, data=tmp_path / "data")
    assert orjson.loads(migrated.stdout)["schema_version"] == everything[-1].version, migrated.stderr
    db = Database(database_url, pool_min=1, pool_max=2)
    try:
        assert schema.pending(db) == []  # the plan was exactly what migrate applied
    finally:
        db.close()


def test_two_migrators_at_once_apply_each_migration_once(database_url: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KNHK_")}
    env.update(KNHK_DATABASE_URL=database_url, KNHK_DATA_DIR=str(tmp_path / "data"))
    procs = [subprocess.Popen([KNHK, "db", "migrate", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _out, err in outputs]
    applied = [name for out, _err in outputs for name in orjson.loads(out)["applied"]]
    dialect = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    assert sorted(applied) == [f"{m.version:04d}_{m.name}" for m in schema.available(dialect)]
