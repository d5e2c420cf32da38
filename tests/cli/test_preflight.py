"""``knhk preflight`` run as an operator runs it (subprocesses) against real deployments.

A good embedded deployment (initialised, backed up, with a live ``knhk serve`` to smoke-test) passes every
machine check, with TLS, OIDC and Redis not applicable and the items that need a person listed as manual. Each
broken deployment fails with exit 1 and a message naming what is wrong: a signing key file of mode 0644, an
unreachable database (and everything that needs it fails as not checked), a PostgreSQL application role that
was granted DELETE on the ledger (and a service connecting as a superuser), no backup at all, a configured
Redis that does not answer. Bad usage exits 2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from typer.testing import CliRunner

from knhk.cli.main import app
from knhk.cli.preflight import CHECK_IDS
from support.serve import KNHK, free_port, serve

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "monitoring" / "rules"
RUNNER = CliRunner()


def preflight(env: dict[str, str], *args: str, process: bool = False) -> tuple[int, dict[str, Any], str]:
    """``knhk preflight --json ARGS``: in this process through typer's runner (fast), or as a subprocess (the
    full run, whose telemetry check installs its own exporters)."""
    if process:
        done = subprocess.run([KNHK, "preflight", "--json", *args], env={**os.environ, **env}, capture_output=True,
                              text=True, timeout=180, cwd=ROOT)
        code, out, err = done.returncode, done.stdout, done.stderr
    else:
        result = RUNNER.invoke(app, ["preflight", "--json", *args], env=env)
        code, out, err = result.exit_code, result.stdout, result.stderr
    try:
        report = json.loads(out)
    except json.JSONDecodeError:
        report = {}
    return code, report, err


def checks(report: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {c["id"]: c for c in report["checks"]}


def knhk(env: dict[str, str], *args: str) -> None:
    result = RUNNER.invoke(app, list(args), env=env)
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)


@pytest.fixture
def embedded(tmp_path: Path) -> dict[str, str]:
    env = {"KNHK_DATA_DIR": str(tmp_path / "data")}
    knhk(env, "init")
    knhk(env, "backup", "create")
    return env


def test_a_good_embedded_deployment_passes_every_machine_check(embedded: dict[str, str]) -> None:
    with serve(embedded) as (url, _proc):
        code, report, err = preflight(embedded, "--rules", str(RULES), "--base-url", url, process=True)
    assert code == 0, (report, err)
    got = checks(report)
    assert report["ok"] is True
    passing = {"database", "schema", "app-role", "keys", "sector-packs", "ledger", "key-files", "backup",
               "alert-rules", "telemetry", "smoke"}
    assert {i for i, c in got.items() if c["status"] == "pass"} == passing, got
    assert {i for i, c in got.items() if c["status"] == "not_applicable"} == {"oidc", "redis", "tls"}
    assert "verified" in got["backup"]["detail"]
    assert "receipts" in got["ledger"]["detail"]
    items = report["checklist"]
    assert len(items) == 28
    assert {i["section"] for i in items} == {"code quality", "security", "infrastructure", "operational"}
    manual = {i["item"] for i in items if i["status"] == "manual"}
    assert "On-call rotation configured" in manual
    assert "Security scan passed" in manual
    assert all(i["status"] in ("pass", "not_applicable", "manual") for i in items), items


def test_a_signing_key_file_readable_by_others_fails(embedded: dict[str, str]) -> None:
    key = next((Path(embedded["KNHK_DATA_DIR"]) / "keys").glob("*.key"))
    key.chmod(0o644)
    code, report, _ = preflight(embedded, "--only", "keys,key-files")
    assert code == 1
    got = checks(report)
    assert got["key-files"]["status"] == "fail"
    assert got["key-files"]["detail"] == f"{key} has mode 0644; must be 0600 (chmod 600 {key})"
    assert got["keys"]["status"] == "pass"  # present, just too open


def test_an_unreachable_database_fails_and_so_does_everything_that_needs_it(tmp_path: Path) -> None:
    env = {"KNHK_DATA_DIR": str(tmp_path / "d"), "KNHK_DATABASE_URL": f"postgresql://knhk@127.0.0.1:{free_port()}/knhk",
           "KNHK_DB_CONNECT_TIMEOUT_S": "2"}
    code, report, _ = preflight(env, "--only", "database,schema,app-role,keys,ledger")
    assert code == 1
    got = checks(report)
    assert got["database"]["status"] == "fail"
    assert "is unreachable" in got["database"]["detail"]
    assert "knhk@127.0.0.1" in got["database"]["detail"]
    for dependent in ("schema", "app-role", "keys", "ledger"):
        assert got[dependent] == {"id": dependent, "title": dependent, "status": "fail",
                                  "detail": "not checked: the database is unreachable"}


def test_a_missing_embedded_store_fails_without_creating_one(tmp_path: Path) -> None:
    data = tmp_path / "nothing"
    code, report, _ = preflight({"KNHK_DATA_DIR": str(data)}, "--only", "database")
    assert code == 1
    assert checks(report)["database"]["detail"].startswith(f"no store at {data}")
    assert not (data / "knhk.db").exists()


@pytest.fixture
def pg_deployment(pg_url: str, pg_admin_url: str, tmp_path: Path) -> Iterator[tuple[dict[str, str], str]]:
    role = f"knhk_pf_{uuid.uuid4().hex[:8]}"
    password = tmp_path / "pw"
    password.write_text("s3cret-preflight\n")
    env = {"KNHK_DATA_DIR": str(tmp_path / "data"), "KNHK_DATABASE_URL": pg_url}
    knhk(env, "db", "migrate")
    knhk(env, "init")
    knhk(env, "db", "grant-app-role", role, "--password-file", str(password))
    try:
        yield env, role
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {role}")
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f"DROP ROLE IF EXISTS {role}")


def test_the_app_role_passes_until_it_is_granted_delete_on_the_ledger(
        pg_deployment: tuple[dict[str, str], str]) -> None:
    env, role = pg_deployment
    as_app = {**env, "KNHK_DATABASE_URL": env["KNHK_DATABASE_URL"].replace("postgres@", f"{role}:s3cret-preflight@")}
    code, report, err = preflight(as_app, "--only", "database,schema,app-role")
    assert code == 0, (report, err)
    assert checks(report)["app-role"]["detail"].startswith(f"role {role}: no UPDATE, DELETE or TRUNCATE")

    # the owner's URL connects as a superuser: refused as the service's role
    code, report, _ = preflight(env, "--only", "app-role")
    assert code == 1
    assert "is a superuser" in checks(report)["app-role"]["detail"]

    with psycopg.connect(env["KNHK_DATABASE_URL"], autocommit=True) as conn:
        conn.execute(f"GRANT DELETE ON ledger_entries TO {role}")
    code, report, _ = preflight(as_app, "--only", "app-role")
    assert code == 1
    assert checks(report)["app-role"] == {
        "id": "app-role", "title": "App role cannot change the ledger", "status": "fail",
        "detail": f"role {role} holds DELETE on ledger_entries (connect the service as the role knhk db "
                  "grant-app-role creates)"}
    # checked from the owner's connection, naming the role
    code, report, _ = preflight(env, "--only", "app-role", "--app-role", role)
    assert code == 1
    assert "holds DELETE on ledger_entries" in checks(report)["app-role"]["detail"]


def test_no_backup_and_a_dead_redis_fail(tmp_path: Path) -> None:
    env = {"KNHK_DATA_DIR": str(tmp_path / "data")}
    knhk(env, "init")
    code, report, _ = preflight({**env, "KNHK_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"},
                                "--only", "backup,redis")
    assert code == 1
    got = checks(report)
    assert got["backup"]["detail"] == f"no backup in {tmp_path / 'data' / 'backups'} (knhk backup create)"
    assert got["redis"]["status"] == "fail"
    assert "ConnectionError" in got["redis"]["detail"]


def test_an_unknown_check_is_a_usage_error(tmp_path: Path) -> None:
    done = subprocess.run([KNHK, "preflight", "--only", "vibes"], env={**os.environ, "KNHK_DATA_DIR": str(tmp_path)},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr == "error: --only: unknown check(s) vibes; the checks are " + ", ".join(CHECK_IDS) + "\n"
