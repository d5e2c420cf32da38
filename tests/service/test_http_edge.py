"""The HTTP edge refuses what it cannot decide: non-finite token claims (401, never 500), ambiguous or invalid JSON
bodies (duplicate keys, lone UTF-16 surrogates: 400 naming the problem), observations of a sector that has no
installed pack (422 naming the installed sectors, nothing stored) — on both storage backends."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519
from service_support import Api

from knhk.identity.local import LOCAL_AUDIENCE, LOCAL_ISSUER, LocalIssuer, public_jwk

INSTALLED = "finance, healthcare, logistics, manufacturing"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def crafted_token(issuer: LocalIssuer, payload_text: str) -> str:
    """A token validly signed by the local issuer whose payload is exactly ``payload_text`` (so it can hold
    JSON that no well-behaved encoder writes: NaN, Infinity, 1e400)."""
    key = issuer.key()
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    header = _b64(json.dumps({"alg": "EdDSA", "typ": "at+jwt", "kid": public_jwk(key)["kid"]}).encode())
    body = _b64(payload_text.encode())
    signing_input = f"{header}.{body}".encode()
    signature = key.sign(signing_input)
    return f"{header}.{body}.{_b64(signature)}"


def claims_text(**raw: str) -> str:
    now = int(time.time())
    fields = {"iss": json.dumps(LOCAL_ISSUER), "aud": json.dumps(LOCAL_AUDIENCE), "sub": '"mallory@example.org"',
              "roles": '["administrator"]', "amr": '["mfa"]', "iat": str(now), "nbf": str(now),
              "exp": str(now + 600)}
    fields.update(raw)
    return "{" + ",".join(f'"{k}":{v}' for k, v in fields.items()) + "}"


NON_FINITE = [{"exp": "NaN"}, {"exp": "Infinity"}, {"exp": "-Infinity"}, {"exp": "1e400"},
              {"exp": "1" + "0" * 400}, {"nbf": "NaN"}, {"nbf": "-1e400"}, {"iat": "NaN"}, {"iat": "Infinity"},
              {"iat": "-Infinity"}, {"iat": "1e400"}]


def test_signed_tokens_with_non_finite_time_claims_are_401(api: Api) -> None:
    for claim in NON_FINITE:  # token checks happen before any storage: one backend says it all
        token = crafted_token(api.issuer, claims_text(**claim))
        response = api.client.get("/api/v1/receipts", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, (claim, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert "not a finite number" in response.json()["detail"], claim


def test_iat_nan_never_skips_the_maximum_age_check(api: Api) -> None:
    old = int(time.time()) - 10 * 24 * 3600  # far beyond the one-hour maximum age
    control = crafted_token(api.issuer, claims_text(iat=str(old)))
    nan = crafted_token(api.issuer, claims_text(iat="NaN"))
    good = crafted_token(api.issuer, claims_text())
    assert api.client.get("/api/v1/receipts", headers={"Authorization": f"Bearer {good}"}).status_code == 200
    too_old = api.client.get("/api/v1/receipts", headers={"Authorization": f"Bearer {control}"})
    assert too_old.status_code == 401
    assert "too old" in too_old.json()["detail"]
    assert api.client.get("/api/v1/receipts", headers={"Authorization": f"Bearer {nan}"}).status_code == 401


def _post(api: Api, path: str, body: bytes, **headers: str) -> Any:
    return api.client.post(path, content=body, headers={"Content-Type": "application/json",
                                                         **api.token("administrator", sector="compliance"),
                                                         **headers})


DUPLICATES = [
    ("/api/v1/observations", b'{"event_type":"payment.created","sector":"finance","sector":"healthcare"}', "sector"),
    ("/api/v1/observations",
     b'{"event_type":"payment.created","sector":"finance","value":{"transaction_amount":1,"transaction_amount":5e6}}',
     "transaction_amount"),
    ("/api/v1/observations/batch", b'{"observations":[{"event_type":"a","sector":"finance","id":"x","id":"y"}]}',
     "id"),
    ("/api/v1/proposals", b'{"sector":"finance","rationale":"r","rationale":"s","additions":[]}', "rationale"),
    ("/api/v1/snapshots/rollback", b'{"sector":"finance","sector":"logistics"}', "sector"),
    ("/api/v1/cycles", b'{"sector":"finance","sector":"healthcare"}', "sector"),
]


def test_a_duplicate_key_in_any_json_body_is_refused_naming_it(api_any: Api) -> None:
    for path, body, key in DUPLICATES:
        response = _post(api_any, path, body)
        assert response.status_code == 400, (path, response.text)
        problem = response.json()
        assert response.headers["content-type"] == "application/problem+json"
        assert problem["key"] == key
        assert f"duplicate key {key!r}" in problem["detail"]
    assert api_any.runtime.reader.count() == 0


def test_a_lone_surrogate_in_a_json_string_is_refused(api_any: Api) -> None:
    for text in (b'"\\ud800"', b'"\\udc00x"', b'"a\\ud83dz"', b'"\\ud800\\ud800"'):
        for body in (b'{"event_type":"e.t","sector":"finance","value":{"note":' + text + b"}}",
                     b'{"event_type":"e.t","sector":"finance","value":{' + text + b':1}}',
                     b'{"event_type":"e.t","sector":"finance","metadata":{"k":' + text + b"}}"):
            response = _post(api_any, "/api/v1/observations", body)
            assert response.status_code == 400, (body, response.text)
            assert "surrogate" in response.json()["detail"]
    assert api_any.runtime.reader.count() == 0
    paired = _post(api_any, "/api/v1/observations",
                   b'{"event_type":"e.t","sector":"finance","value":{"note":"\\ud83d\\ude00"}}')
    assert paired.status_code == 201, paired.text


def test_an_observation_of_a_sector_without_an_installed_pack_is_refused(api_any: Api) -> None:
    response = _post(api_any, "/api/v1/observations", b'{"event_type":"e.t","sector":"nope","value":{"a":1}}')
    assert response.status_code == 422, response.text
    assert response.json()["detail"] == f"sector 'nope' has no installed sector pack; installed: {INSTALLED}"
    batch = _post(api_any, "/api/v1/observations/batch",
                  b'{"observations":[{"event_type":"e.t","sector":"finance"},{"event_type":"e.t","sector":"nope"}]}')
    assert batch.status_code == 422, batch.text
    assert batch.json()["detail"].startswith("observation 1: sector 'nope' has no installed sector pack")
    assert api_any.runtime.reader.count() == 0
