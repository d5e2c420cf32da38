"""Failed authentication cannot flood the audit log (SPEC §9), on both backends: every failure is counted in
``knhk_auth_failures_total{reason}``, while the audit log gets per client and minute the first failure at once
and the rest as one aggregated entry (its count and reasons) when the minute is over or the service stops."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from service_support import make_settings

from knhk.app.access import RoleBasedAccess
from knhk.app.application import Application
from knhk.identity.local import LocalIssuer
from knhk.ops.clock import ManualClock
from knhk.service.app import create_app


def _failures_counted() -> float:
    total = 0.0
    for family in REGISTRY.collect():
        if family.name == "knhk_auth_failures":
            total += sum(s.value for s in family.samples if s.name == "knhk_auth_failures_total")
    return total


def _counted(events: list[Any]) -> int:
    return sum(int(e.metadata.get("count", "1")) for e in events)


def test_fifty_bad_tokens_are_all_counted_but_audited_as_one_window(tmp_path: Path, database_url: str) -> None:
    settings = make_settings(tmp_path, database_url)
    clock = ManualClock(int(time.time() // 60 * 60 + 5) * 1_000_000)  # 5 s into a minute; time stands still
    application = Application.open(settings, access=RoleBasedAccess(settings.auth_mfa_required_roles), clock=clock,
                                   subscribe_engine=False)
    runtime = application.runtime
    issuer = LocalIssuer.from_settings(settings)
    good = issuer.mint(["observer"], subject="olga@example.org").token
    header, payload, _ = good.split(".")
    bad = [f"{header}.{payload}.{'A' * 86}", "not-a-token", f"{header}.e30.{'B' * 86}", ""]
    before = _failures_counted()
    try:
        with TestClient(create_app(settings, application=application, background=False)) as client:
            for i in range(50):
                token = bad[i % len(bad)]
                response = client.get("/api/v1/receipts", headers={"Authorization": f"Bearer {token}"} if token
                                      else {})
                assert response.status_code == 401, response.text
            assert _failures_counted() - before == 50
            now = runtime.audit.events(action="auth.failed", limit=1000)
            assert len(now) == 1, [e.metadata for e in now]  # the first failure of the window, at once
            assert now[0].outcome == "denied"
            assert "bad signature" in (now[0].reason or "")
        # stopping the service flushes the window: one aggregated entry for the other 49
        events = runtime.audit.events(action="auth.failed", limit=1000)
        assert len(events) == 2, [e.metadata for e in events]
        aggregate = events[1]
        assert aggregate.metadata["count"] == "49"
        assert aggregate.metadata["reasons"] == "bad_signature=12,malformed=25,missing=12"
        assert aggregate.actor == events[0].actor  # the same client (by pseudonym)
        assert _counted(events) == 50
        assert runtime.ledger.verify("audit").ok
    finally:
        application.close()
