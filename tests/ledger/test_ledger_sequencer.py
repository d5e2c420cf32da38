"""One sequencer at a time, group commit, no gaps, no forks, and failures isolated to their own append.

Proves: 4 OS processes × 2,500 appends into one log (PostgreSQL, and SQLite too) give exactly 10,000
entries with seq 0..9,999, every process got back the (seq, id) that is stored, every parent link is right
and the verifier passes; the same with 16 threads in one process on both backends, where group commit
really batches (far fewer transactions than entries); a hook that raises fails only its own append while
the rest of its batch commits (with their hooks' writes, and without the failed hook's); verifying while
appends continue never reports a false failure.
"""

from __future__ import annotations

import itertools
import subprocess
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from ledger_support import PYTHON, RawDb, open_runtime

from knhk.app.runtime import Runtime
from knhk.proof.entry import Entry, EntryDraft
from knhk.storage.database import Connection

WORKER = str(Path(__file__).with_name("ledger_worker.py"))


def _check_log(rt: Runtime, reported: dict[int, str], expected: int) -> list[Entry]:
    """Contiguous seqs, one id per seq as reported to the appenders, right parent links, verifier happy."""
    entries = rt.ledger.entries("receipts", limit=10_000) + rt.ledger.entries("receipts", after_seq=9_999,
                                                                               limit=10_000)
    assert [e.seq for e in entries] == list(range(expected))
    assert reported == {e.seq: e.id for e in entries}
    assert entries[0].parent is None
    for prev, cur in itertools.pairwise(entries):
        assert cur.parent == prev.id, cur.seq
        assert cur.ts_us >= prev.ts_us
    report = rt.ledger.verify("receipts")
    assert report.ok, report.first_failure
    assert report.total_count == report.verified_count == report.tree_size == expected
    return entries


def test_four_processes_append_without_gaps_or_forks(tmp_path: Path, database_url: str) -> None:
    data = tmp_path / "data"
    open_runtime(database_url, data).close()  # migrate and make the key, as an operator's init would
    procs = [
        subprocess.Popen([PYTHON, WORKER, "burst", database_url, str(data / "keys"), str(w), "5", "500", "10"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for w in range(4)
    ]
    reported: dict[int, str] = {}
    batches = 0
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        lines = out.splitlines()
        assert lines[-1].startswith("batches ")
        batches += int(lines[-1].split()[1])
        pairs = [line.split() for line in lines[:-1]]
        assert len(pairs) == 2500
        for seq, eid in pairs:
            assert int(seq) not in reported, f"seq {seq} was handed out twice (a fork)"
            reported[int(seq)] = eid
    assert len(reported) == 10_000
    assert batches < 10_000 / 5
    rt = open_runtime(database_url, data)
    try:
        entries = _check_log(rt, reported, 10_000)
        per_worker: dict[Any, int] = {}
        for e in entries:
            per_worker[e.fields["data"]["worker"]] = per_worker.get(e.fields["data"]["worker"], 0) + 1
        assert per_worker == {0: 2500, 1: 2500, 2: 2500, 3: 2500}
    finally:
        rt.close()


def test_threads_group_commit(tmp_path: Path, database_url: str) -> None:
    rt = open_runtime(database_url, tmp_path / "data")
    try:
        reported: dict[int, str] = {}
        lock = threading.Lock()
        errors: list[BaseException] = []

        def appender(t: int) -> None:
            try:
                for i in range(125):
                    e = rt.ledger.append(EntryDraft(log="receipts", kind="thread.appended", data={"t": t, "i": i}))
                    with lock:
                        assert e.seq not in reported
                        reported[e.seq] = e.id
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=appender, args=(t,)) for t in range(16)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert not errors
        assert rt.ledger.sequencer.appended == 2000
        # 16 appenders wait on one another's commits: each transaction carries many entries.
        assert rt.ledger.sequencer.batches <= 2000 / 4, rt.ledger.sequencer.batches
        _check_log(rt, reported, 2000)
        before = rt.ledger.sequencer.batches
        rt.ledger.append_many([EntryDraft(log="receipts", kind="thread.appended", data={"i": i})
                               for i in range(3000)])
        assert rt.ledger.sequencer.batches - before <= 10  # max_batch is 2000
    finally:
        rt.close()


class HookRefused(Exception):
    pass


def test_a_failing_hook_fails_only_its_own_append(tmp_path: Path, database_url: str) -> None:
    raw = RawDb(database_url)
    raw.execute("CREATE TABLE hook_effects (name TEXT NOT NULL)")
    raw.close()
    rt = open_runtime(database_url, tmp_path / "data")
    try:
        rt.ledger.append(EntryDraft(log="receipts", kind="hook.tested"))
        started, release = threading.Event(), threading.Event()

        def blocker(conn: Connection) -> None:
            conn.execute("INSERT INTO hook_effects (name) VALUES (?)", ("blocker",))
            started.set()
            assert release.wait(30)

        def writes(name: str, fail: bool = False) -> Any:
            def hook(conn: Connection) -> None:
                conn.execute("INSERT INTO hook_effects (name) VALUES (?)", (name,))
                if fail:
                    raise HookRefused(f"{name} refused")
            return hook

        batches = rt.ledger.sequencer.batches
        first = rt.ledger.sequencer.submit(EntryDraft(log="receipts", kind="hook.tested"), blocker)
        assert started.wait(30)  # the sequencer is inside the blocker's transaction: the next five queue up
        futures: list[Future[Entry]] = [
            rt.ledger.sequencer.submit(EntryDraft(log="receipts", kind="hook.tested", data={"n": n}),
                                       writes(f"h{n}", fail=n == 2))
            for n in range(5)
        ]
        release.set()
        assert first.result(30).seq == 1
        with pytest.raises(HookRefused, match="h2 refused"):
            futures[2].result(30)
        ok = [f.result(30) for i, f in enumerate(futures) if i != 2]
        assert [e.seq for e in ok] == [2, 3, 4, 5]
        assert [e.fields["data"]["n"] for e in ok] == [0, 1, 3, 4]
        assert rt.ledger.sequencer.batches - batches == 2  # the blocker's batch, then all five together
        raw = RawDb(database_url)
        try:
            names = sorted(r[0] for r in raw.fetchall("SELECT name FROM hook_effects"))
        finally:
            raw.close()
        assert names == ["blocker", "h0", "h1", "h3", "h4"]
        assert rt.ledger.verify("receipts").ok
        assert rt.ledger.tree_size("receipts") == 6
    finally:
        rt.close()


def test_verify_while_appending_never_reports_a_false_failure(tmp_path: Path, database_url: str) -> None:
    rt = open_runtime(database_url, tmp_path / "data", checkpoint_every_entries=25)
    try:
        stop = threading.Event()

        def writer() -> None:
            i = 0
            while not stop.is_set():
                rt.ledger.append_many([EntryDraft(log="receipts", kind="race.tested", data={"i": i + j})
                                       for j in range(10)])
                i += 10

        rt.ledger.append_many([EntryDraft(log="receipts", kind="race.tested") for _ in range(10)])
        thread = threading.Thread(target=writer)
        thread.start()
        sizes: list[int] = []
        try:
            while len(set(sizes)) < 8 and len(sizes) < 400:
                report = rt.ledger.verify("receipts")
                assert report.ok, report.to_json()
                sizes.append(report.tree_size)
        finally:
            stop.set()
            thread.join()
        assert len(set(sizes)) >= 8  # the log really grew while it was being verified
        assert rt.ledger.verify("receipts").ok
    finally:
        rt.close()
