"""The command line as a newcomer meets it: the shipped sample ingests with an explicit, audited backfill (and
is refused live with a message that says why and what to do), short proposal ids as printed are accepted, the
demo builds a fresh store where it is told to and refuses an existing one, and an unreachable database is
named at once in the driver's words."""

from __future__ import annotations

import sys
from pathlib import Path

import orjson

from knhk.app.access import LocalAccess, local_principal
from knhk.app.application import Application
from knhk.app.runtime import Runtime
from knhk.config import Settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ledger"))

from ledger_support import run_cli

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "events.jsonl"


def test_the_sample_is_refused_live_and_ingested_as_an_audited_backfill(tmp_path: Path, database_url: str) -> None:
    data = tmp_path / "data"
    live = run_cli(["ingest", str(SAMPLE)], data, database_url)
    assert live.returncode == 2
    message = live.stderr.strip().splitlines()[-1]
    assert message.startswith("error: line 1: timestamp 2026-11-23T09:00:00.032247Z is "), message
    assert "behind the server's clock" in message
    assert message.endswith(
        "the limit is 60 s; recorded data is ingested with knhk ingest --backfill")
    assert "e+" not in message
    assert ".000000 s" not in message
    done = run_cli(["ingest", "--backfill", "--json", str(SAMPLE)], data, database_url)
    assert done.returncode == 0, done.stderr
    assert orjson.loads(done.stdout)["stored"] == 60
    audit = run_cli(["audit", "list", "--json"], data, database_url)
    backfills = [e for e in orjson.loads(audit.stdout) if e["action"] == "observations.backfilled"]
    assert len(backfills) == 1
    assert backfills[0]["metadata"]["stored"] == "60"
    assert backfills[0]["metadata"]["earliest"] == "2026-11-23T09:00:00.032247Z"
    assert backfills[0]["metadata"]["sectors"] == "finance,healthcare,logistics,manufacturing"
    # the live rule is unchanged: a future timestamp is refused even in a backfill
    future = tmp_path / "future.jsonl"
    future.write_text('{"event_type":"payment.created","sector":"finance","timestamp":"2099-01-01T00:00:00Z",'
                      '"value":{"transaction_amount":5}}\n')
    ahead = run_cli(["ingest", "--backfill", str(future)], data, database_url)
    assert ahead.returncode == 2
    assert "ahead of the server's clock" in ahead.stderr


def test_proposal_ids_are_accepted_by_unique_prefix(tmp_path: Path, database_url: str) -> None:
    data = tmp_path / "data"
    with Runtime.open(Settings(data_dir=data, database_url=database_url)) as rt:
        created = Application(rt, LocalAccess()).create_proposal(
            local_principal("author@test", roles=("administrator",)), "finance", "prefix test",
            additions=[["<https://knhk.dev/ns/finance#Refund>", "<http://www.w3.org/1999/02/22-rdf-syntax-ns#type>",
                        "<http://www.w3.org/2002/07/owl#Class>"]], removals=[])
    full = created.proposal.id
    for ref in (full[:11], full[:17] + "…", full):
        shown = run_cli(["proposals", "show", ref, "--json"], data, database_url)
        assert shown.returncode == 0, (ref, shown.stderr)
        assert orjson.loads(shown.stdout)["id"] == full
    unknown = run_cli(["proposals", "show", "prop_ffffff0000"], data, database_url)
    assert unknown.returncode == 2
    assert "no proposal prop_ffffff0000" in unknown.stderr


def test_demo_goes_where_it_is_told_and_refuses_an_existing_store(tmp_path: Path) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "knhk.db").write_bytes(b"someone's store")
    for args, env in ((["--data-dir", str(busy), "demo"], {}), (["demo"], {"KNHK_DATA_DIR": str(busy)}),
                      (["demo", "--data-dir", str(busy)], {})):
        done = run_cli(args, tmp_path / "unused", None, env=env)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert f"{busy} is not an empty directory" in done.stderr
    assert (busy / "knhk.db").read_bytes() == b"someone's store"


def test_an_unreachable_database_is_named_at_once(tmp_path: Path) -> None:
    done = run_cli(["receipts", "list"], tmp_path, "postgresql://127.0.0.1:1/knhk")
    assert done.returncode == 3
    assert "PostgreSQL at postgresql://127.0.0.1:1/knhk is unreachable" in done.stderr
    assert "Connection refused" in done.stderr
    assert "pool initialization" not in done.stderr
