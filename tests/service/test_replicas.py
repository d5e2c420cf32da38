"""Two ``knhk serve`` processes on different ports over one PostgreSQL database, under concurrent ingest,
cycles (scheduled and on demand) and promotions: one consistent snapshot history per sector, never two
cycles of a sector at once, one linear ledger that verifies, and every acknowledged observation stored."""

from __future__ import annotations

import itertools
import os
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from knhk.app.runtime import Runtime
from knhk.config import Settings
from knhk.identity.local import LocalIssuer
from support.serve import KNHK, free_port, wait_ready


@pytest.fixture
def replicas(pg_url: str, tmp_path: Path) -> Iterator[tuple[list[str], Settings]]:
    env = {**os.environ, "KNHK_DATABASE_URL": pg_url, "KNHK_DATA_DIR": str(tmp_path), "KNHK_DB_POOL_MIN": "1",
           "KNHK_DB_POOL_MAX": "10", "KNHK_CYCLE_INTERVAL_S": "1", "KNHK_VERIFY_INTERVAL_S": "3",
           "KNHK_CHECKPOINT_INTERVAL_S": "2"}
    ports = [free_port(), free_port()]
    procs = [subprocess.Popen([KNHK, "serve", "--port", str(p)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for p in ports]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    try:
        for url, proc in zip(urls, procs, strict=True):
            wait_ready(url, proc)
        yield urls, Settings(data_dir=tmp_path, database_url=pg_url, db_pool_min=1, db_pool_max=4)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_two_replicas_share_one_history_and_one_ledger(replicas: tuple[list[str], Settings]) -> None:
    urls, settings = replicas
    issuer = LocalIssuer.from_settings(settings)

    def auth(*roles: str, who: str) -> dict[str, str]:
        return {"Authorization": "Bearer " + issuer.mint(roles, subject=who, mfa=True).token}

    ingestor = auth("ingestor", who="line-gateway")
    operator = auth("operator", who="ops@plant.example")
    acknowledged: list[str] = []

    def ingest(worker: int) -> list[str]:
        ids = []
        with httpx.Client(base_url=urls[worker % 2], timeout=30) as c:
            for i in range(40):
                oid = f"w{worker}-{i}"
                body: dict[str, Any] = {"id": oid, "sector": "manufacturing"}
                if i % 4 == 0:
                    body |= {"event_type": "maintenance.completed",
                             "value": {"machine_id": "M-1", "technician": "T-1", "duration_min": 10 + i}}
                else:
                    body |= {"event_type": "machine.reading", "value": {"machine_id": "M-1", "temperature": 70.5}}
                r = c.post("/api/v1/observations", json=body, headers=ingestor)
                assert r.status_code == 201, r.text
                ids.append(oid)
        return ids

    def cycles(worker: int) -> list[int]:
        codes = []
        with httpx.Client(base_url=urls[worker % 2], timeout=60) as c:
            for sector in ("manufacturing", "logistics", "manufacturing"):
                codes.append(c.post("/api/v1/cycles", json={"sector": sector}, headers=operator).status_code)
        return codes

    with ThreadPoolExecutor(max_workers=6) as pool:
        ingests = [pool.submit(ingest, w) for w in range(4)]
        runs = [pool.submit(cycles, w) for w in range(2)]
        for f in ingests:
            acknowledged += f.result()
        codes = [code for f in runs for code in f.result()]
    assert set(codes) <= {201, 409}, codes  # 409: a cycle of that sector was running on the other replica

    # Concurrent promotions of two children of the same base, one through each replica: exactly one wins.
    proposer = auth("proposer", who="eng@plant.example")
    validator = auth("validator", who="qa@plant.example")
    snapshots = []
    for n, url in enumerate(urls):
        with httpx.Client(base_url=url, timeout=30) as c:
            p = c.post("/api/v1/proposals", headers=proposer, json={
                "sector": "logistics", "rationale": f"note {n}", "additions": [[
                    "<https://knhk.dev/ns/logistics#ShipmentDispatched>",
                    "<http://www.w3.org/2000/01/rdf-schema#comment>", f'"note {n}"']]}).json()
            assert c.post(f"/api/v1/proposals/{p['id']}/validate", headers=validator).json()["outcome"] == "approved"
            snapshots.append(p["candidate_snapshot_id"])

    def promote(n: int) -> tuple[int, str]:
        with httpx.Client(base_url=urls[n], timeout=30) as c:
            r = c.post(f"/api/v1/snapshots/{snapshots[n]}/promote", json={}, headers=operator)
            return r.status_code, r.text

    for _ in range(10):
        with ThreadPoolExecutor(max_workers=2) as pool:
            answers = sorted(pool.map(promote, [0, 1]))
        if any(code == 200 for code, _ in answers):
            break
        # neither won because a third party, the background cycle (every second here), held the sector's
        # lease at that moment: both were refused as busy, not as stale; the pair is tried again
        assert all(code == 409 and "already running elsewhere" in body for code, body in answers), answers
        time.sleep(0.2)
    assert [code for code, _ in answers] == [200, 409], answers
    time.sleep(2.5)  # let scheduled cycles, checkpoints and verification run on both replicas meanwhile

    with Runtime.open(settings) as rt:
        assert {o.id for o in rt.reader.query(sector="manufacturing", limit=1000).items} == set(acknowledged)
        for sector in ("finance", "healthcare", "logistics", "manufacturing"):
            history = rt.registry.history(sector)
            assert [h.seq for h in history] == list(range(len(history)))
            for prev, cur in itertools.pairwise(history):
                if cur.action == "promote":
                    assert cur.previous_id == prev.snapshot_id, f"{sector} forked"
            with rt.db.connection() as conn:
                spans = conn.fetchall("SELECT started_us, finished_us FROM cycles WHERE sector=? ORDER BY started_us",
                                      (sector,))
            for (_s1, f1), (s2, _f2) in itertools.pairwise(spans):
                assert s2 >= f1, f"two cycles of {sector} overlapped"
        promoted = [h for h in rt.registry.history("logistics") if h.action == "promote"]
        assert sum(1 for h in promoted if h.snapshot_id in snapshots) == 1
        assert any(h.action == "promote" for h in rt.registry.history("manufacturing")), "drift never promoted"
        for log in ("receipts", "audit"):
            report = rt.ledger.verify(log)
            assert report.ok, report.to_json()


def test_metrics_aggregate_across_worker_processes(pg_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "KNHK_DATABASE_URL": pg_url, "KNHK_DATA_DIR": str(tmp_path), "KNHK_DB_POOL_MIN": "1",
           "KNHK_DB_POOL_MAX": "4", "KNHK_CYCLE_INTERVAL_S": "0", "KNHK_VERIFY_INTERVAL_S": "0",
           "KNHK_CHECKPOINT_INTERVAL_S": "0"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    port = free_port()
    proc = subprocess.Popen([KNHK, "serve", "--port", str(port), "--workers", "2"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc)
        token = LocalIssuer.from_settings(Settings(data_dir=tmp_path)).mint(["observer"], subject="m").token
        pids = set()
        for _ in range(60):  # new connections spread over both workers
            with httpx.Client(timeout=10) as c:
                r = c.get(f"{url}/api/v1/receipts?limit=1", headers={"Authorization": f"Bearer {token}"})
                assert r.status_code == 200
            pids.add(r.headers.get("x-knhk-worker"))
        text = httpx.get(f"{url}/metrics", timeout=10).text
        line = next(s for s in text.splitlines()
                    if s.startswith('knhk_requests_total{method="GET",route="/api/v1/receipts",status="200"}'))
        assert float(line.rsplit(" ", 1)[1]) == 60.0, line
        assert len(pids) == 2, "requests were not spread over both workers"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
