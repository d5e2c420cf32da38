"""Every route declares one permission, and every role × every route gets exactly what the matrix grants:
403 (audited) without the permission, never 401/403 with it."""

from __future__ import annotations

import re

import pytest
from service_support import Api

from knhk.identity import ROLE_PERMISSIONS, ROLES
from knhk.service.security import ROUTE_PERMISSIONS

BODIES = {
    "/api/v1/observations": {"event_type": "payment.created", "sector": "finance",
                             "value": {"account_id": "A", "transaction_amount": 1, "currency": "EUR"}},
    "/api/v1/observations/batch": {"observations": [{"event_type": "payment.created", "sector": "finance",
                                                     "value": {"account_id": "A", "transaction_amount": 1,
                                                               "currency": "EUR"}}]},
    "/api/v1/patterns/detect": {"sector": "finance"},
    "/api/v1/proposals": {"sector": "finance", "rationale": "test", "additions": [
        ["<https://knhk.dev/ns/finance#Account>", "<http://www.w3.org/2000/01/rdf-schema#comment>", '"x"']]},
    "/api/v1/proposals/{proposal_id}/approvals": {"decision": "approve"},
    "/api/v1/snapshots/{snapshot_id}/promote": {},
    "/api/v1/snapshots/rollback": {"sector": "finance"},
    "/api/v1/cycles": {"sector": "finance"},
    "/api/v1/guards/{guard_id}/relaxations": {"sector": "finance", "duration_s": 60, "reason": "matrix test"},
    "/api/v1/relaxations/{relaxation_id}/approvals": {"decision": "approve"},
    "/api/v1/relaxations/{relaxation_id}/revoke": {},
}
QUERIES = {"/api/v1/observations": "?sector=finance", "/api/v1/snapshots/current": "?sector=finance",
           "/api/v1/receipts/consistency": "?first=1&second=1"}
ROUTES = sorted(ROUTE_PERMISSIONS)


def test_every_api_route_declares_exactly_one_permission(api: Api) -> None:
    schema = api.client.get("/openapi.json").json()
    declared = {(m.upper(), p) for p, ops in schema["paths"].items() for m in ops if p.startswith("/api/v1")}
    assert declared == set(ROUTE_PERMISSIONS), "an API route without a declared permission (or vice versa)"
    known = {perm for perms in ROLE_PERMISSIONS.values() for perm in perms}
    assert {perm for perm, _ in ROUTE_PERMISSIONS.values()} <= known


@pytest.mark.parametrize("role", sorted(ROLES))
def test_role_matrix_on_every_route(api: Api, role: str) -> None:
    headers = {**api.token(role, subject=f"{role}@example.org", sector="compliance", mfa=True),
               "X-Access-Justification": "matrix test"}
    granted = ROLE_PERMISSIONS[role]
    for method, template in ROUTES:
        permission, _mutating = ROUTE_PERMISSIONS[(method, template)]
        path = re.sub(r"\{[a-z_]+\}", "0", template) + QUERIES.get(template, "")
        body = BODIES.get(template)
        response = api.client.request(method, path, json=body if method == "POST" else None, headers=headers)
        if permission in granted:
            assert response.status_code not in (401, 403) or "author" in response.text, \
                f"{role} holds {permission} but {method} {template} said {response.status_code}: {response.text}"
            assert response.status_code < 500, f"{method} {template} as {role}: {response.text}"
        else:
            assert response.status_code == 403, f"{role} lacks {permission}: {method} {template} said " \
                                                 f"{response.status_code}"
            assert response.headers["content-type"] == "application/problem+json"
            assert permission in response.json()["detail"]
    denied = api.runtime.audit.events(action="authz.denied", limit=1000)
    expected = sum(1 for key in ROUTES if ROUTE_PERMISSIONS[key][0] not in granted)
    assert len(denied) == expected


def test_mutating_privileged_routes_need_mfa(api: Api) -> None:
    no_mfa = api.token("operator", "administrator", subject="ops@example.org", mfa=False)
    for method, template in ROUTES:
        permission, mutating = ROUTE_PERMISSIONS[(method, template)]
        if not mutating or permission not in ("snapshots:promote", "snapshots:rollback", "cycles:run",
                                              "subjects:erase", "guards:relax"):
            continue
        path = re.sub(r"\{[a-z_]+\}", "0", template)
        response = api.client.request(method, path, json=BODIES.get(template, {}), headers=no_mfa)
        assert response.status_code == 403, f"{method} {template} without MFA said {response.status_code}"
        assert "multi-factor" in response.json()["detail"]
    assert api.runtime.audit.events(action="authz.denied", limit=100)


def test_missing_or_bad_token_is_401_with_www_authenticate_and_audited(api: Api) -> None:
    for headers in ({}, {"Authorization": "Bearer not.a.token"}, {"Authorization": "Basic dXNlcjpwdw=="}):
        response = api.client.get("/api/v1/receipts", headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.headers["content-type"] == "application/problem+json"
    api.client.app.state.knhk.app.auth_audit.flush(everything=True)  # type: ignore[attr-defined]
    failures = api.runtime.audit.events(action="auth.failed", limit=100)
    assert len(failures) <= 3  # per client and minute: the first failure at once, the others aggregated
    assert sum(int(f.metadata.get("count", "1")) for f in failures) == 3
    assert all(f.outcome == "denied" for f in failures)


@pytest.mark.parametrize("role", sorted(ROLES))
def test_audit_log_entries_are_for_audit_read_only(api: Api, role: str) -> None:
    """The receipts routes take ``?log=audit``: the audit log's entries (who did what) are read with
    ``audit:read`` alone (SPEC §10: ``GET /audit`` is the administrator's), while its checkpoint and consistency
    proofs, only hashes and sizes, stay ``receipts:read`` so anyone who checks the ledger can prove it."""
    admin = api.token("administrator", subject="root@example.org", mfa=True)
    api.client.get("/api/v1/receipts", headers=api.token("observer", subject="seed@example.org"))
    assert api.client.get("/api/v1/audit", headers=admin).status_code == 200  # the audit log has entries
    headers = api.token(role, subject=f"{role}-audit@example.org", sector="compliance", mfa=True)
    granted = ROLE_PERMISSIONS[role]
    for path in ("/api/v1/receipts/0?log=audit", "/api/v1/receipts/0/proof?log=audit",
                 "/api/v1/receipts/0/evidence?log=audit"):
        code = api.client.get(path, headers=headers).status_code
        if "audit:read" in granted:
            assert code == 200, (role, path, code)
        else:
            assert code == 403, (role, path, code)
    for path in ("/api/v1/receipts/checkpoint?log=audit", "/api/v1/receipts/consistency?log=audit&first=1&second=1"):
        code = api.client.get(path, headers=headers).status_code
        assert code == (200 if "receipts:read" in granted else 403), (role, path, code)
