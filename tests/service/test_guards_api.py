"""Guard relaxations through the HTTP API (SPEC §7, §10) on both backends, as the authenticated people the
tokens name: request (operator with MFA), the author's own approval refused (403), a second vote of the same
person refused (409), the quorum by criticality (high: 2 distinct validators) granting the window, revoke,
reject, immutable guards refused (409), bad input answered 422, every transition a receipt."""

from __future__ import annotations

from typing import Any

from service_support import Api

H = 3600


def relax(api: Api, guard: str, sector: str, headers: dict[str, str], duration_s: int = 2 * H) -> Any:
    return api.client.post(f"/api/v1/guards/{guard}/relaxations", headers=headers,
                           json={"sector": sector, "duration_s": duration_s, "reason": "sensor swap on ward 3"})


def decide(api: Api, rid: str, headers: dict[str, str], decision: str = "approve") -> Any:
    return api.client.post(f"/api/v1/relaxations/{rid}/approvals", headers=headers,
                           json={"decision": decision, "comment": "looked at it"})


def test_relaxation_lifecycle_over_http(api_any: Api) -> None:
    api = api_any
    author = api.token("operator", "validator", subject="olga@hospital.example", mfa=True)
    v1 = api.token("validator", subject="vera@hospital.example", sector="healthcare")
    v2 = api.token("validator", subject="victor@hospital.example", sector="healthcare")
    observer = api.token("observer", subject="owen@hospital.example")

    made = relax(api, "HC-LAB-001", "healthcare", author)
    assert made.status_code == 201, made.text
    r = made.json()
    rid = r["id"]
    assert (r["state"], r["quorum"], r["min_review_s"], r["criticality"]) == ("pending", 2, 12 * H, "high")
    assert r["author"].startswith("sub_")  # the token's subject, pseudonymised

    own = decide(api, rid, author)
    assert own.status_code == 403, own.text
    assert "author" in own.json()["detail"]
    first = decide(api, rid, v1)
    assert first.status_code == 200, first.text
    assert (first.json()["state"], first.json()["approvals"]) == ("pending", 1)
    again = decide(api, rid, v1)
    assert again.status_code == 409, again.text
    granted = decide(api, rid, v2)
    assert granted.status_code == 200, granted.text
    g = granted.json()
    assert (g["status"], g["state"], g["approvals"]) == ("granted", "scheduled", 2)
    assert g["starts_us"] - g["requested_us"] == 12 * H * 1_000_000  # the minimum review of a high guard
    assert g["ends_us"] - g["starts_us"] == 2 * H * 1_000_000
    assert len({d["subject"] for d in g["decisions"]}) == 2

    shown = api.client.get(f"/api/v1/relaxations/{rid}", headers=observer)
    assert shown.status_code == 200
    assert shown.json()["state"] == "scheduled"
    assert api.client.post(f"/api/v1/relaxations/{rid}/revoke", headers=observer, json={}).status_code == 403
    revoked = api.client.post(f"/api/v1/relaxations/{rid}/revoke", headers=author, json={"reason": "done early"})
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["state"] == "revoked"

    second = relax(api, "HC-LAB-001", "healthcare", author).json()["id"]
    rejected = decide(api, second, v1, "reject")
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["state"] == "rejected"
    listed = api.client.get("/api/v1/relaxations?sector=healthcare", headers=observer)
    assert listed.status_code == 200
    assert {x["id"]: x["state"] for x in listed.json()} == {rid: "revoked", second: "rejected"}

    immutable = relax(api, "FIN-LIMIT-001", "finance", author)
    assert immutable.status_code == 409, immutable.text
    assert immutable.json()["code"] == "immutable"
    assert relax(api, "NO-SUCH-GUARD", "healthcare", author).status_code == 404
    assert relax(api, "HC-LAB-001", "healthcare", author, duration_s=0).status_code == 422
    assert relax(api, "HC-LAB-001", "healthcare", v1).status_code == 403  # validators may not request

    kinds = [e.kind for e in api.runtime.ledger.entries("receipts", limit=10_000) if e.subject == rid]
    assert kinds == ["relaxation.requested", "relaxation.refused", "relaxation.decided", "relaxation.refused",
                     "relaxation.decided", "relaxation.granted", "relaxation.revoked"]
