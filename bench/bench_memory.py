"""Memory of a serving ``knhk serve`` as its store grows (SPEC §12: < 1 GB RSS holding 1 M observations and
1 M receipts), with the growth slope.

Starts ``knhk serve --workers N`` (default settings: background cycles and verification on) on a scratch
PostgreSQL database, then for each step (default 100k, 300k, 1M): ingests observations over HTTP in batches of
1,000 (``hey``, 2 connections) and appends receipts through the ledger (this process, ``append_many``) until the
store holds the step's count of each, serves a little mixed traffic (checkpoint, proofs, observation pages,
single ingests, detection), and prints the service's RSS (the ``knhk serve`` process and its workers, from
/proc) with the slope per 100k since the previous step. Usage:

    .venv/bin/python bench/bench_memory.py [--steps 100000,300000,1000000] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_http_batch import pool
from bench.load.server import knhk_server
from knhk.app.runtime import Runtime
from knhk.config import Settings
from knhk.proof.entry import EntryDraft


def rss_mb(pid: int) -> float:
    """Resident set size of a process and its descendants, in MB."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return total / 1024


def drafts(start: int, n: int) -> list[EntryDraft]:
    return [EntryDraft(log="receipts", kind="bench.appended", sector="finance", subject=f"sub_{i:032x}",
                       reason="benchmark", evidence=[f"obs-{i}"],
                       data={"i": i, "detector": "rate", "window_s": 60, "observed": i % 97})
            for i in range(start, start + n)]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", default="100000,300000,1000000")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    steps = [int(s) for s in args.steps.split(",")]
    work = Path(tempfile.mkdtemp(prefix="knhk-mem-"))
    observations = pool()
    body = work / "batch.json"
    body.write_text(json.dumps({"observations": [observations[i % len(observations)] for i in range(1000)]}))
    single = json.dumps(observations[0])
    with knhk_server(args.workers) as server:
        assert server.proc is not None
        ingest = server.mint("ingestor", subject="mem-ingest")
        reader = server.mint("observer", "analyst", subject="mem-read")
        settings = Settings(data_dir=server.data, database_url=server.database_url)
        print(f"knhk serve, {args.workers} worker(s); RSS at start {rss_mb(server.proc.pid):.0f} MB; load "
              f"{' '.join(Path('/proc/loadavg').read_text().split()[:3])}", flush=True)
        have_obs = have_receipts = 0
        previous: tuple[int, float] | None = None
        with Runtime.open(settings) as runtime, httpx.Client(base_url=server.url, timeout=120) as client:
            for step in steps:
                started = time.perf_counter()
                need = (step - have_obs) // 1000
                if need > 0:
                    subprocess.run(["hey", "-n", str(need), "-c", "2", "-m", "POST", "-T", "application/json", "-H",
                                    f"Authorization: Bearer {ingest}", "-D", str(body),
                                    f"{server.url}/api/v1/observations/batch"], check=True, capture_output=True)
                    have_obs += need * 1000
                while have_receipts < step:
                    n = min(10_000, step - have_receipts)
                    runtime.ledger.append_many(drafts(have_receipts, n))
                    have_receipts += n
                filled = time.perf_counter() - started
                h = {"Authorization": f"Bearer {reader}"}
                size = client.get("/api/v1/receipts/checkpoint", headers=h).json()["tree_size"]
                for _ in range(50):
                    client.get(f"/api/v1/receipts/{random.randrange(size)}/proof", headers=h).raise_for_status()
                for sector in ("finance", "logistics", "manufacturing"):
                    client.get(f"/api/v1/observations?sector={sector}&limit=1000", headers=h).raise_for_status()
                    client.post("/api/v1/patterns/detect", json={"sector": sector}, headers=h).raise_for_status()
                for _ in range(100):
                    client.post("/api/v1/observations", content=single, headers={
                        "Authorization": f"Bearer {ingest}", "Content-Type": "application/json"}).raise_for_status()
                time.sleep(2)
                rss = rss_mb(server.proc.pid)
                slope = "" if previous is None else (
                    f", slope {100_000 * (rss - previous[1]) / (step - previous[0]):.1f} MB per 100k")
                load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
                print(f"{step:>9,} observations + {have_receipts:,} receipts (tree {size:,}): RSS {rss:.0f} MB"
                      f"{slope}; filled in {filled:.0f} s; load {load}", flush=True)
                previous = (step, rss)
    print("target: < 1 GB RSS at 1 M observations + 1 M receipts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
