"""``current`` with a sector is accepted wherever a snapshot id is taken, on the CLI (embedded store) and the API
(both backends): ``knhk sigma export current --sector finance`` prints the sector's current snapshot; ``current``
without a sector is a usage error naming what is missing."""

from __future__ import annotations

import sys
from pathlib import Path

import orjson
from fastapi.testclient import TestClient

from knhk.app.runtime import Runtime
from knhk.identity.local import LocalIssuer
from knhk.service.app import create_app

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ledger"))

from ledger_support import make_settings, run_cli


def test_the_cli_takes_current_with_a_sector_for_a_snapshot_id(tmp_path: Path) -> None:
    data = tmp_path / "data"
    database_url = f"sqlite:///{data / 'knhk.db'}"
    with Runtime.open(make_settings(database_url, data)) as rt:
        current = rt.registry.current("finance")
        assert current is not None
        expected_export = rt.registry.export(current.id, "turtle", False)

    def ok(*args: str) -> str:
        done = run_cli(list(args), data, database_url)
        assert done.returncode == 0, (args, done.stderr)
        return done.stdout

    assert ok("sigma", "export", "current", "--sector", "finance") == expected_export
    assert orjson.loads(ok("sigma", "show", "current", "--sector", "finance", "--json"))["id"] == current.id
    lineage = orjson.loads(ok("sigma", "lineage", "--snapshot", "current", "--sector", "finance", "--json"))
    assert lineage[0]["id"] == current.id
    diff = orjson.loads(ok("sigma", "diff", "current", current.id[:12], "--sector", "finance", "--json"))
    assert diff["added"] == []
    assert diff["removed"] == []
    admin = LocalIssuer.from_settings(make_settings(database_url, data)).mint(
        ["administrator"], subject="root@example.org", mfa=True).token  # --force needs an administrator with MFA
    moved = orjson.loads(ok("--token", admin, "sigma", "promote", "current", "--sector", "finance", "--force",
                            "--json"))
    assert moved["noop"] is True
    missing = run_cli(["sigma", "export", "current"], data, database_url)
    assert missing.returncode == 2
    assert "'current' names a sector's current snapshot: give the sector" in missing.stderr
    unknown = run_cli(["sigma", "show", "current", "--sector", "nope"], data, database_url)
    assert unknown.returncode == 2
    assert "nope" in unknown.stderr


def test_the_api_takes_current_with_a_sector_for_a_snapshot_id(tmp_path: Path, database_url: str) -> None:
    settings = make_settings(database_url, tmp_path / "data", cycle_interval_s=0, verify_interval_s=0,
                             checkpoint_interval_s=0)
    token = LocalIssuer.from_settings(settings).mint(["observer"], subject="ola@example.org").token
    headers = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(settings, background=False)) as client:
        rt = client.app.state.knhk.app.runtime  # type: ignore[attr-defined]
        current = rt.registry.current("logistics")
        exported = client.get("/api/v1/snapshots/current/export", params={"sector": "logistics"}, headers=headers)
        assert exported.status_code == 200, exported.text
        assert exported.text == rt.registry.export(current.id, "turtle", False)
        diff = client.get(f"/api/v1/snapshots/current/diff/{current.id}", params={"sector": "logistics"},
                          headers=headers)
        assert diff.status_code == 200, diff.text
        assert diff.json()["added"] == []
        no_sector = client.get("/api/v1/snapshots/current/export", headers=headers)
        assert no_sector.status_code == 422
        assert "give the sector" in no_sector.json()["detail"]
