"""The API's behaviour as a client sees it: problem+json errors with the right status, atomic and idempotent
ingest, cursors, PHI justification, separation of duties, the approval flow, metrics and health."""

from __future__ import annotations

from typing import Any

import pytest
from service_support import Api

OK_VALUE = {"account_id": "A-1", "transaction_amount": 10, "currency": "EUR"}


def obs(i: int = 0, **kw: Any) -> dict[str, Any]:
    return {"event_type": "payment.created", "sector": "finance", "value": dict(OK_VALUE), **kw} | (
        {"id": f"c-{i}"} if "id" not in kw else {})


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["detail"]
    assert body["type"].startswith("https://knhk.dev/problems/")
    return body


def test_errors_are_problems_with_the_right_status(api: Api) -> None:
    h = api.token("ingestor")
    c = api.client
    problem(c.post("/api/v1/observations", content=b"{not json", headers={**h, "content-type": "application/json"}),
            400)
    problem(c.post("/api/v1/observations", content=b"a=1", headers={**h, "content-type": "text/plain"}), 415)
    big = b'{"x": "' + b"a" * (api.settings.max_body_bytes + 10) + b'"}'
    problem(c.post("/api/v1/observations", content=big, headers={**h, "content-type": "application/json"}), 413)
    body = problem(c.post("/api/v1/observations", json=obs(event_type="bad type!"), headers=h), 422)
    assert "event_type" in body["detail"]
    problem(c.post("/api/v1/observations", json={"event_type": "x", "sector": "finance", "bogus": 1}, headers=h), 422)
    problem(c.get("/api/v1/observations/nope?x=1", headers=api.token("observer")), 404)
    problem(c.get("/api/v1/receipts/999999", headers=api.token("observer")), 404)
    c.post("/api/v1/observations", json=obs(1), headers=h)
    body = problem(c.post("/api/v1/observations", json=obs(1, value={"account_id": "other"}), headers=h), 409)
    assert "c-1" in body["detail"] or "conflict" in body["code"]


def test_too_large_value_and_skew_are_refused(api: Api) -> None:
    h = api.token("ingestor")
    big = {"blob": "x" * (65 * 1024)}
    problem(api.client.post("/api/v1/observations", json=obs(2, value=big), headers=h), 413)
    problem(api.client.post("/api/v1/observations", json=obs(3, timestamp="2001-01-01T00:00:00Z"), headers=h), 422)
    assert api.runtime.reader.count("finance") == 0


def test_single_ingest_is_idempotent(api: Api) -> None:
    h = api.token("ingestor")
    first = api.client.post("/api/v1/observations", json=obs(7), headers=h)
    again = api.client.post("/api/v1/observations", json=obs(7), headers=h)
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    assert again.json()["observation"]["id"] == first.json()["observation"]["id"] == "c-7"
    assert api.runtime.reader.count("finance") == 1


def test_batch_is_atomic_on_both_backends(api_any: Api) -> None:
    h = api_any.token("ingestor")
    batch = [obs(i) for i in range(1000)]
    batch[500]["event_type"] = "not valid!"
    body = problem(api_any.client.post("/api/v1/observations/batch", json={"observations": batch}, headers=h), 422)
    assert "500" in body["detail"]
    assert api_any.runtime.reader.count("finance") == 0
    batch[500]["event_type"] = "payment.created"
    ok = api_any.client.post("/api/v1/observations/batch", json={"observations": batch}, headers=h)
    assert ok.status_code == 201, ok.text
    assert ok.json()["stored"] == 1000
    assert api_any.runtime.reader.count("finance") == 1000
    too_many = {"observations": [obs(i) for i in range(10_001)]}
    assert api_any.client.post("/api/v1/observations/batch", json=too_many, headers=h).status_code in (413, 422)


def test_cursor_walks_every_observation_once(api: Api) -> None:
    api.client.post("/api/v1/observations/batch", json={"observations": [obs(i) for i in range(25)]},
                    headers=api.token("ingestor"))
    seen: list[str] = []
    cursor = None
    while True:
        url = "/api/v1/observations?sector=finance&limit=7" + (f"&cursor={cursor}" if cursor else "")
        page = api.client.get(url, headers=api.token("observer")).json()
        seen += [o["id"] for o in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"c-{i}" for i in range(25)]
    problem(api.client.get("/api/v1/observations?sector=finance&cursor=%%%", headers=api.token("observer")), 400)


def test_healthcare_reads_need_a_justification_and_are_audited(api: Api) -> None:
    api.client.post("/api/v1/observations", json={"id": "hc-1", "event_type": "patient.admitted",
                                                  "sector": "healthcare",
                                                  "value": {"patient_id": "P-1", "ward": "A"}},
                    headers=api.token("ingestor"))
    h = api.token("observer", subject="nurse@hospital.example")
    problem(api.client.get("/api/v1/observations?sector=healthcare", headers=h), 400)
    problem(api.client.get("/api/v1/observations/hc-1", headers=h), 400)
    ok = api.client.get("/api/v1/observations/hc-1", headers={**h, "X-Access-Justification": "ward round"})
    assert ok.status_code == 200
    assert ok.json()["id"] == "hc-1"
    reads = api.runtime.audit.events(action="phi.read")
    assert [r.reason for r in reads] == ["ward round"]
    assert reads[0].actor.startswith("sub_")


def _human_proposal(api: Api, author: str) -> str:
    body = {"sector": "finance", "rationale": "document accounts", "additions": [
        ["<https://knhk.dev/ns/finance#Account>", "<http://www.w3.org/2000/01/rdf-schema#comment>",
         '"A customer account."']]}
    created = api.client.post("/api/v1/proposals", json=body, headers=api.token("proposer", subject=author))
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def test_approval_flow_and_separation_of_duties(api: Api) -> None:
    pid = _human_proposal(api, "paul@bank.example")
    validated = api.client.post(f"/api/v1/proposals/{pid}/validate", headers=api.token("validator", subject="v@b.ex"))
    assert validated.json()["outcome"] == "held"
    assert any(p["doctrine_id"] == "FIN-APPROVAL-001" for p in validated.json()["report"]["pending_approvals"])
    # the author can neither approve …
    author = api.token("validator", "proposer", subject="paul@bank.example", sector="compliance")
    problem(api.client.post(f"/api/v1/proposals/{pid}/approvals", json={}, headers=author), 403)
    # … nor promote
    snapshot = api.client.get(f"/api/v1/proposals/{pid}", headers=api.token("observer")).json()["candidate_snapshot_id"]
    problem(api.client.post(f"/api/v1/snapshots/{snapshot}/promote", json={},
                            headers=api.token("operator", subject="paul@bank.example")), 403)
    first = api.client.post(f"/api/v1/proposals/{pid}/approvals", json={},
                            headers=api.token("validator", subject="fiona@bank.example", sector="finance"))
    assert first.json()["outcome"] == "held"
    # the same person twice is not a quorum
    problem(api.client.post(f"/api/v1/proposals/{pid}/approvals", json={},
                            headers=api.token("validator", subject="fiona@bank.example", sector="finance")), 409)
    done = api.client.post(f"/api/v1/proposals/{pid}/approvals", json={"comment": "ok"},
                           headers=api.token("validator", subject="carl@bank.example", sector="compliance"))
    assert done.json()["outcome"] == "promoted", done.text
    current = api.client.get("/api/v1/snapshots/current?sector=finance", headers=api.token("observer")).json()
    assert current["id"] == snapshot
    denied = [e for e in api.runtime.audit.events(limit=1000) if e.outcome == "denied"]
    assert {e.action for e in denied} >= {"proposal.approved", "snapshot.promoted"}


def test_promote_stale_base_is_409(api: Api) -> None:
    # manufacturing asks for no approvals, so a forced promotion (no validation receipt) is allowed there
    ids = []
    for who, local in (("paul@plant.example", "QualityInspection"), ("pia@plant.example", "MachineReading")):
        ids.append(api.client.post("/api/v1/proposals", headers=api.token("proposer", subject=who), json={
            "sector": "manufacturing", "rationale": "document", "additions": [[
                f"<https://knhk.dev/ns/manufacturing#{local}>", "<http://www.w3.org/2000/01/rdf-schema#comment>",
                '"documented"']]}).json()["id"])
    admin = api.token("administrator", subject="root@plant.example")
    for p in ids:
        snap = api.client.get(f"/api/v1/proposals/{p}", headers=admin).json()["candidate_snapshot_id"]
        response = api.client.post(f"/api/v1/snapshots/{snap}/promote", json={"force": True, "reason": "drill"},
                                   headers=admin)
        if p == ids[0]:
            assert response.status_code == 200, response.text
            assert response.json()["forced"] is True
        else:
            assert problem(response, 409)["code"] == "stale_base"


def test_rate_limit_answers_429_with_retry_after(api_factory: Any) -> None:
    api = api_factory(rate_limit_per_minute=3)
    h = api.token("observer")
    codes = [api.client.get("/api/v1/receipts", headers=h).status_code for _ in range(5)]
    assert codes[:3] == [200, 200, 200]
    assert codes[3:] == [429, 429]
    last = api.client.get("/api/v1/receipts", headers=h)
    assert int(last.headers["retry-after"]) >= 1


def test_metrics_expose_the_documented_series(api: Api) -> None:
    api.client.post("/api/v1/observations", json=obs(1), headers=api.token("ingestor"))
    api.client.post("/api/v1/cycles", json={"sector": "finance"}, headers=api.token("operator"))
    from knhk.service.scheduler import update_gauges

    update_gauges(api.client.app.state.knhk)  # type: ignore[attr-defined]
    text = api.client.get("/metrics").text
    for name in ("knhk_requests_total", "knhk_request_duration_seconds_bucket", "knhk_observations_ingested_total",
                 "knhk_cycle_duration_seconds_bucket", "knhk_ledger_tree_size", "knhk_receipts_appended_total",
                 "knhk_patterns_detected_total", "knhk_proposals_total", "knhk_snapshot_promotions_total",
                 "knhk_receipt_chain_valid", "knhk_db_pool_connections"):
        assert name in text, f"{name} missing from /metrics"
    assert 'knhk_requests_total{method="POST",route="/api/v1/observations",status="201"}' in text
    assert 'knhk_receipts_appended_total{log="receipts"}' in text
    assert 'knhk_observations_ingested_total{sector="finance"}' in text
    assert 'knhk_cycle_duration_seconds_count{outcome="success",sector="finance"}' in text


def test_health_reports_each_dependency(api_factory: Any) -> None:
    api = api_factory(redis_url="redis://127.0.0.1:1/0")
    assert api.client.get("/health/live").json() == {"status": "alive"}
    ready = api.client.get("/health/ready")
    assert ready.status_code == 200
    assert all(ready.json()["checks"].values())
    health = api.client.get("/health")
    assert health.status_code == 200
    assert health.json()["status"] == "degraded"
    assert health.json()["dependencies"]["redis"]["status"] == "down"
    assert health.json()["dependencies"]["database"]["status"] == "up"


@pytest.mark.parametrize("path", ["/api/v1/receipts/checkpoint", "/api/v1/receipts/0/proof",
                                  "/api/v1/receipts/consistency?first=1&second=2"])
def test_ledger_reads_verify_offline(api: Api, path: str) -> None:
    from knhk.proof.bundle import verify_bundle
    from knhk.proof.checkpoint import verify_checkpoint

    response = api.client.get(path, headers=api.token("observer"))
    assert response.status_code == 200, response.text
    body = response.json()
    if "inclusion_proof" in body:
        assert verify_bundle(body)["seq"] == 0
    elif "note" in body:
        key = api.runtime.keyring.public_key(body["key_id"]).public_key
        assert verify_checkpoint(body["note"], key).tree_size == body["tree_size"]
    else:
        from knhk.proof.merkle import proves_consistency as verify_consistency
        assert verify_consistency(1, 2, bytes.fromhex(body["first_root"]), bytes.fromhex(body["second_root"]),
                                  [bytes.fromhex(h) for h in body["proof"]])
