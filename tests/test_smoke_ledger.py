from knhk.ledger.bundle import verify_bundle
from knhk.ledger.entry import EntryDraft
from knhk.runtime import Runtime


def test_append_verify_prove_roundtrip(runtime: Runtime) -> None:
    entries = runtime.ledger.append_many(
        [EntryDraft(log="receipts", kind="test.appended", data={"i": i}) for i in range(300)]
    )
    assert [e.seq for e in entries] == list(range(300))
    report = runtime.ledger.verify("receipts")
    assert report.ok, report.to_json()
    assert verify_bundle(runtime.ledger.prove("receipts", 123))["seq"] == 123
