"""``knhk audit append|list`` and ``knhk receipts list|show``, run as a user runs them (subprocesses).

Proves, on both backends: an appended audit entry comes back from ``audit list`` and ``receipts list|show``
with exactly the actor pseudonym, action, resource, outcome, reason and metadata given, in JSON and in text;
the actor's identity never reaches the ledger tables (only a ``sub_…`` pseudonym does; on SQLite the
identity is in no byte of the database file at all), yet ``audit list --resolve`` can still show it; bad
input — metadata that is not JSON, not an object or not canonical, an unknown outcome, an action that is not
noun.verb, an unknown log — exits 2 with one clear ``error:`` line on stderr and writes nothing to the
ledger.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ledger"))

from ledger_support import dump_ledger, run_cli, run_cli_many, sqlite_path

ALICE = "alice.smith@example.org"
BOB = "svc-deployer@ci.example.org"


def _ok(done: object) -> str:
    assert getattr(done, "returncode", None) == 0, (getattr(done, "args", None), getattr(done, "stderr", None))
    return str(getattr(done, "stdout", ""))


def test_audit_append_list_and_receipts_list_show(tmp_path: Path, database_url: str) -> None:
    data = tmp_path / "data"
    first = _ok(run_cli(["audit", "append", "--actor", ALICE, "--action", "deploy.completed",
                         "--resource", "svc/payments", "--outcome", "success", "--reason", "release 4.2 ✓",
                         "--metadata", '{"ticket": "CHG-1", "n": 3, "tags": ["a", "ü"]}'], data, database_url))
    match = re.fullmatch(r"audit entry (\d+) ([0-9a-f]{64})\n", first)
    assert match, first
    seq1, id1 = int(match.group(1)), match.group(2)
    second = orjson.loads(_ok(run_cli(["audit", "append", "--actor", BOB, "--action", "access.denied",
                                       "--resource", "sigma/finance", "--outcome", "denied", "--json"],
                                      data, database_url)))
    assert second["seq"] == seq1 + 1
    assert second["parent"] == id1

    listed, resolved, text, entries, shown, shown_text = run_cli_many([
        ["audit", "list", "--json", "--after", str(seq1 - 1)],
        ["audit", "list", "--json", "--resolve", "--action", "deploy.completed"],
        ["audit", "list", "--after", str(seq1 - 1)],
        ["receipts", "list", "--log", "audit", "--json", "--after", str(seq1 - 1)],
        ["receipts", "show", str(seq1), "--log", "audit", "--json"],
        ["receipts", "show", str(seq1), "--log", "audit"],
    ], data, database_url)

    rows = orjson.loads(_ok(listed))
    assert [r["seq"] for r in rows] == [seq1, seq1 + 1]
    alice, bob = rows
    assert re.fullmatch(r"sub_[0-9a-f]{32}", alice["actor"])
    assert re.fullmatch(r"sub_[0-9a-f]{32}", bob["actor"])
    assert alice["actor"] != bob["actor"]
    assert {k: alice[k] for k in ("action", "resource", "outcome", "reason", "metadata", "id")} == {
        "action": "deploy.completed", "resource": "svc/payments", "outcome": "success",
        "reason": "release 4.2 ✓", "metadata": {"ticket": "CHG-1", "n": 3, "tags": ["a", "ü"]}, "id": id1}
    assert (bob["action"], bob["outcome"], bob["reason"], bob["metadata"]) == ("access.denied", "denied", None, {})
    assert [(r["seq"], r["identity"]) for r in orjson.loads(_ok(resolved))] == [(seq1, ALICE)]
    table = _ok(text)
    for word in ("deploy.completed", "svc/payments", "access.denied", "denied", alice["actor"]):
        assert word in table
    assert ALICE not in table

    ledger_entries = orjson.loads(_ok(entries))
    assert [e["id"] for e in ledger_entries] == [id1, second["id"]]
    assert ledger_entries[0]["subject"] == alice["actor"]
    assert ledger_entries[0]["kind"] == "deploy.completed"
    assert ledger_entries[0]["data"] == {"resource": "svc/payments",
                                         "metadata": {"ticket": "CHG-1", "n": 3, "tags": ["a", "ü"]}}
    assert orjson.loads(_ok(shown)) == ledger_entries[0]
    shown_lines = _ok(shown_text)
    assert f"id: {id1}" in shown_lines
    assert "kind: deploy.completed" in shown_lines
    assert f"subject: {alice['actor']}" in shown_lines

    # The identity is nowhere in the ledger: not in any column of any ledger table.
    dump = repr(dump_ledger(database_url)).lower()
    for identity in (ALICE, BOB, "alice", "svc-deployer"):
        assert identity.lower() not in dump
    if database_url.startswith("sqlite"):
        db_file = sqlite_path(database_url)
        for path in (db_file, Path(f"{db_file}-wal")):
            if path.exists():
                assert ALICE.encode() not in path.read_bytes()  # encrypted, and only a keyed hash indexes it


BAD = [
    (["--metadata", "{not json"], "--metadata is not JSON"),
    (["--metadata", "[1, 2]"], "--metadata must be a JSON object"),
    (["--metadata", '{"ratio": 0.5}'], "floats are not allowed"),
    (["--outcome", "maybe"], "audit outcome must be one of success, failure, denied, error"),
    (["--action", "Deploy"], "must look like 'noun.verb'"),
    (["--action", "deploy"], "must look like 'noun.verb'"),
    (["--action", "deploy.Done"], "must look like 'noun.verb'"),
]


def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path: Path, database_url: str) -> None:
    data = tmp_path / "data"
    _ok(run_cli(["audit", "append", "--actor", ALICE, "--action", "deploy.completed", "--resource", "svc/a",
                 "--outcome", "success"], data, database_url))
    before = dump_ledger(database_url)
    base = {"--actor": "mallory@example.org", "--action": "deploy.completed", "--resource": "svc/a",
            "--outcome": "success"}
    calls: list[list[str]] = []
    expected: list[str] = []
    for override, message in BAD:
        options = dict(base)
        extra: list[str] = []
        for i in range(0, len(override), 2):
            if override[i] in options:
                options[override[i]] = override[i + 1]
            else:
                extra += override[i:i + 2]
        calls.append(["audit", "append", *[x for kv in options.items() for x in kv], *extra])
        expected.append(message)
    for args in (["receipts", "list", "--log", "ledger"], ["receipts", "show", "0", "--log", "ledger"],
                 ["receipts", "prove", "0", "--log", "ledger"], ["receipts", "checkpoint", "--log", "ledger"]):
        calls.append(args)
        expected.append("unknown log 'ledger'; the logs are receipts, audit")
    for done, message in zip(run_cli_many(calls, data, database_url), expected, strict=True):
        assert done.returncode == 2, (done.args, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert lines[0].startswith("error: ")
        assert message in lines[0], lines[0]
        assert done.stdout == ""
    assert dump_ledger(database_url) == before


def test_missing_entry_is_a_clear_error(tmp_path: Path, database_url: str) -> None:
    done = run_cli(["receipts", "show", "999999", "--log", "audit"], tmp_path / "data", database_url)
    assert done.returncode == 2
    assert done.stderr.strip() == "error: log audit has no entry 999999"
