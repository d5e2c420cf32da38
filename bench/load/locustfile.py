"""The Locust user of the load test (``bench/load``): mixed KNHK traffic at a constant arrival rate.

Run by ``python -m bench.load`` (never on its own: it reads its plan from ``KNHK_LOAD_PLAN``, a JSON file the
runner writes). Each simulated user fires on a fixed schedule — its n-th request is due at
``start + n × interval`` whatever the previous answers took (an open model, like k6's constant-arrival-rate) — and
picks the request kind by weight: single ingest, batch ingest, current-snapshot read, receipt proof bundle. When
a user falls behind its schedule (a slow answer), the lateness is recorded with the request, so the runner can
report latency as a client sending at the fixed rate sees it (response time + lateness), not only the
closed-loop service time. Every request is appended to ``samples-<pid>.csv`` in the plan's directory.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from typing import Any, ClassVar, TextIO

from locust import events
from locust.contrib.fasthttp import FastHttpUser

PLAN: dict[str, Any] = json.loads(Path(os.environ["KNHK_LOAD_PLAN"]).read_text())
INTERVAL: float = PLAN["users"] / PLAN["rate"]  # seconds between two requests of one user
SAMPLES = Path(PLAN["samples_dir"])
_out: dict[int, TextIO] = {}


def _sink() -> TextIO:
    pid = os.getpid()  # one file per (forked) locust process
    if pid not in _out:
        _out[pid] = (SAMPLES / f"samples-{pid}.csv").open("a", buffering=1 << 16)
    return _out[pid]


@events.request.add_listener
def _record(request_type: str, name: str, response_time: float, response: Any = None, context: Any = None,
            exception: Any = None, start_time: float | None = None, **_: Any) -> None:
    lag = (context or {}).get("lag_ms", 0.0)
    status = getattr(response, "status_code", 0) or 0
    ok = exception is None and 200 <= status < 300
    _sink().write(f"{start_time or time.time():.4f},{name},{response_time:.3f},{lag:.3f},{int(ok)},{status}\n")


@events.test_stop.add_listener
def _flush(**_: Any) -> None:
    for f in _out.values():
        f.flush()


@events.quitting.add_listener
def _close(**_: Any) -> None:
    for f in _out.values():
        f.close()
    _out.clear()


_SINGLE = [json.dumps(o).encode() for o in PLAN["observations"]]
_POOL: list[dict[str, Any]] = PLAN["observations"]
_BATCH = [json.dumps({"observations": [_POOL[(i + k) % len(_POOL)] for k in range(PLAN["batch_size"])]}).encode()
          for i in range(8)]
_SECTORS: list[str] = PLAN["sectors"]
_PROOF_SEQS: int = max(1, int(PLAN["receipts"]))


class KnhkClient(FastHttpUser):
    """One client of the service, on a fixed schedule, with one of the runner's bearer tokens."""

    connection_timeout = 10.0
    network_timeout = 30.0

    def on_start(self) -> None:
        token = random.choice(PLAN["tokens"])  # several principals: per-principal rate limits stay realistic
        self.auth = {"Authorization": f"Bearer {token}"}
        self.ingest = {**self.auth, "Content-Type": "application/json"}
        time.sleep(random.uniform(0, INTERVAL))  # gevent-patched: spread the users over one interval
        self.due = time.monotonic()
        self.lag_ms = 0.0

    def wait_time(self) -> float:
        self.due += INTERVAL
        delay = self.due - time.monotonic()
        self.lag_ms = max(0.0, -delay) * 1000.0
        return max(0.0, delay)

    def _ctx(self) -> dict[str, float]:
        return {"lag_ms": self.lag_ms}

    def single(self) -> None:
        self.client.post("/api/v1/observations", data=random.choice(_SINGLE), headers=self.ingest,
                         name="ingest", context=self._ctx())

    def batch(self) -> None:
        self.client.post("/api/v1/observations/batch", data=random.choice(_BATCH), headers=self.ingest,
                         name="ingest_batch", context=self._ctx())

    def snapshot(self) -> None:
        self.client.get(f"/api/v1/snapshots/current?sector={random.choice(_SECTORS)}", headers=self.auth,
                        name="snapshot_current", context=self._ctx())

    def proof(self) -> None:
        self.client.get(f"/api/v1/receipts/{random.randrange(_PROOF_SEQS)}/proof", headers=self.auth,
                        name="receipt_proof", context=self._ctx())

    tasks: ClassVar[dict[Any, int]] = {
        f: w for f, w in ((single, PLAN["mix"]["single"]), (batch, PLAN["mix"]["batch"]),
                          (snapshot, PLAN["mix"]["snapshot"]), (proof, PLAN["mix"]["proof"])) if w > 0}
