"""The failover drill (``make ha-drill``): measure RTO and RPO of KNHK on a two-node Patroni cluster.

1. Start the cluster (:mod:`cluster`: two PostgreSQL nodes under Patroni, one etcd, synchronous mode).
2. Start two ``knhk serve`` replicas over the multi-host URL ``…?target_session_attrs=read-write``.
3. Drive ingest through both replicas: single observations and atomic batches of finance payments, every
   fourth one violating a guard so the product appends receipts for it; record every acknowledgement.
4. SIGKILL the leader node (its Patroni and all its PostgreSQL processes) in the middle of that load.
5. Keep driving until writes are acknowledged again, then a few seconds more.
6. Check on the new leader: every acknowledged observation and receipt is there (RPO: the count missing,
   must be 0), every unacknowledged batch is there completely or not at all, both ledger logs verify.

RTO is the time from the kill to the first acknowledged write sent after it. The replicas are never
restarted: they must reconnect on their own. Prints one JSON object; exits 1 when RPO > 0, a batch was half
written, a log does not verify, or RTO is at or above the target (30 s).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cluster import HaCluster, free_port

RTO_TARGET_S = 30.0
KNHK = str(Path(sys.executable).with_name("knhk"))


@dataclass
class Outcome:
    ids: list[str]
    sent: float
    done: float
    ok: bool
    receipts: list[str] = field(default_factory=list)
    status: str = ""
    replica: int = 0


def _payment(oid: str, violating: bool) -> dict[str, Any]:
    return {"id": oid, "sector": "finance", "event_type": "payment.created",
            "value": {"account_id": f"acct-{oid}", "transaction_amount": 2_000_000 if violating else 250,
                      "currency": "EUR"}}


class Load:
    """Clients posting to both replicas until stopped; every request and its outcome is kept."""

    def __init__(self, urls: list[str], token: str, threads: int = 4, batch: int = 20,
                 violating_every: int = 4, prefix: str = "") -> None:
        self.urls = urls
        self.prefix = prefix
        self.every = violating_every
        self.token = token
        self.threads = threads
        self.batch = batch
        self.stop = threading.Event()
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []

    def start(self) -> None:
        for n in range(self.threads):
            t = threading.Thread(target=self._run, args=(n,), daemon=True)
            t.start()
            self._workers.append(t)

    def finish(self) -> None:
        self.stop.set()
        for t in self._workers:
            t.join(timeout=60)

    def _run(self, worker: int) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        clients = [httpx.Client(base_url=u, timeout=10, headers=headers) for u in self.urls]
        i = 0
        try:
            while not self.stop.is_set():
                replica = (worker + i) % len(clients)
                client = clients[replica]
                if i % 2 == 0:
                    ids = [f"{self.prefix}w{worker}-{i}"]
                    body: Any = _payment(ids[0], i % (2 * self.every) == 0)
                    path = "/api/v1/observations"
                else:
                    ids = [f"{self.prefix}w{worker}-{i}-{k}" for k in range(self.batch)]
                    body = {"observations": [_payment(oid, k % self.every == 0) for k, oid in enumerate(ids)]}
                    path = "/api/v1/observations/batch"
                sent = time.monotonic()
                try:
                    r = client.post(path, json=body)
                    ok = r.status_code == 201
                    receipts: list[str] = []
                    if ok:
                        doc = r.json()
                        results = [doc] if "observation" in doc else doc["results"]
                        receipts = [rid for res in results for rid in res["receipts"]]
                    outcome = Outcome(ids, sent, time.monotonic(), ok, receipts, str(r.status_code), replica)
                except httpx.HTTPError as exc:
                    outcome = Outcome(ids, sent, time.monotonic(), False, status=type(exc).__name__, replica=replica)
                with self._lock:
                    self.outcomes.append(outcome)
                if not outcome.ok:
                    time.sleep(0.1)
                i += 1
        finally:
            for c in clients:
                c.close()


def start_replicas(env: dict[str, str], n: int = 2,
                   names: list[str] | None = None) -> tuple[list[str], list[subprocess.Popen[str]]]:
    """Start ``n`` `knhk serve` replicas; each connects with application_name ``names[i]`` (libpq PGAPPNAME)."""
    ports = [free_port() for _ in range(n)]
    names = names or [f"knhk-replica-{i}" for i in range(n)]
    procs = [subprocess.Popen([KNHK, "serve", "--port", str(p)], env={**os.environ, **env, "PGAPPNAME": name},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for p, name in zip(ports, names, strict=True)]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    deadline = time.monotonic() + 120
    for url, proc in zip(urls, procs, strict=True):
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"knhk serve exited: {proc.stdout.read() if proc.stdout else ''}")
            try:
                if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("knhk serve did not become ready")
            time.sleep(0.3)
    return urls, procs


def stop_replicas(procs: list[subprocess.Popen[str]]) -> list[str]:
    logs = []
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        logs.append(out or "")
    return logs


def replica_env(url: str, data_dir: Path) -> dict[str, str]:
    return {"KNHK_DATABASE_URL": url, "KNHK_DATA_DIR": str(data_dir), "KNHK_DB_POOL_MIN": "2",
            "KNHK_DB_POOL_MAX": "8", "KNHK_DB_CONNECT_TIMEOUT_S": "2", "KNHK_CYCLE_INTERVAL_S": "2",
            "KNHK_VERIFY_INTERVAL_S": "0", "KNHK_CHECKPOINT_INTERVAL_S": "1", "KNHK_LOG_LEVEL": "WARNING"}


def check_store(url: str, outcomes: list[Outcome]) -> dict[str, Any]:
    """What the new leader holds of the acknowledged and unacknowledged writes."""
    acked_obs = {oid for o in outcomes if o.ok for oid in o.ids}
    acked_receipts = {rid for o in outcomes if o.ok for rid in o.receipts}
    with psycopg.connect(url, connect_timeout=5) as conn:
        stored = {str(r[0]) for r in conn.execute("SELECT id FROM observations WHERE sector='finance'")}
        receipts = {str(r[0]) for r in conn.execute("SELECT id FROM ledger_entries WHERE log='receipts'")}
        unreceipted = conn.execute(
            "SELECT count(*) FROM observations o WHERE o.sector='finance' "
            "AND (o.value::jsonb->>'transaction_amount')::numeric > 1000000 AND NOT EXISTS ("
            "SELECT 1 FROM ledger_entries e WHERE e.log='receipts' AND e.kind='guard.violated' AND e.subject=o.id)"
        ).fetchone()
    half = [o.ids[0] for o in outcomes if not o.ok and 0 < len(set(o.ids) & stored) < len(o.ids)]
    return {"acknowledged_observations": len(acked_obs), "acknowledged_receipts": len(acked_receipts),
            "lost_observations": len(acked_obs - stored), "lost_receipts": len(acked_receipts - receipts),
            "half_written_batches": half,
            # an over-limit observation stored without its guard.violated receipt: ingest appends the receipts
            # after the observations commit (the gap issue 9 closes); reported, not yet a pass criterion
            "stored_violations_without_receipt": int(unreceipted[0]) if unreceipted else 0,
            "unacknowledged_but_stored": sum(1 for o in outcomes if not o.ok and set(o.ids) <= stored)}


def verify_ledger(url: str, data_dir: Path) -> dict[str, bool]:
    from knhk.app.access import SYSTEM, LocalAccess
    from knhk.app.application import Application
    from knhk.config import Settings

    settings = Settings(data_dir=data_dir, database_url=url, db_pool_min=1, db_pool_max=2)
    with Application.open(settings, access=LocalAccess(), install_packs=False, subscribe_engine=False) as app:
        return {log: app.verify(SYSTEM, log).ok for log in ("receipts", "audit")}


def run_drill(cluster: HaCluster, work: Path, *, load_s: float = 4.0, after_s: float = 4.0) -> dict[str, Any]:
    """Drill against a started cluster; returns the figures (see the module docstring)."""
    from knhk.app.application import initialise
    from knhk.config import Settings
    from knhk.identity.local import LocalIssuer

    with psycopg.connect(cluster.url("postgres"), autocommit=True) as conn:
        conn.execute("CREATE DATABASE knhk")
    url = cluster.url("knhk", connect_timeout="2")
    data_dir = work / "data"
    settings = Settings(data_dir=data_dir, database_url=url, db_pool_min=1, db_pool_max=2)
    initialise(settings)  # migrate, keys and packs once, before the replicas race for them
    token = LocalIssuer.from_settings(settings).mint(["ingestor"], subject="drill-gateway").token
    urls, procs = start_replicas(replica_env(url, data_dir))
    load = Load(urls, token)
    logs: list[str] = []
    try:
        load.start()
        time.sleep(load_s)
        leader = cluster.leader()
        assert leader is not None
        killed_at = time.monotonic()
        cluster.kill(leader)
        rto = None
        deadline = killed_at + 120
        while time.monotonic() < deadline:
            with load._lock:
                after = [o for o in load.outcomes if o.ok and o.sent > killed_at]
            if after:
                rto = min(o.done for o in after) - killed_at
                break
            time.sleep(0.05)
        time.sleep(after_s)
        new_leader = cluster.leader()
    finally:
        load.finish()
        logs = stop_replicas(procs)
    figures = check_store(url, load.outcomes)
    failed = [o for o in load.outcomes if not o.ok]
    figures |= {
        "killed": leader.name, "new_leader": new_leader.name if new_leader else None,
        "rto_s": None if rto is None else round(rto, 2), "rto_target_s": RTO_TARGET_S,
        "rpo_acknowledged_lost": figures["lost_observations"] + figures["lost_receipts"],
        "requests": len(load.outcomes), "failed_requests": len(failed),
        "failed_statuses": sorted({o.status for o in failed}),
        "ledger_verified": verify_ledger(url, data_dir),
        "replicas_restarted": 0,
    }
    figures["passed"] = (rto is not None and rto < RTO_TARGET_S and figures["rpo_acknowledged_lost"] == 0
                         and not figures["half_written_batches"] and all(figures["ledger_verified"].values()))
    if not figures["passed"]:
        figures["replica_logs"] = [log[-3000:] for log in logs]
    return figures


def main() -> int:
    cluster = HaCluster.create()
    work = Path(cluster.root) / "work"
    try:
        started = time.monotonic()
        cluster.start()
        figures = {"cluster_start_s": round(time.monotonic() - started, 1),
                   **run_drill(cluster, work)}
    finally:
        cluster.destroy()
    print(json.dumps(figures, indent=2))
    return 0 if figures["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
