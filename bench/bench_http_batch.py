"""Batch ingest over HTTP (SPEC §12: ≥ 50,000 observations/s into PostgreSQL, 1,000 per request), auth on,
durable, against two baselines measured in the same run:

* a minimal FastAPI app (``bench/baseline_app.py``, same worker count) that parses the same body and ``COPY``s
  the same 14-column rows (UUIDv7 id, SHA-256 content hash) into a table with the same indexes;
* ``psql \\copy`` of the same rows from a CSV file (the database's own bulk-load rate).

Each round posts ``--requests`` batches of ``--size`` observations from ``--concurrency`` connections with
``hey`` to ``knhk serve --workers N`` (default settings: background cycles and verification on) and to the
baseline app, then runs ``psql \\copy``; the medians over ``--rounds`` are printed with the load average of each
round, and the raw figures are written as JSON to ``--out`` (default ``bench/results/``). ``--compare-src DIR``
also serves another version of KNHK (``DIR`` is its ``src`` folder, e.g. ``git archive main src | tar -x -C
/tmp/main``) on its own scratch database and posts to it in the same rounds: a before/after pair measured under
the same load. Usage:

    .venv/bin/python bench/bench_http_batch.py [--rounds 3] [--workers 2] [--concurrency 2] [--requests 100]
        [--compare-src /tmp/main/src]
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from importlib import resources
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.baseline_app import COLUMNS, create_table, row
from bench.load.server import free_port, knhk_server, scratch_database, wait_ready

SECTORS = ("finance", "logistics", "manufacturing")


def pool() -> list[dict[str, Any]]:
    out = []
    scenarios = resources.files("knhk.sectors") / "scenarios"
    for sector in SECTORS:
        for line in (scenarios / f"{sector}.jsonl").read_text().splitlines()[:400]:
            obs = json.loads(line)
            obs.pop("id", None)
            obs.pop("timestamp", None)
            out.append(obs)
    return out


def serving_pids(port: int) -> int | None:
    """How many processes hold the established connections to ``port`` (``ss``; None when it is missing)."""
    if shutil.which("ss") is None:
        return None
    out = subprocess.run(["ss", "-tnpH", "state", "established", f"( sport = :{port} )"], capture_output=True,
                         text=True).stdout
    return len(set(re.findall(r"pid=(\d+)", out)))


def hey(url: str, body: Path, token: str, requests: int, concurrency: int) -> dict[str, Any]:
    """Post ``requests`` batches from ``concurrency`` connections. ``workers_used``: how many server processes
    held those connections half a second in: the workers share one listening socket, and uvicorn may accept
    both of hey's connections in one worker, leaving the other idle for the whole run (that round then
    measures one process; the figure says so)."""
    cmd = ["hey", "-n", str(requests), "-c", str(concurrency), "-m", "POST", "-T", "application/json",
           "-H", f"Authorization: Bearer {token}", "-D", str(body), url]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    used = None
    try:
        proc.wait(timeout=0.5)
    except subprocess.TimeoutExpired:
        used = serving_pids(int(url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1]))
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, cmd, out, err)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    codes = {int(c): int(n) for c, n in re.findall(r"\[(\d{3})\]\s+(\d+) responses", out)}
    p95 = re.search(r"95% in ([\d.]+) secs", out)
    return {"rps": rps, "codes": codes, "p95_ms": float(p95.group(1)) * 1000 if p95 else None,
            "workers_used": used}


def psql_copy(url: str, rows: list[tuple[Any, ...]], work: Path) -> float:
    """Rows per second of ``psql \\copy`` of ``rows`` (CSV) into a fresh baseline table."""
    path = work / "rows.csv"
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    subprocess.run(["psql", url, "-q", "-c", "TRUNCATE baseline_observations"], check=True)
    started = time.perf_counter()
    subprocess.run(["psql", url, "-q", "-c", f"\\copy baseline_observations ({', '.join(COLUMNS)}) FROM "
                    f"'{path}' CSV"], check=True)
    return len(rows) / (time.perf_counter() - started)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--size", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    ap.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--compare-src", type=Path, default=None, metavar="DIR",
                    help="also serve the KNHK whose package is in DIR (PYTHONPATH) and post to it in each round")
    args = ap.parse_args()
    if shutil.which("hey") is None or shutil.which("psql") is None:
        print("needs hey and psql (Debian packages hey, postgresql-client)", file=sys.stderr)
        return 3
    work = Path(tempfile.mkdtemp(prefix="knhk-batch-"))
    observations = pool()
    batch = [observations[i % len(observations)] for i in range(args.size)]
    body = work / "batch.json"
    body.write_bytes(json.dumps({"observations": batch}).encode())
    now_us = time.time_ns() // 1000
    copy_rows = [row(observations[i % len(observations)], now_us) for i in range(args.size * args.requests)]
    rounds: list[dict[str, Any]] = []
    overrides = dict(kv.split("=", 1) for kv in args.server_env)
    try:
        with ExitStack() as stack:
            other = None
            if args.compare_src is not None:
                other = stack.enter_context(knhk_server(args.workers, {**overrides,
                                                                       "PYTHONPATH": str(args.compare_src)}))
                other_token = other.mint("ingestor", subject="bench")
            server = stack.enter_context(knhk_server(args.workers, overrides))
            base_db = stack.enter_context(scratch_database("knhk_baseline"))
            token = server.mint("ingestor", subject="bench")
            create_table(base_db)
            port = free_port()
            env = {**os.environ, "BASELINE_DATABASE_URL": base_db, "BASELINE_TOKEN": "baseline"}
            uvicorn = str(Path(sys.executable).with_name("uvicorn"))
            baseline = subprocess.Popen([uvicorn, "bench.baseline_app:app", "--port", str(port), "--workers",
                                         str(args.workers), "--log-level", "warning", "--no-access-log"],
                                        env=env, cwd=Path(__file__).resolve().parents[1])
            try:
                base_url = f"http://127.0.0.1:{port}"
                for _ in range(100):
                    try:
                        import httpx

                        httpx.get(base_url + "/docs", timeout=1)
                        break
                    except httpx.HTTPError:
                        time.sleep(0.3)
                if not wait_ready(server.url, server.proc):
                    raise RuntimeError("knhk serve is not ready")
                # warm-up: the first requests load sector schemas, pools, JIT caches
                hey(f"{server.url}/api/v1/observations/batch", body, token, 4, 1)
                hey(f"{base_url}/batch", body, "baseline", 4, 1)
                if other is not None:
                    hey(f"{other.url}/api/v1/observations/batch", body, other_token, 4, 1)
                for n in range(args.rounds):
                    load = Path("/proc/loadavg").read_text().split()[:3]
                    o = None
                    if other is not None:
                        o = hey(f"{other.url}/api/v1/observations/batch", body, other_token, args.requests,
                                args.concurrency)
                    k = hey(f"{server.url}/api/v1/observations/batch", body, token, args.requests, args.concurrency)
                    b = hey(f"{base_url}/batch", body, "baseline", args.requests, args.concurrency)
                    c = psql_copy(base_db, copy_rows, work)
                    r = {"round": n + 1, "loadavg": load, "knhk_obs_s": k["rps"] * args.size,
                         "baseline_obs_s": b["rps"] * args.size, "psql_copy_rows_s": c, "knhk_codes": k["codes"],
                         "baseline_codes": b["codes"], "knhk_p95_ms": k["p95_ms"], "baseline_p95_ms": b["p95_ms"],
                         "knhk_workers_used": k["workers_used"], "baseline_workers_used": b["workers_used"]}
                    r["ratio_baseline"] = r["knhk_obs_s"] / r["baseline_obs_s"]
                    r["ratio_psql"] = r["knhk_obs_s"] / c
                    compared = ""
                    if o is not None:
                        r["compared_obs_s"] = o["rps"] * args.size
                        r["compared_codes"] = o["codes"]
                        r["compared_ratio_baseline"] = r["compared_obs_s"] / r["baseline_obs_s"]
                        r["compared_workers_used"] = o["workers_used"]
                        compared = (f"; compared ({args.compare_src}) {r['compared_obs_s']:,.0f} obs/s {o['codes']} "
                                    f"[{o['workers_used']} worker(s)] -> {r['compared_ratio_baseline']:.2f}")
                    rounds.append(r)
                    print(f"round {n + 1} (load {' '.join(load)}): knhk {r['knhk_obs_s']:,.0f} obs/s "
                          f"{k['codes']} [{k['workers_used']} worker(s)], baseline FastAPI+COPY "
                          f"{r['baseline_obs_s']:,.0f} obs/s [{b['workers_used']} worker(s)], psql \\copy "
                          f"{c:,.0f} rows/s -> {r['ratio_baseline']:.2f} / {r['ratio_psql']:.2f}{compared}", flush=True)
            finally:
                baseline.terminate()
                baseline.wait(timeout=30)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    keys = ["knhk_obs_s", "baseline_obs_s", "psql_copy_rows_s", "ratio_baseline", "ratio_psql"]
    if args.compare_src is not None:
        keys += ["compared_obs_s", "compared_ratio_baseline"]
    med = {k: statistics.median(r[k] for r in rounds) for k in keys}
    print(f"HTTP batch ingest, {args.size} per request, auth on, durable, PostgreSQL, {args.workers} worker(s), "
          f"{args.concurrency} connection(s), medians of {len(rounds)} rounds:")
    print(f"  knhk {med['knhk_obs_s']:,.0f} obs/s (target >= 50,000); baseline FastAPI+COPY "
          f"{med['baseline_obs_s']:,.0f} obs/s -> {med['ratio_baseline']:.2f} (target >= 0.5); psql \\copy "
          f"{med['psql_copy_rows_s']:,.0f} rows/s -> {med['ratio_psql']:.2f} (target >= 0.4)")
    if args.compare_src is not None:
        print(f"  compared ({args.compare_src}): {med['compared_obs_s']:,.0f} obs/s -> "
              f"{med['compared_ratio_baseline']:.2f} of the baseline")
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    result = {"bench": "http_batch", "args": {k: str(v) for k, v in vars(args).items()}, "rounds": rounds,
              "medians": med, "settings_flipped": overrides}
    (args.out / f"http_batch-{stamp}.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
