"""The verifier catches every kind of tampering, and ``knhk receipts verify`` says so with its exit code.

A populated ledger (two logs, a key rotation, periodic and closing checkpoints) is built once per backend;
each Hypothesis example tampers with a fresh copy of it (SQLite backup / PostgreSQL ``CREATE DATABASE …
TEMPLATE``) through a raw connection whose append-only protection a superuser removed, then runs the real
verifier. Proves, on both backends: flipping any byte of any stored column of any entry (payload, id, sig,
ts_us, kind, sector, subject, key_id, log, seq) fails verification and names that entry as the first bad
seq; deleting any entry; truncating the tail (caught by a stored checkpoint); rewriting a tail and
re-signing it with the log's own keys, stored Merkle nodes included (caught only by checkpoint
consistency, which the report says); a timestamp earlier than its parent's, re-signed so that nothing else
is wrong (counted as retrocausation); altering or deleting any Merkle node; altering any checkpoint row or
the keyring. The CLI exits 0 only when everything verifies and 1 otherwise, naming the first bad seq and
why, and its JSON report carries the SPEC §8 fields.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ledger_support import (
    TableDump,
    attacker,
    drop_database,
    dump_ledger,
    key_plan,
    make_settings,
    new_database,
    read_key,
    restore_ledger,
    rewrite_log,
    run_cli,
    sample_drafts,
    scratch_copy,
)

from knhk.app.runtime import Runtime
from knhk.ledger.verify import VerifyReport, verify_log
from knhk.storage.database import Database

SPEC_FIELDS = {
    "total_count": int, "verified_count": int, "signature_failures": int, "chain_breaks": int,
    "retrocausation_violations": int, "tree_size": int, "root_hash": str, "checkpoint_consistent": bool,
    "last_verified_timestamp": str,
}
ENTRY_COLUMNS = ("payload", "id", "sig", "ts_us", "kind", "sector", "subject", "key_id", "log", "seq")
PROPERTY = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass(frozen=True)
class Pristine:
    url: str
    data_dir: Path
    size: int  # entries in the receipts log
    scratch: Path
    dump: TableDump

    @contextmanager
    def copy(self) -> Iterator[str]:
        """A database to tamper with, as the pristine one: on SQLite a fresh copy of the file; on PostgreSQL
        the pristine database itself, put back row for row afterwards (cloning a PostgreSQL database forces
        a server-wide checkpoint, which can stall for long on a server other tests are loading)."""
        if self.url.startswith("sqlite"):
            with scratch_copy(self.url, self.scratch) as url:
                yield url
            return
        try:
            yield self.url
        finally:
            restore_ledger(self.url, self.dump)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def pristine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pristine]:
    base = tmp_path_factory.mktemp(f"verify-{request.param}")
    url = new_database(request.param, base / "db")
    rt = Runtime.open(make_settings(url, base / "data", checkpoint_every_entries=40))  # sector packs too
    try:
        for i in range(0, 120, 12):
            rt.ledger.append_many(sample_drafts(12, start=i))
        rt.ledger.append_many(sample_drafts(20, log="audit"))
        rt.ledger.rotate_key()
        for i in range(120, 180, 15):
            rt.ledger.append_many(sample_drafts(15, start=i))
        rt.ledger.checkpoint("receipts")
        rt.ledger.checkpoint("audit")
        size = rt.ledger.tree_size("receipts")
        report = rt.ledger.verify("receipts")
        assert report.ok, report.to_json()
        assert report.checkpoints_checked >= 5
    finally:
        rt.close()
    pristine = Pristine(url, base / "data", size, base, dump_ledger(url))
    yield pristine
    assert dump_ledger(url) == pristine.dump  # every example really put the database back
    drop_database(url)


def verify(url: str, log: str = "receipts") -> VerifyReport:
    db = Database(url, pool_min=1, pool_max=2)
    try:
        return verify_log(db, log, workers=1)
    finally:
        db.close()


def _col(value: Any) -> Any:
    return bytes(value) if isinstance(value, memoryview) else value


@st.composite
def tampered_value(draw: st.DrawFn, column: str, value: Any) -> Any:
    """A different value of the same SQL type: one byte flipped, one character changed, one bit flipped."""
    value = _col(value)
    if value is None:
        return draw(st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=8))
    if isinstance(value, bytes):
        i = draw(st.integers(0, len(value) - 1))
        mask = draw(st.integers(1, 255))
        return value[:i] + bytes([value[i] ^ mask]) + value[i + 1:]
    if isinstance(value, int):
        if column == "seq":  # move it past the end or below zero (every seq inside the log is taken)
            return draw(st.sampled_from([value | (1 << draw(st.integers(10, 40))), -1 - value]))
        return value ^ (1 << draw(st.integers(0, 45)))
    i = draw(st.integers(0, len(value) - 1))
    ch = draw(st.characters(min_codepoint=0x21, max_codepoint=0x7E).filter(lambda c: c != value[i]))
    return value[:i] + ch + value[i + 1:]


def _bad(report: VerifyReport) -> None:
    assert not report.ok
    assert report.first_failure is not None


# -- entries ---------------------------------------------------------------------------------------------
@PROPERTY
@given(data=st.data())
def test_changing_any_stored_field_of_any_entry_is_detected(pristine: Pristine, data: st.DataObject) -> None:
    seq = data.draw(st.integers(0, pristine.size - 1), label="seq")
    column = data.draw(st.sampled_from(ENTRY_COLUMNS), label="column")
    with pristine.copy() as url:
        with attacker(url) as raw:
            row = raw.fetchone(f"SELECT {column} FROM ledger_entries WHERE log='receipts' AND seq=?", (seq,))
            assert row is not None
            new = data.draw(tampered_value(column, row[0]), label="new value")
            assert raw.execute(f"UPDATE ledger_entries SET {column}=? WHERE log='receipts' AND seq=?",
                               (new, seq)) == 1
        report = verify(url)
    _bad(report)
    first = report.first_failure
    assert first is not None
    if column in ("log", "seq") and seq == pristine.size - 1:
        # The newest entry vanished from the log: the stored checkpoint of the full log catches it.
        assert not report.checkpoint_consistent
    else:
        assert first.seq == seq, report.to_json()


@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_deleting_any_entry_is_detected(pristine: Pristine, data: st.DataObject) -> None:
    seq = data.draw(st.integers(0, pristine.size - 1), label="seq")
    with pristine.copy() as url:
        with attacker(url) as raw:
            assert raw.execute("DELETE FROM ledger_entries WHERE log='receipts' AND seq=?", (seq,)) == 1
        report = verify(url)
    _bad(report)
    if seq < pristine.size - 1:
        assert report.first_failure is not None
        assert report.first_failure.seq == seq
        assert "missing" in report.first_failure.reason
        assert report.chain_breaks >= 1
    else:
        assert not report.checkpoint_consistent


@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_truncating_the_tail_is_caught_by_a_stored_checkpoint(pristine: Pristine, data: st.DataObject) -> None:
    keep = data.draw(st.integers(1, pristine.size - 1), label="entries kept")
    with pristine.copy() as url:
        with attacker(url) as raw:
            raw.execute("DELETE FROM ledger_entries WHERE log='receipts' AND seq>=?", (keep,))
            # A careful attacker also removes every Merkle node that covers a removed entry.
            for level in range(20):
                raw.execute("DELETE FROM ledger_nodes WHERE log='receipts' AND level=? AND idx>=?",
                            (level, keep >> level))
        report = verify(url)
    _bad(report)
    assert report.tree_size == report.total_count == report.verified_count == keep
    assert report.signature_failures == report.chain_breaks == report.retrocausation_violations == 0
    assert not report.checkpoint_consistent
    assert any("beyond the log's end" in f.reason for f in report.failures)


@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_a_re_signed_rewritten_tail_is_caught_by_checkpoint_consistency(pristine: Pristine,
                                                                         data: st.DataObject) -> None:
    start = data.draw(st.integers(0, pristine.size - 1), label="rewritten from")
    note = data.draw(st.text(max_size=10), label="injected")

    def change(seq: int, fields: dict[str, Any]) -> None:
        fields["data"] = {**fields["data"], "rewritten": note}

    with pristine.copy() as url:
        with attacker(url) as raw:
            plan = key_plan(raw, "receipts", pristine.data_dir / "keys")
            rewrite_log(raw, "receipts", start, plan, change, resign_checkpoints=False)
        report = verify(url)
    _bad(report)
    # Everything the attacker could recompute is consistent: only the checkpoints give the rewrite away.
    assert report.signature_failures == report.chain_breaks == report.retrocausation_violations == 0
    assert report.row_mismatches == report.merkle_node_mismatches == 0
    assert report.verified_count == report.total_count == pristine.size
    assert not report.checkpoint_consistent
    assert report.first_failure is not None
    assert report.first_failure.category == "checkpoint"
    assert "history was rewritten" in report.first_failure.reason


@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_a_timestamp_before_its_parents_is_retrocausation(pristine: Pristine, data: st.DataObject) -> None:
    seq = data.draw(st.integers(1, pristine.size - 1), label="seq")
    earlier = data.draw(st.integers(1, 10**9), label="microseconds earlier")
    with pristine.copy() as url:
        with attacker(url) as raw:
            parent = raw.fetchone("SELECT ts_us FROM ledger_entries WHERE log='receipts' AND seq=?", (seq - 1,))
            assert parent is not None

            def change(s: int, fields: dict[str, Any]) -> None:
                if s == seq:
                    fields["ts_us"] = int(parent[0]) - earlier

            keys_dir = pristine.data_dir / "keys"
            rewrite_log(raw, "receipts", seq, key_plan(raw, "receipts", keys_dir), change,
                        resign_checkpoints=True, checkpoint_signer=lambda key_id: read_key(keys_dir, key_id))
        report = verify(url)
    _bad(report)
    assert report.retrocausation_violations >= 1
    assert report.signature_failures == report.chain_breaks == report.row_mismatches == 0
    assert report.merkle_node_mismatches == 0
    assert report.checkpoint_consistent
    assert report.first_failure is not None
    assert report.first_failure.seq == seq
    assert report.first_failure.category == "retrocausation"


# -- Merkle nodes, checkpoints, keys -------------------------------------------------------------------------
@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_altering_or_deleting_any_merkle_node_is_detected(pristine: Pristine, data: st.DataObject) -> None:
    with pristine.copy() as url:
        with attacker(url) as raw:
            nodes = raw.fetchall("SELECT level, idx, hash FROM ledger_nodes WHERE log='receipts' ORDER BY level, idx")
            level, idx, stored = data.draw(st.sampled_from(nodes), label="node")
            if data.draw(st.booleans(), label="delete"):
                raw.execute("DELETE FROM ledger_nodes WHERE log='receipts' AND level=? AND idx=?", (level, idx))
            else:
                new = data.draw(tampered_value("hash", stored), label="hash")
                raw.execute("UPDATE ledger_nodes SET hash=? WHERE log='receipts' AND level=? AND idx=?",
                            (new, level, idx))
        report = verify(url)
    _bad(report)
    assert report.merkle_node_mismatches >= 1
    assert any(f"(level {level}, index {idx})" in f.reason for f in report.failures)


@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_altering_any_checkpoint_row_is_detected(pristine: Pristine, data: st.DataObject) -> None:
    column = data.draw(st.sampled_from(["note", "root_hash", "tree_size", "key_id"]), label="column")
    with pristine.copy() as url:
        with attacker(url) as raw:
            sizes = [int(r[0]) for r in raw.fetchall(
                "SELECT tree_size FROM ledger_checkpoints WHERE log='receipts' ORDER BY tree_size")]
            size = data.draw(st.sampled_from(sizes), label="checkpoint")
            row = raw.fetchone(f"SELECT {column} FROM ledger_checkpoints WHERE log='receipts' AND tree_size=?",
                               (size,))
            assert row is not None
            new = data.draw(tampered_value("seq" if column == "tree_size" else column, row[0]), label="new")
            raw.execute(f"UPDATE ledger_checkpoints SET {column}=? WHERE log='receipts' AND tree_size=?",
                        (new, size))
        report = verify(url)
    _bad(report)
    assert not report.checkpoint_consistent
    assert report.signature_failures == report.chain_breaks == 0  # the entries themselves are fine


def test_tampering_with_the_keyring_is_detected(pristine: Pristine) -> None:
    for sql in (
        "UPDATE ledger_keys SET public_key=? WHERE key_id=(SELECT MIN(key_id) FROM ledger_keys)",
        "UPDATE ledger_key_use SET valid_from_seq=valid_from_seq+3 WHERE log='receipts' AND valid_from_seq>0",
        "DELETE FROM ledger_key_use WHERE log='receipts' AND valid_from_seq>0",
    ):
        with pristine.copy() as url:
            with attacker(url) as raw:
                raw.execute(sql, (b"\x07" * 32,) if "?" in sql else ())
            report = verify(url)
        _bad(report)
        assert report.signature_failures >= 1, sql


# -- the command -----------------------------------------------------------------------------------------
def _tamper_entry_37(url: str) -> None:
    with attacker(url) as raw:
        payload = raw.fetchone("SELECT payload FROM ledger_entries WHERE log='receipts' AND seq=37")
        assert payload is not None
        raw.execute("UPDATE ledger_entries SET payload=? WHERE log='receipts' AND seq=37",
                    (bytes(payload[0]).replace(b'"v":1', b'"v":2'),))


def test_cli_verify_exit_codes_and_report(pristine: Pristine, tmp_path: Path) -> None:
    good = run_cli(["receipts", "verify", "--json"], pristine.data_dir, pristine.url)
    assert good.returncode == 0, good.stdout + good.stderr
    report = orjson.loads(good.stdout)
    for field, kind in SPEC_FIELDS.items():
        assert isinstance(report[field], kind), field
    assert report["ok"] is True
    assert report["total_count"] == report["verified_count"] == report["tree_size"] == pristine.size
    assert report["signature_failures"] == report["chain_breaks"] == report["retrocausation_violations"] == 0
    assert report["checkpoint_consistent"] is True
    assert len(report["root_hash"]) == 64
    assert report["last_verified_timestamp"].endswith("Z")

    both = run_cli(["receipts", "verify", "--log", "all"], pristine.data_dir, pristine.url)
    assert both.returncode == 0, both.stdout + both.stderr
    assert both.stdout.count("VERIFIED") == 2

    with pristine.copy() as url:
        _tamper_entry_37(url)
        data = tmp_path / "data"
        shutil.copytree(pristine.data_dir, data)
        bad = run_cli(["receipts", "verify"], data, url)
        bad_json = run_cli(["receipts", "verify", "--json"], data, url)
        audit_only = run_cli(["receipts", "verify", "--log", "audit"], data, url)
        everything = run_cli(["receipts", "verify", "--log", "all", "--json"], data, url)
    assert bad.returncode == 1
    assert "FAILED" in bad.stdout
    assert "first failure at seq 37:" in bad.stdout
    assert "stored id does not equal SHA-256 of the payload" in bad.stdout
    assert bad_json.returncode == 1
    out = orjson.loads(bad_json.stdout)
    assert out["ok"] is False
    assert out["first_failure"]["seq"] == 37
    assert out["verified_count"] < out["total_count"]
    assert out["chain_breaks"] >= 1
    assert audit_only.returncode == 0  # the other log is untouched
    assert everything.returncode == 1
    assert orjson.loads(everything.stdout)["logs"]["audit"]["ok"] is True


def _textfile(path: Path) -> dict[tuple[str, str], float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {(s.name, s.labels["log"]): s.value
            for family in text_string_to_metric_families(path.read_text()) for s in family.samples}


def test_cli_verify_writes_its_result_as_prometheus_text_for_runs_outside_the_service(
        pristine: Pristine, tmp_path: Path) -> None:
    prom = tmp_path / "knhk_verify.prom"
    before = time.time()
    good = run_cli(["receipts", "verify", "--log", "all", "--metrics-file", str(prom)], pristine.data_dir, pristine.url)
    assert good.returncode == 0, good.stdout + good.stderr
    samples = _textfile(prom)
    assert samples[("knhk_receipt_chain_valid", "receipts")] == samples[("knhk_receipt_chain_valid", "audit")] == 1
    assert before - 1 <= samples[("knhk_receipt_chain_verified_timestamp_seconds", "receipts")] <= time.time() + 1

    with pristine.copy() as url:
        _tamper_entry_37(url)
        bad = run_cli(["receipts", "verify", "--log", "all", "--metrics-file", str(prom)], pristine.data_dir, url)
    assert bad.returncode == 1  # the file still says what failed: a broken chain must reach the alert
    samples = _textfile(prom)
    assert samples[("knhk_receipt_chain_valid", "receipts")] == 0
    assert samples[("knhk_receipt_chain_valid", "audit")] == 1
    assert not list(tmp_path.glob("knhk_verify.prom.*"))  # written beside and renamed: no leftovers

    nowhere = run_cli(["receipts", "verify", "--metrics-file", str(tmp_path / "no" / "such.prom")],
                      pristine.data_dir, pristine.url)
    assert nowhere.returncode == 2
    assert "the directory" in nowhere.stderr
    assert "does not exist" in nowhere.stderr
    assert "Traceback" not in nowhere.stderr


def test_cli_verify_refuses_an_unknown_log(pristine: Pristine) -> None:
    done = run_cli(["receipts", "verify", "--log", "ledger"], pristine.data_dir, pristine.url)
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error: unknown log 'ledger'")
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_damaged_ledger_is_reported_not_crashed_on(pristine: Pristine) -> None:
    """Payloads that are not JSON at all, or not objects, are failures of their entries, not exceptions."""
    with pristine.copy() as url:
        with attacker(url) as raw:
            raw.execute("UPDATE ledger_entries SET payload=? WHERE log='receipts' AND seq=3", (b"\xff\xfe",))
            raw.execute("UPDATE ledger_entries SET payload=? WHERE log='receipts' AND seq=5", (b"[1,2]",))
        report = verify(url)
    _bad(report)
    assert report.failures[0].seq == 3
    assert "not canonical JSON" in report.failures[0].reason
    assert any(f.seq == 5 and "not canonical JSON" in f.reason for f in report.failures)
