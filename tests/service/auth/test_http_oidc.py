"""The service itself behind a real OpenID provider (oidc-provider on Node.js): every kind of bad token is
answered 401 (403 for a missing role or MFA) with a problem body, and every refusal is in the audit log."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient
from oidc_support import AUDIENCE, ISSUER_GROUP_ROLES, OidcProvider, hs256_token

from knhk.config import Settings
from knhk.service.app import create_app

OBS = {"event_type": "payment.created", "sector": "finance",
       "value": {"account_id": "A", "transaction_amount": 1, "currency": "EUR"}}


@pytest.fixture
def client(oidc_provider: OidcProvider, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'k.db'}", cycle_interval_s=0, verify_interval_s=0,
        checkpoint_interval_s=0, oidc_jwks_refetch_interval_s=0,
        oidc_issuers=[{"issuer": oidc_provider.issuer, "audience": AUDIENCE, "group_roles": ISSUER_GROUP_ROLES,
                       "mfa_acr": ["urn:knhk:loa:mfa"]}])
    with TestClient(create_app(settings, background=False), raise_server_exceptions=False) as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def audit(client: TestClient, action: str) -> list[Any]:
    events: list[Any] = client.app.state.knhk.app.runtime.audit.events(action=action, limit=1000)  # type: ignore[attr-defined]
    return events


def test_valid_tokens_of_each_role_reach_what_their_role_grants(client: TestClient, oidc_provider: OidcProvider
                                                                ) -> None:
    p = oidc_provider
    assert client.get("/api/v1/receipts", headers=bearer(p.token("observer-svc", resource=AUDIENCE))).status_code == 200
    assert client.post("/api/v1/observations", json=OBS,
                       headers=bearer(p.token("ingestor-svc", resource=AUDIENCE))).status_code == 201
    assert client.post("/api/v1/cycles", json={"sector": "finance"},
                       headers=bearer(p.token("operator-svc", resource=AUDIENCE))).status_code == 201
    admin = bearer(p.token("administrator-svc", resource=AUDIENCE))
    assert client.get("/api/v1/audit", headers=admin).status_code == 200
    # a role that lacks the permission, a missing MFA, no mapped role at all: 403, audited
    assert client.post("/api/v1/observations", json=OBS,
                       headers=bearer(p.token("observer-svc", resource=AUDIENCE))).status_code == 403
    nomfa = client.post("/api/v1/cycles", json={"sector": "finance"},
                        headers=bearer(p.token("operator-nomfa", resource=AUDIENCE)))
    assert nomfa.status_code == 403
    assert "multi-factor" in nomfa.json()["detail"]
    assert client.get("/api/v1/receipts",
                      headers=bearer(p.token("unmapped-groups", resource=AUDIENCE))).status_code == 403
    assert len(audit(client, "authz.denied")) == 3


def _claims(p: OidcProvider, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"iss": p.issuer, "aud": AUDIENCE, "sub": "svc", "client_id": "observer-svc", "iat": now,
              "exp": now + 600, "groups": ["knhk-observers"]}
    claims.update(changes)
    return claims


def test_every_bad_token_is_401_and_audited(client: TestClient, oidc_provider: OidcProvider) -> None:
    p = oidc_provider
    good = p.token("observer-svc", resource=AUDIENCE)
    header, payload, sig = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["groups"] = ["knhk-admins"]
    tampered = ".".join([header, base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("="), sig])
    public_pem = p.private_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    none_token = (base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').decode().rstrip("=") + "."
                  + base64.urlsafe_b64encode(json.dumps(_claims(p)).encode()).decode().rstrip("=") + ".")
    bad = {
        "expired": p.sign(_claims(p, iat=int(time.time()) - 4000, exp=int(time.time()) - 3000)),
        "not yet valid": p.sign(_claims(p, nbf=int(time.time()) + 3600)),
        "wrong audience": p.token("observer-svc", resource="urn:other:api"),
        "wrong issuer": p.sign(_claims(p, iss="https://evil.example")),
        "unknown kid": p.sign(_claims(p), kid=p.current_kid, headers={"kid": "no-such-key"}),
        "alg none": none_token,
        "HS256 with the public key": hs256_token({"alg": "HS256", "kid": p.current_kid}, _claims(p), public_pem),
        "tampered payload": tampered,
    }
    for what, token in bad.items():
        response = client.get("/api/v1/receipts", headers=bearer(token))
        assert response.status_code == 401, f"{what}: {response.status_code} {response.text}"
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.headers["content-type"] == "application/problem+json"
    client.app.state.knhk.app.auth_audit.flush(everything=True)  # type: ignore[attr-defined]
    failures = audit(client, "auth.failed")
    assert len(failures) <= 4  # per client and minute (at most two minutes here): the first, then one aggregate
    assert sum(int(f.metadata.get("count", "1")) for f in failures) == len(bad)
    assert all(f.outcome == "denied" and f.actor.startswith("sub_") for f in failures)


def test_key_rotation_at_the_provider_is_picked_up(client: TestClient, oidc_provider: OidcProvider) -> None:
    p = oidc_provider
    assert client.get("/api/v1/receipts", headers=bearer(p.token("observer-svc", resource=AUDIENCE))).status_code == 200
    p.rotate()
    fresh = p.token("observer-svc", resource=AUDIENCE)  # signed with a kid the service has never seen
    assert client.get("/api/v1/receipts", headers=bearer(fresh)).status_code == 200
