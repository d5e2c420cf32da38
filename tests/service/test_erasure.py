"""GDPR erasure through the API: after crypto-shredding a person who ingested, approved and acted, the
ledger still verifies, no natural identifier of theirs is readable anywhere in a full database dump (plain or
hex-encoded), the pseudonym can no longer be resolved, and the report's counts are real."""

from __future__ import annotations

import sqlite3
import subprocess
from typing import Any

from service_support import Api

PERSON = "dana.whitfield@bank.example"


def dump(api: Api) -> str:
    rt = api.runtime
    if rt.db.dialect == "sqlite":
        conn = sqlite3.connect(rt.db.path)
        try:
            return "\n".join(conn.iterdump())
        finally:
            conn.close()
    out = subprocess.run(["pg_dump", "--no-owner", rt.db.url], check=True, capture_output=True, text=True)
    return out.stdout


def readable(text: str, needle: str) -> bool:
    raw = needle.encode()
    return needle in text or raw.hex() in text.lower() or raw.hex().upper() in text


def test_erasure_leaves_nothing_readable_and_the_ledger_verifying(api_any: Api) -> None:
    api = api_any
    c = api.client
    person = api.token("ingestor", "validator", "proposer", subject=PERSON, sector="finance")
    for i in range(3):
        c.post("/api/v1/observations", json={"id": f"e-{i}", "event_type": "payment.created", "sector": "finance",
                                             "value": {"account_id": "A", "transaction_amount": 1, "currency": "EUR"}},
               headers=person)
    proposal = c.post("/api/v1/proposals", headers=api.token("proposer", subject="paul@bank.example"), json={
        "sector": "finance", "rationale": "document accounts", "additions": [[
            "<https://knhk.dev/ns/finance#Account>", "<http://www.w3.org/2000/01/rdf-schema#comment>", '"acct"']]})
    pid = proposal.json()["id"]
    c.post(f"/api/v1/proposals/{pid}/validate", headers=person)
    assert c.post(f"/api/v1/proposals/{pid}/approvals", json={}, headers=person).json()["outcome"] == "held"
    c.get("/api/v1/receipts", headers={"Authorization": "Bearer forged"})
    api.client.app.state.knhk.ingest_audit.flush(everything=True)  # type: ignore[attr-defined]
    identity = f"urn:knhk:local#{PERSON}"
    pseudonym = api.runtime.subjects.lookup(identity)
    assert pseudonym is not None
    assert api.runtime.subjects.identity(pseudonym) == identity
    before = dump(api)
    assert readable(before, "payment.created")  # the dump really holds the data
    assert pseudonym in before
    assert not readable(before, PERSON), "the identity must never be stored in clear, even before erasure"

    admin = api.token("administrator", subject="dpo@bank.example")
    report: dict[str, Any] = c.post(f"/api/v1/subjects/{pseudonym}/erasure", headers=admin).json()
    assert report["erased"] is True
    assert report["pseudonym"] == pseudonym
    assert report["identity_rows_deleted"] == 1
    assert report["key_rows_deleted"] == 1
    assert report["observations_ingested"] == 3
    assert report["approvals_referencing"] == 1
    assert report["ledger_entries_referencing"] == 1  # the approval.recorded receipt names the approver
    assert report["audit_entries_referencing"] == 3  # ingest minute, validation, approval

    after = dump(api)
    assert not readable(after, PERSON)
    assert pseudonym in after  # immutable rows keep the now unlinkable pseudonym
    assert api.runtime.subjects.identity(pseudonym) is None
    assert api.runtime.subjects.lookup(identity) is None
    for log in ("receipts", "audit"):
        assert api.runtime.ledger.verify(log).ok
    erasures = api.runtime.audit.events(action="subject.erased")
    assert erasures[-1].resource == f"subject/{pseudonym}"
    # erasing again is a clear no-op, an unknown subject a 404
    again = c.post(f"/api/v1/subjects/{pseudonym}/erasure", headers=admin).json()
    assert again["erased"] is False
    assert c.post("/api/v1/subjects/nobody@nowhere.example/erasure", headers=admin).status_code == 404
