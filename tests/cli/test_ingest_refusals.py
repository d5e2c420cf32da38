"""``knhk ingest`` refuses what the HTTP edge refuses, on both backends, before storing anything: an
observation of a sector with no installed pack (exit 2 naming the installed sectors), a line with a duplicate
key or a lone UTF-16 surrogate (exit 2 naming the line and the problem)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ledger"))

from ledger_support import open_runtime, run_cli

GOOD = b'{"event_type":"payment.created","sector":"finance","value":{"transaction_amount":5}}'


def _stored(database_url: str, data: Path) -> int:
    with open_runtime(database_url, data) as rt:
        return rt.reader.count()


@pytest.mark.parametrize(("bad", "message"), [
    (b'{"event_type":"e.t","sector":"nope"}',
     "error: line 2: sector 'nope' has no installed sector pack; installed: finance, healthcare, logistics,"
     " manufacturing"),
    (b'{"event_type":"e.t","sector":"finance","value":{"a":1,"a":2}}',
     "error: line 2 of FILE is ambiguous JSON: duplicate key 'a' in one object"),
    (b'{"event_type":"e.t","sector":"finance","value":{"a":"\\ud800"}}',
     "error: line 2 of FILE is not valid JSON: a string holds a lone UTF-16 surrogate escape"),
])
def test_ingest_refuses_the_whole_file_naming_the_line(tmp_path: Path, database_url: str, bad: bytes,
                                                        message: str) -> None:
    data = tmp_path / "data"
    source = tmp_path / "events.jsonl"
    source.write_bytes(GOOD + b"\n" + bad + b"\n" + GOOD + b"\n")
    done = run_cli(["ingest", str(source)], data, database_url)
    assert done.returncode == 2, (done.stdout, done.stderr)
    err = done.stderr.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith(message.replace("FILE", str(source))), err
    assert _stored(database_url, data) == 0
