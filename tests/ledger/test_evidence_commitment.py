"""Receipts commit to all of their evidence (SPEC §8), on both backends: a ``pattern.detected`` receipt for 150
events lists a sample of 100 ids, the exact count, ``evidence_truncated: true`` and the RFC 9162 Merkle root over
every (id, content hash); ``knhk receipts evidence SEQ`` recomputes it from the store, and an observation row
edited behind the product's back (its append-only trigger dropped by the database superuser, then restored) is
detected and named — also when the attacker rewrites the stored hash with it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from knhk.app.access import RoleBasedAccess
from knhk.app.application import Application
from knhk.app.runtime import Runtime
from knhk.identity.local import LocalIssuer
from knhk.observations.evidence import check_evidence
from knhk.observations.model import content_hash
from knhk.proof.evidence import SCHEME
from knhk.proof.merkle import leaf_hash, mth
from knhk.service.app import create_app

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ledger_support import RawDb, run_cli

SQLITE_TRIGGER = ("CREATE TRIGGER observations_no_update BEFORE UPDATE ON observations "
                  "BEGIN SELECT RAISE(ABORT, 'observations is append-only: UPDATE refused'); END")


@contextmanager
def behind_the_products_back(url: str) -> Iterator[RawDb]:
    """A superuser connection with the observations' append-only trigger dropped (SQLite) or disabled
    (PostgreSQL) for the duration, and put back afterwards."""
    raw = RawDb(url)
    try:
        if raw.sqlite:
            raw.execute("DROP TRIGGER observations_no_update")
        else:
            raw.execute("ALTER TABLE observations DISABLE TRIGGER observations_append_only")
        try:
            yield raw
        finally:
            if raw.sqlite:
                raw.execute(SQLITE_TRIGGER)
            else:
                raw.execute("ALTER TABLE observations ENABLE TRIGGER observations_append_only")
    finally:
        raw.close()


def _payments(n: int) -> list[dict[str, Any]]:
    return [{"id": f"pc-{i:03d}", "event_type": "payment.created", "sector": "finance",
             "value": {"account_id": "A-1", "transaction_amount": 10 + i, "currency": "EUR"}} for i in range(n)]


def _cli(rt: Runtime, *args: str) -> Any:
    return run_cli(["receipts", "evidence", *args], rt.settings.data_dir, rt.settings.resolved_database_url)


def test_a_pattern_receipt_commits_to_all_150_events_and_an_edited_row_is_detected(runtime: Runtime) -> None:
    rt = runtime
    rt.ingestor.ingest_batch(_payments(150))
    rt.run_cycle("finance")
    receipt, = [e for e in rt.ledger.entries("receipts", kind="pattern.detected", limit=1000)
                if e.fields["subject"] == "high_frequency:payment.created"]
    data = receipt.fields["data"]
    sample = receipt.fields["evidence"]
    assert len(sample) == 100
    assert (data["evidence_count"], data["evidence_truncated"], data["evidence_scheme"]) == (150, True, SCHEME)
    assert "evidence_truncated" not in data["details"]  # one flag, the receipt's own
    stored = {o.id: o for o in rt.reader.query(sector="finance", limit=1000).items}
    assert len(stored) == 150
    assert set(sample) <= set(stored)
    expected = mth([leaf_hash(f"{i} {stored[i].content_hash}".encode()) for i in sorted(stored)]).hex()
    assert data["evidence_root"] == expected

    intact = _cli(rt, str(receipt.seq), "--json")
    assert intact.returncode == 0, intact.stderr
    report = orjson.loads(intact.stdout)
    assert (report["ok"], report["checked"], report["evidence_root"]) == (True, 150, expected)

    outside = sorted(set(stored) - set(sample))[0]  # not even in the sample: only the commitment covers it
    url = rt.settings.resolved_database_url
    with behind_the_products_back(url) as raw:
        raw.execute("UPDATE observations SET value=? WHERE id=?",
                    ('{"account_id":"A-1","transaction_amount":9999999,"currency":"EUR"}', outside))
    edited = _cli(rt, str(receipt.seq), "--json")
    assert edited.returncode == 1
    mismatch = orjson.loads(edited.stdout)["first_mismatch"]
    assert mismatch["observation_id"] == outside
    assert "was changed after it was stored" in mismatch["problem"]
    text = _cli(rt, str(receipt.seq))
    assert text.returncode == 1
    assert text.stderr.strip().startswith(f"error: entry {receipt.seq} of log receipts: observation {outside} ")
    assert "Traceback" not in text.stderr
    verify = run_cli(["receipts", "verify", "--evidence"], rt.settings.data_dir, url)
    assert verify.returncode == 1, verify.stdout
    assert f"observation {outside} " in verify.stderr  # the chain verifies; the evidence does not
    assert "VERIFIED" in verify.stdout

    # the trigger is back: the product's own database still refuses the change
    raw = RawDb(url)
    try:
        with pytest.raises(Exception, match="append-only"):
            raw.execute("UPDATE observations SET value='{}' WHERE id=?", (outside,))
    finally:
        raw.close()

    # a careful attacker rewrites the stored content hash too: every row is self-consistent, the root is not
    value = {"account_id": "A-1", "transaction_amount": 9999999, "currency": "EUR"}
    new_hash = content_hash("payment.created", "finance", None, value, {})
    with behind_the_products_back(url) as raw:
        raw.execute("UPDATE observations SET content_hash=? WHERE id=?", (new_hash, outside))
    rewritten = check_evidence(rt.ledger, rt.db, "receipts", receipt.seq)
    assert not rewritten.ok
    assert "no longer hash to the committed root" in rewritten.message


def test_guard_receipts_commit_to_the_observation_content(runtime: Runtime) -> None:
    rt = runtime
    result = rt.ingestor.ingest({"id": "big-1", "event_type": "payment.settled", "sector": "finance",
                                 "value": {"account_id": "A-1", "transaction_amount": 5_000_000}})
    receipts = [rt.ledger.entry_by_id(i) for i in result.receipt_ids]
    assert {r.kind for r in receipts} == {"guard.violated", "alert.raised"}
    for r in receipts:
        assert (r.fields["data"]["evidence_count"], r.fields["data"]["evidence_truncated"]) == (1, False)
        assert check_evidence(rt.ledger, rt.db, "receipts", r.seq).ok
    with behind_the_products_back(rt.settings.resolved_database_url) as raw:
        raw.execute("UPDATE observations SET value=? WHERE id=?",
                    ('{"account_id":"A-1","transaction_amount":5}', "big-1"))
    for r in receipts:
        report = check_evidence(rt.ledger, rt.db, "receipts", r.seq)
        assert not report.ok
        assert report.first_mismatch is not None
        assert report.first_mismatch["observation_id"] == "big-1"


def test_the_api_recomputes_a_receipts_evidence(runtime: Runtime) -> None:
    rt = runtime
    rt.ingestor.ingest_batch(_payments(120))
    rt.run_cycle("finance")
    receipt, = [e for e in rt.ledger.entries("receipts", kind="pattern.detected", limit=1000)
                if e.fields["subject"] == "high_frequency:payment.created"]
    token = LocalIssuer.from_settings(rt.settings).mint(["observer"], subject="ann@example.org").token
    application = Application(rt, RoleBasedAccess(rt.settings.auth_mfa_required_roles))
    with TestClient(create_app(rt.settings, application=application, background=False)) as client:
        response = client.get(f"/api/v1/receipts/{receipt.seq}/evidence",
                              headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["ok"], body["evidence_count"], body["checked"]) == (True, 120, 120)
        cycle = client.get("/api/v1/receipts/0/evidence", headers={"Authorization": f"Bearer {token}"})
        assert cycle.json()["ok"] is True
        assert cycle.json()["committed"] is False


def test_the_commitment_root_is_the_rfc9162_tree_hash_and_sets_round_trip() -> None:
    from knhk.proof.evidence import commit, decode_members, encode_members, evidence_root, item, merkle_root

    for n in range(0, 70):
        leaves = [leaf_hash(f"leaf {i}".encode()) for i in range(n)]
        assert merkle_root(leaves) == mth(leaves), n
    members = [item(f"obs-{i:04d}", f"{i:064x}", seq) for i, seq in zip(range(300), range(7, 3000, 10), strict=False)]
    committed = commit(reversed(members), sample_from=[m[0] for m in members])
    assert committed.root == evidence_root((f"obs-{i:04d}", f"{i:064x}") for i in range(300))
    assert (committed.count, committed.truncated, committed.sample[-1]) == (300, True, "obs-0299")
    encoding, blob = encode_members(committed.members)
    assert decode_members(encoding, blob) == ("seqs", [seq for _, _, seq in members])
    unknown = [item("b", "1" * 64), item("a", "2" * 64)]
    assert decode_members(*encode_members(unknown)) == ("ids", ["a", "b"])
