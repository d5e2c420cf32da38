"""Interleaved A/B of KNHK versions on the batch ingest of ``bench_http_batch.py`` (2 workers, 2 connections,
1,000 observations per request), with the background cycles and verification off so that only the ingest is
measured.

Each ``NAME=SRC`` is a version: ``SRC`` is its ``src`` folder (``git archive REV src | tar -x -C DIR``), empty for
this checkout. Every version gets its own ``knhk serve`` on a scratch database; each pair of rounds posts
``--requests`` batches to each in turn (the order alternating), and each round records how many worker
processes held hey's two connections (uvicorn may accept both in one worker: that round measures one process).
Medians are printed for all rounds and for each kind of round; the raw figures are written as JSON. Usage:

    .venv/bin/python bench/bench_http_batch_ab.py --pairs 12 new= main=/tmp/main/src
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_http_batch import hey, pool
from bench.load.server import knhk_server

QUIET = {"KNHK_CYCLE_INTERVAL_S": "0", "KNHK_VERIFY_INTERVAL_S": "0"}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("versions", nargs="+", metavar="NAME=SRC")
    ap.add_argument("--pairs", type=int, default=12)
    ap.add_argument("--requests", type=int, default=60)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = ap.parse_args()
    observations = pool()
    args.out.mkdir(parents=True, exist_ok=True)
    body = args.out / "ab-batch.json"
    body.write_bytes(json.dumps({"observations": [observations[i % len(observations)] for i in range(1000)]}).encode())
    rounds: dict[str, list[dict[str, Any]]] = {}
    with ExitStack() as stack:
        servers = []
        for spec in args.versions:
            name, src = spec.split("=", 1)
            server = stack.enter_context(knhk_server(2, {**QUIET, **({"PYTHONPATH": src} if src else {})}))
            servers.append((name, f"{server.url}/api/v1/observations/batch", server.mint("ingestor", subject="bench")))
            rounds[name] = []
        for _, url, token in servers:  # warm-up
            hey(url, body, token, 6, 1)
        for i in range(args.pairs):
            for name, url, token in servers if i % 2 == 0 else servers[::-1]:
                r = hey(url, body, token, args.requests, 2)
                rounds[name].append({"obs_s": r["rps"] * 1000, "codes": r["codes"], "workers_used": r["workers_used"],
                                     "loadavg": Path("/proc/loadavg").read_text().split()[:3]})
            print(i + 1, {n: (round(v[-1]["obs_s"]), v[-1]["workers_used"], v[-1]["loadavg"][0])
                          for n, v in rounds.items()}, flush=True)
    body.unlink()
    medians: dict[str, dict[str, Any]] = {}
    for name, v in rounds.items():
        kinds = {"all": v, "both_workers": [r for r in v if r["workers_used"] == 2],
                 "one_worker": [r for r in v if r["workers_used"] == 1]}
        medians[name] = {k: {"n": len(rs), "obs_s": statistics.median(r["obs_s"] for r in rs) if rs else None}
                         for k, rs in kinds.items()}
        shown = [f"{k} (n={m['n']}) {m['obs_s'] or 0:,.0f} obs/s" for k, m in medians[name].items()]
        print(f"{name}: " + "; ".join(shown))
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    (args.out / f"http_batch_ab-{stamp}.json").write_text(json.dumps(
        {"bench": "http_batch_ab", "args": {k: str(v) for k, v in vars(args).items()}, "rounds": rounds,
         "medians": medians}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
