"""Concurrent single and batch ingest against a live `knhk serve`, and the check of what a crash left behind.

:class:`Load` runs ingest threads (single observations and atomic batches, a third of them over the finance
pack's transaction limit, so each of those is owed a ``guard.violated`` and an ``alert.raised`` receipt) and
records what was sent and what was acknowledged (201). :func:`check` reads the database directly after a
restart and asserts what SPEC §8 promises: every acknowledged observation stored, every batch all or nothing,
every stored over-limit observation with exactly its two receipts, every receipt id an answer named in the
ledger, the ingest counts of the per-minute audit entries adding up to the stored observations, and the
verifier passing on both logs.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from knhk.ledger.verify import verify_log
from knhk.storage.database import Database

OVER_LIMIT = 2_000_000  # above the finance pack's per-transaction limit
BATCH = 5


def payment(oid: str, amount: int) -> dict[str, Any]:
    return {"id": oid, "event_type": "payment.created", "sector": "finance",
            "value": {"account_id": "ACC-1", "transaction_amount": amount, "currency": "EUR"}}


@dataclass
class Load:
    """Ingest threads against ``url``: ``singles`` threads posting one observation at a time, ``batches`` threads
    posting batches of :data:`BATCH`. Ids are unique per ``tag`` (one per round)."""

    url: str
    headers: dict[str, str]
    tag: str
    singles: int = 2
    batches: int = 1
    sent_singles: list[str] = field(default_factory=list)
    acked_singles: dict[str, dict[str, Any]] = field(default_factory=dict)
    sent_batches: list[list[str]] = field(default_factory=list)
    acked_batches: list[tuple[list[str], dict[str, Any]]] = field(default_factory=list)
    over: set[str] = field(default_factory=set)
    statuses: Counter[str] = field(default_factory=Counter)
    stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _amount(self, oid: str, n: int) -> int:
        if n % 3 == 0:
            with self._lock:
                self.over.add(oid)
            return OVER_LIMIT
        return 100 + n

    def _post(self, client: httpx.Client, path: str, body: dict[str, Any]) -> httpx.Response | None:
        try:
            response = client.post(path, json=body, headers=self.headers)
        except httpx.HTTPError as exc:
            with self._lock:
                self.statuses[type(exc).__name__] += 1
            time.sleep(0.05)
            return None
        with self._lock:
            self.statuses[str(response.status_code)] += 1
        if response.status_code != 201:
            time.sleep(0.05)
            return None
        return response

    def _single(self, worker: int) -> None:
        with httpx.Client(base_url=self.url, timeout=15) as client:
            n = 0
            while not self.stop.is_set():
                oid = f"{self.tag}-s{worker}-{n}"
                body = payment(oid, self._amount(oid, n))
                with self._lock:
                    self.sent_singles.append(oid)
                response = self._post(client, "/api/v1/observations", body)
                if response is not None:
                    with self._lock:
                        self.acked_singles[oid] = response.json()
                n += 1

    def _batch(self, worker: int) -> None:
        with httpx.Client(base_url=self.url, timeout=15) as client:
            n = 0
            while not self.stop.is_set():
                ids = [f"{self.tag}-b{worker}-{n}-{k}" for k in range(BATCH)]
                body = {"observations": [payment(oid, self._amount(oid, n + k)) for k, oid in enumerate(ids)]}
                with self._lock:
                    self.sent_batches.append(ids)
                response = self._post(client, "/api/v1/observations/batch", body)
                if response is not None:
                    with self._lock:
                        self.acked_batches.append((ids, response.json()))
                n += 1

    def start(self) -> Load:
        self._threads = [threading.Thread(target=self._single, args=(w,)) for w in range(self.singles)]
        self._threads += [threading.Thread(target=self._batch, args=(w,)) for w in range(self.batches)]
        for thread in self._threads:
            thread.start()
        return self

    def acked(self) -> int:
        with self._lock:
            return len(self.acked_singles) + BATCH * len(self.acked_batches)

    def wait_acked(self, at_least: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.acked() < at_least:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def finish(self) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(60)
            assert not thread.is_alive(), "an ingest thread hung"

    def acknowledged(self) -> dict[str, dict[str, Any]]:
        """Every acknowledged observation id and the answer item that acknowledged it."""
        out = dict(self.acked_singles)
        for _, answer in self.acked_batches:
            for item in answer["results"]:
                out[item["observation"]["id"]] = item
        return out


@dataclass
class Checked:
    """The figures of one check."""

    acknowledged: int
    present: int
    stored: int
    over_stored: int
    receipts_missing: int
    batches_sent: int
    batches_partial: int
    drain_s: float


def _wait_drained(db: Database, timeout: float) -> float:
    """Seconds until no receipt is owed in the outbox any more (the service's poll drains it)."""
    started = time.monotonic()
    while True:
        with db.connection() as conn:
            row = conn.fetchone("SELECT COUNT(*) FROM ledger_outbox WHERE seq IS NULL AND count IS NULL")
        if row is not None and int(row[0]) == 0:
            return time.monotonic() - started
        assert time.monotonic() - started < timeout, f"{row[0] if row else '?'} receipt(s) still owed after {timeout} s"
        time.sleep(0.05)


def check(database_url: str, loads: list[Load], *, drain_timeout: float = 20) -> Checked:
    """Assert the crash-safety promises over everything ``loads`` sent so far (see the module docstring)."""
    db = Database(database_url, pool_min=1, pool_max=2)
    try:
        drain_s = _wait_drained(db, drain_timeout)
        with db.snapshot() as conn:
            stored = {str(r[0]) for r in conn.fetchall("SELECT id FROM observations")}
            guard_rows = conn.fetchall("SELECT subject, kind FROM ledger_entries WHERE log = 'receipts' "
                                       "AND kind IN ('guard.violated', 'alert.raised')")
            entry_ids = {str(r[0]) for r in conn.fetchall("SELECT id FROM ledger_entries")}
            counted = conn.fetchone("SELECT COALESCE(SUM(count), 0) FROM ledger_outbox WHERE count IS NOT NULL")
            orphans = conn.fetchall(
                "SELECT o.id FROM ledger_outbox o WHERE o.seq IS NOT NULL AND NOT EXISTS (SELECT 1 FROM "
                "ledger_entries e WHERE e.log = o.log AND e.seq = o.seq)")
            wrong_kind = conn.fetchall(
                "SELECT o.id FROM ledger_outbox o JOIN ledger_entries e ON e.log = o.log AND e.seq = o.seq "
                "WHERE o.count IS NOT NULL AND e.kind <> 'observations.ingested'")
        acknowledged: dict[str, dict[str, Any]] = {}
        over: set[str] = set()
        batches: list[list[str]] = []
        for load in loads:
            acknowledged |= load.acknowledged()
            over |= load.over
            batches += load.sent_batches
        lost = sorted(set(acknowledged) - stored)
        assert not lost, f"{len(lost)} acknowledged observation(s) missing, e.g. {lost[:5]}"
        partial = [b for b in batches if 0 < len(set(b) & stored) < len(b)]
        assert not partial, f"{len(partial)} batch(es) half stored, e.g. {partial[:2]}"
        receipts = Counter((str(s), str(k)) for s, k in guard_rows)
        over_stored = over & stored
        missing = [(oid, kind) for oid in sorted(over_stored) for kind in ("guard.violated", "alert.raised")
                   if receipts[(oid, kind)] != 1]
        assert not missing, (f"{len(missing)} guard receipt(s) missing or duplicated, e.g. "
                             f"{[(m, receipts[m]) for m in missing[:5]]}")
        phantom = {s for s, _ in receipts} - over_stored
        assert not phantom, f"guard receipts for observations not stored (or not over the limit): {sorted(phantom)[:5]}"
        named = {rid for item in acknowledged.values() for rid in item["receipts"]}
        assert named <= entry_ids, f"receipt ids answered but not in the ledger: {sorted(named - entry_ids)[:5]}"
        for oid, item in acknowledged.items():
            owed = 2 if oid in over else 0
            assert len(item["receipts"]) + item["receipts_pending"] == owed, (oid, item)
        assert counted is not None
        assert int(counted[0]) == len(stored), (
            f"ingest counts staged for the audit log: {counted}, observations stored: {len(stored)}")
        assert not orphans, f"outbox rows marked with a seq that is no entry: {orphans[:5]}"
        assert not wrong_kind, f"ingest counts drained into entries of another kind: {wrong_kind[:5]}"
        for log in ("receipts", "audit"):
            report = verify_log(db, log, workers=1)
            assert report.ok, report.to_json()
        return Checked(acknowledged=len(acknowledged), present=len(set(acknowledged) & stored), stored=len(stored),
                       over_stored=len(over_stored), receipts_missing=len(missing), batches_sent=len(batches),
                       batches_partial=len(partial), drain_s=drain_s)
    finally:
        db.close()
