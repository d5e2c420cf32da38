"""Crash safety under load (issue 9): kill -9 of a real `knhk serve`, and a crash of PostgreSQL itself, each
during concurrent single and batch ingest, round after round; after every round nothing acknowledged is lost.

Service rounds (SQLite and PostgreSQL): start `knhk serve`, check what the previous round left, ingest from
three threads (two single, one batch), SIGKILL the process at a random moment. PostgreSQL rounds: one service
over a private cluster; ingest, ``pg_ctl stop -m immediate`` (a database crash: no checkpoint, WAL recovery on
start), start it again, ingest until the service answers 201 again, check. Each check (``crash_load.check``)
waits for the outbox to be drained by the service, then asserts every acknowledged observation stored, every
batch all or nothing, each stored over-limit observation with exactly one ``guard.violated`` and one
``alert.raised`` receipt, the audit counts adding up, and both logs verifying; ``knhk receipts verify --log
all`` runs in the background after every service round (overlapping the next restart) and after every
fourth PostgreSQL round (``KNHK_TEST_CRASH_CLI_VERIFY_EVERY``) and must pass.

``KNHK_TEST_CRASH_ROUNDS`` sets the rounds (default 20). Run with ``-s`` to see the figures.
"""

from __future__ import annotations

import os
import random
import signal
import statistics
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from crash_load import Checked, Load, check

from knhk.config import Settings
from knhk.identity.local import LocalIssuer
from support.pgcluster import private_cluster
from support.serve import KNHK, serve

# kill -9 and database crashes under load, 60 rounds: run alone (make test), not beside other tests
pytestmark = pytest.mark.serial

ROUNDS = int(os.environ.get("KNHK_TEST_CRASH_ROUNDS", "20"))
# The CLI verifier costs seconds of CPU; in the PostgreSQL rounds it cannot overlap a restart of the service, so
# it runs after every Nth round (and the last); the same verifier (verify_log) runs in-process after every round.
CLI_VERIFY_EVERY = int(os.environ.get("KNHK_TEST_CRASH_CLI_VERIFY_EVERY", "4"))
SERVICE_ENV = {
    "KNHK_RATE_LIMIT_PER_MINUTE": "10000000",
    "KNHK_CYCLE_INTERVAL_S": "0",  # no scheduled cycles: the rounds measure ingest, not analysis
    "KNHK_CHECKPOINT_INTERVAL_S": "2",  # checkpoints are written (and crashed into) during the rounds
    "KNHK_OUTBOX_DRAIN_INTERVAL_S": "0.5",
    "KNHK_DB_POOL_MIN": "1",
    "KNHK_DB_POOL_MAX": "8",
    "KNHK_DB_CONNECT_TIMEOUT_S": "1",
    "KNHK_LOG_LEVEL": "WARNING",
}


class Verifier:
    """``knhk receipts verify --log all`` in the background: started after a round, collected before the next."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = {**os.environ, **env}
        self.proc: subprocess.Popen[str] | None = None
        self.runs = 0

    def start(self) -> None:
        self.collect()
        self.proc = subprocess.Popen([KNHK, "receipts", "verify", "--log", "all"], env=self.env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def collect(self) -> None:
        if self.proc is None:
            return
        out, _ = self.proc.communicate(timeout=120)
        assert self.proc.returncode == 0, f"knhk receipts verify --log all failed:\n{out}"
        assert "VERIFIED log receipts" in out, out
        assert "VERIFIED log audit" in out, out
        self.proc = None
        self.runs += 1


def _headers(data_dir: Path, database_url: str) -> dict[str, str]:
    issuer = LocalIssuer.from_settings(Settings(data_dir=data_dir, database_url=database_url))
    return {"Authorization": "Bearer " + issuer.mint(["ingestor"], subject="line-gateway").token}


def _report(what: str, rounds: list[float], checked: Checked, loads: list[Load], verifies: int) -> None:
    statuses: dict[str, int] = {}
    for load in loads:
        for key, n in load.statuses.items():
            statuses[key] = statuses.get(key, 0) + n
    print(f"\n{what}: {len(rounds)} rounds, acknowledged {checked.acknowledged}, present {checked.present}, "
          f"stored {checked.stored} (acknowledged or not), batches sent {checked.batches_sent} "
          f"(half stored {checked.batches_partial}), over-limit stored {checked.over_stored}, guard receipts "
          f"missing {checked.receipts_missing}, `knhk receipts verify --log all` passed {verifies}×; per round "
          f"median {statistics.median(rounds):.2f} s, max {max(rounds):.2f} s; answers {statuses}")


def _service_env(database_url: str, data_dir: Path) -> dict[str, str]:
    return {**SERVICE_ENV, "KNHK_DATABASE_URL": database_url, "KNHK_DATA_DIR": str(data_dir)}


@pytest.mark.slow
def test_kill_9_of_the_service_during_ingest_loses_nothing(database_url: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    rng = random.Random()
    loads: list[Load] = []
    rounds: list[float] = []
    headers: dict[str, str] | None = None
    checked: Checked | None = None
    env = _service_env(database_url, data_dir)
    verifier = Verifier(env)
    for n in range(ROUNDS + 1):
        started = time.monotonic()
        with serve(env) as (url, proc):
            if headers is None:
                headers = _headers(data_dir, database_url)
            checked = check(database_url, loads)  # what the killed process left, drained by this one
            verifier.start()
            if n == ROUNDS:
                break
            load = Load(url, headers, tag=f"k{n}").start()
            loads.append(load)
            assert load.wait_acked(1, 30), f"nothing acknowledged: {load.statuses}"
            time.sleep(rng.uniform(0.05, 0.6))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(30)
            load.finish()
            assert proc.returncode == -signal.SIGKILL
        rounds.append(time.monotonic() - started)
    verifier.collect()
    assert checked is not None
    assert checked.over_stored > 0
    assert checked.batches_sent > 0
    _report(f"kill -9 of knhk serve ({database_url.split(':')[0]})", rounds, checked, loads, verifier.runs)


@pytest.mark.slow
def test_postgresql_crash_during_ingest_loses_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    rng = random.Random()
    loads: list[Load] = []
    rounds: list[float] = []
    recoveries: list[float] = []
    with private_cluster() as cluster:
        database_url = cluster.create_database()
        env = _service_env(database_url, data_dir)
        with serve(env) as (url, proc):
            headers = _headers(data_dir, database_url)
            verifier = Verifier(env)
            checked = check(database_url, loads)
            for n in range(ROUNDS):
                started = time.monotonic()
                load = Load(url, headers, tag=f"p{n}").start()
                loads.append(load)
                assert load.wait_acked(1, 30), f"nothing acknowledged: {load.statuses}"
                time.sleep(rng.uniform(0.05, 0.5))
                verifier.collect()  # the previous round's verification ran meanwhile, not across the crash
                cluster.stop("immediate")
                down_at = load.acked()
                time.sleep(rng.uniform(0.1, 0.4))
                cluster.start()
                back = time.monotonic()
                assert load.wait_acked(down_at + 1, 30), f"the service did not recover: {load.statuses}"
                recoveries.append(time.monotonic() - back)
                load.finish()
                assert proc.poll() is None, "knhk serve died with its database"
                checked = check(database_url, loads)
                if (n + 1) % CLI_VERIFY_EVERY == 0 or n == ROUNDS - 1:
                    verifier.start()
                rounds.append(time.monotonic() - started)
            verifier.collect()
            with httpx.Client(base_url=url, timeout=10) as client:
                assert client.get("/health/ready").status_code == 200
    bad = {k: v for load in loads for k, v in load.statuses.items() if k not in ("201", "503")}
    assert not bad, f"answers other than 201 and 503 while PostgreSQL crashed: {bad}"
    assert checked.over_stored > 0
    assert checked.batches_sent > 0
    _report("pg_ctl stop -m immediate under knhk serve (PostgreSQL)", rounds, checked, loads, verifier.runs)
    print(f"  first 201 after PostgreSQL was back: median {statistics.median(recoveries):.2f} s, "
          f"max {max(recoveries):.2f} s")
