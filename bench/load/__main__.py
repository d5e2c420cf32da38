"""Load test of a real ``knhk serve`` with SLA thresholds (the seed's baseline and spike profiles), driven by Locust.

    .venv/bin/python -m bench.load --profile baseline            # 1,000 req/s for 10 min
    .venv/bin/python -m bench.load --profile spike               # 5,000 req/s for 5 min
    .venv/bin/python -m bench.load --rate 200 --duration 30      # any rate / duration
    .venv/bin/python -m bench.load --url http://host:8080 --token T [--token T2 ...]   # an existing service

Without ``--url`` it starts ``knhk serve --workers N`` on a scratch PostgreSQL database with the service's default
settings (``--server-env KEY=VALUE`` flips one, and the summary records it) and mints tokens (ingestor +
observer) for ``--clients`` principals. Traffic is mixed by weight (``--mix single=80,batch=5,snapshot=10,proof=5``;
batches of ``--batch-size`` observations from the bundled sector scenarios) at a constant arrival rate: Locust
users on a fixed schedule (see ``locustfile.py``); latency is measured from when each request was due.

Writes ``summary.json`` and ``latency.png`` (latency percentiles and rate over time) to ``--out`` (default
``bench/results/load/<profile>-<UTC time>``). Exit 0 when every threshold holds (p95 < ``--p95-ms`` 100,
p99 < ``--p99-ms`` 150, errors < ``--max-error-rate`` 0.01, achieved rate ≥ ``--min-rate-ratio`` 0.9 × target),
1 when one is breached, 2 on a usage error, 3 when the service or the load generator cannot be run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import httpx

from bench.load.report import Thresholds, load_samples, plot, summarise, timeline
from bench.load.server import Server, ServerFailed, knhk_server

PROFILES = {"baseline": (1000, 600), "spike": (5000, 300), "smoke": (20, 10)}
SECTORS = ("finance", "logistics", "manufacturing")  # healthcare reads need a justification header
HERE = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", choices=sorted(PROFILES), default="baseline")
    ap.add_argument("--rate", type=float, help="requests per second (default: the profile's)")
    ap.add_argument("--duration", type=float, help="seconds (default: the profile's)")
    ap.add_argument("--users", type=int, help="Locust users (default: rate / 4, each on a 250 ms schedule)")
    ap.add_argument("--processes", type=int, help="Locust processes (default: 1 up to 1,500 req/s, else 2)")
    ap.add_argument("--mix", default="single=80,batch=5,snapshot=10,proof=5")
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--url", help="base URL of a running service (then --token is required)")
    ap.add_argument("--token", action="append", default=[], help="bearer token(s) with ingest and read rights")
    ap.add_argument("--workers", type=int, default=2, help="worker processes of the started service")
    ap.add_argument("--clients", type=int, default=8, help="principals (tokens) to spread the users over")
    ap.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--p95-ms", type=float, default=100.0)
    ap.add_argument("--p99-ms", type=float, default=150.0)
    ap.add_argument("--max-error-rate", type=float, default=0.01)
    ap.add_argument("--min-rate-ratio", type=float, default=0.9)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--keep-samples", action="store_true", help="keep the per-request CSV next to the summary")
    args = ap.parse_args(argv)
    rate, duration = PROFILES[args.profile]
    args.rate = args.rate or rate
    args.duration = args.duration or duration
    if args.rate <= 0 or args.duration <= 0 or args.batch_size < 1 or args.batch_size > 10_000:
        ap.error("--rate and --duration must be > 0 and --batch-size within 1..10000")
    if args.url and not args.token:
        ap.error("--url needs at least one --token")
    try:
        args.mix = {k.strip(): int(v) for k, v in (p.split("=", 1) for p in args.mix.split(","))}
    except ValueError:
        ap.error("--mix is a list of kind=integer weight, e.g. single=80,batch=5,snapshot=10,proof=5")
    if set(args.mix) - {"single", "batch", "snapshot", "proof"} or sum(args.mix.values()) <= 0:
        ap.error("--mix kinds are single, batch, snapshot, proof, with a positive total weight")
    args.mix = {k: args.mix.get(k, 0) for k in ("single", "batch", "snapshot", "proof")}
    args.processes = args.processes or (1 if args.rate <= 1500 else 2)
    args.users = args.users or max(args.processes, math.ceil(args.rate / 4))
    try:
        args.server_env = dict(kv.split("=", 1) for kv in args.server_env)
    except ValueError:
        ap.error("--server-env takes KEY=VALUE")
    return args


def observation_pool() -> list[dict[str, Any]]:
    """Real observations of the bundled sector scenarios, without client id and timestamp (each send is new)."""
    pool: list[dict[str, Any]] = []
    scenarios = resources.files("knhk.sectors") / "scenarios"
    for sector in SECTORS:
        for line in (scenarios / f"{sector}.jsonl").read_text().splitlines()[:40]:
            obs = json.loads(line)
            obs.pop("id", None)
            obs.pop("timestamp", None)
            pool.append(obs)
    return pool


def _tree_cpu(pid: int) -> float:
    """CPU seconds used so far by a process and its live descendants (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{p}/task").iterdir():
                with contextlib.suppress(OSError):
                    todo += [int(c) for c in (task / "children").read_text().split()]
    return total


def _box_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat (busy excludes idle and iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]
    return (sum(fields) - idle) / tick, sum(fields) / tick


def _postgres_cpu() -> float:
    """CPU seconds used so far by this machine's live PostgreSQL processes (the database the service uses
    when it runs here; 0 when there is none)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            head, rest = stat.read_text().rsplit(")", 1)
            if head.endswith("(postgres"):
                fields = rest.split()
                total += (int(fields[11]) + int(fields[12])) / tick
    return total


@contextlib.contextmanager
def target(args: argparse.Namespace) -> Iterator[tuple[Server | None, str, list[str]]]:
    if args.url:
        yield None, args.url.rstrip("/"), list(args.token)
        return
    with knhk_server(args.workers, args.server_env) as server:
        tokens = [server.mint("ingestor", "observer", subject=f"loadtest-{i}") for i in range(args.clients)]
        yield server, server.url, tokens


def run(args: argparse.Namespace) -> int:
    locust = shutil.which("locust") or str(Path(sys.executable).with_name("locust"))
    if not Path(locust).exists():
        print("locust is not installed (pip install -e '.[dev]')", file=sys.stderr)
        return 3
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out: Path = args.out or Path("bench/results/load") / f"{args.profile}-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="knhk-load-"))
    try:
        with target(args) as (server, url, tokens):
            head = {"Authorization": f"Bearer {tokens[0]}"}
            r = httpx.get(f"{url}/api/v1/receipts/checkpoint", headers=head, timeout=10)
            receipts = int(r.json().get("tree_size", 0)) if r.status_code == 200 else 0
            plan = {"rate": args.rate, "users": args.users, "mix": args.mix, "batch_size": args.batch_size,
                    "tokens": tokens, "sectors": list(SECTORS), "observations": observation_pool(),
                    "receipts": receipts, "samples_dir": str(work)}
            (work / "plan.json").write_text(json.dumps(plan))
            cmd = [locust, "-f", str(HERE / "locustfile.py"), "--headless", "--host", url, "-u", str(args.users),
                   "-r", str(max(1, args.users)), "-t", f"{math.ceil(args.duration)}s", "--stop-timeout", "10",
                   "--only-summary", "--exit-code-on-error", "0", "--loglevel", "WARNING"]
            if args.processes > 1:
                cmd += ["--processes", str(args.processes)]
            load_before = Path("/proc/loadavg").read_text().split()[:3]
            server_cpu0 = _tree_cpu(server.proc.pid) if server and server.proc else None
            ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            box0, pg0 = _box_cpu(), _postgres_cpu()
            started = time.monotonic()
            seen_cpu = 0.0  # the generator's process tree, sampled: forked Locust workers may not be reaped
            with (out / "locust.log").open("w") as log:
                proc = subprocess.Popen(cmd, env={**os.environ, "KNHK_LOAD_PLAN": str(work / "plan.json")},
                                        stdout=log, stderr=subprocess.STDOUT)
                while proc.poll() is None:
                    seen_cpu = max(seen_cpu, _tree_cpu(proc.pid))
                    time.sleep(0.5)
            wall = time.monotonic() - started
            box1, pg1 = _box_cpu(), _postgres_cpu()
            ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            server_cpu = _tree_cpu(server.proc.pid) - server_cpu0 if server and server.proc and server_cpu0 else None
            load_after = Path("/proc/loadavg").read_text().split()[:3]
            server_log = server.log_tail(60) if server else ""
        samples = load_samples(work)
        if len(samples.start) == 0:
            print(f"the load generator recorded no request (exit {proc.returncode}); see {out / 'locust.log'}",
                  file=sys.stderr)
            return 3
        limits = Thresholds(args.p95_ms, args.p99_ms, args.max_error_rate, args.min_rate_ratio)
        measured = float(samples.start.max() - samples.start.min()) or args.duration
        summary = summarise(samples, args.rate, max(measured, 1e-9), limits)
        tl = timeline(samples)
        cores = os.cpu_count() or 1
        gen_cpu = max(seen_cpu, (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime))
        summary = {
            "profile": args.profile, "target_rate": args.rate, "duration_s": args.duration,
            "measured_s": round(measured, 2), "users": args.users, "locust_processes": args.processes,
            "mix": args.mix, "batch_size": args.batch_size, "latency_basis": "from schedule (service time + lateness)",
            "server": {"url": url, "started_by_tool": server is not None, "workers": args.workers if server else None,
                       "settings_flipped": args.server_env, "clients": len(tokens),
                       "cpu_share": round(server_cpu / (wall * cores), 3) if server_cpu else None},
            "generator_cpu_share": round(gen_cpu / (wall * cores), 3), "cores": cores,
            # PostgreSQL's processes (all of this machine's, while the run lasted; they die and are born, so
            # this undercounts backends that ended) and the whole machine: is the box itself saturated?
            "database_cpu_share": round((pg1 - pg0) / (wall * cores), 3),
            "machine_busy_share": round((box1[0] - box0[0]) / max(box1[1] - box0[1], 1e-9), 3),
            "loadavg_before": load_before, "loadavg_after": load_after, "receipts_for_proofs": receipts,
            **summary, "timeline": tl,
        }
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        title = (f"knhk load test '{args.profile}': target {args.rate:g} req/s for {args.duration:g} s, "
                 f"achieved {summary['rate']} req/s, errors {summary['error_rate']:.2%}")
        plot(tl, limits, args.rate, title, out / "latency.png")
        if args.keep_samples:
            for f in work.glob("samples-*.csv"):
                shutil.copy(f, out / f.name)
        if server_log and summary["errors"]:
            (out / "server.log").write_text(server_log + "\n")
        lat = summary["latency_ms"]
        print(f"{args.profile}: target {args.rate:g} req/s x {args.duration:g} s -> {summary['rate']} req/s, "
              f"{summary['requests']} requests, errors {summary['error_rate']:.2%}; latency p50 {lat['p50']} / "
              f"p95 {lat['p95']} / p99 {lat['p99']} ms (service time p95 {summary['service_latency_ms']['p95']} ms); "
              f"CPU of the {cores} cores: server {summary['server']['cpu_share'] or 0:.0%}, database "
              f"{summary['database_cpu_share']:.0%}, generator {summary['generator_cpu_share']:.0%}, machine busy "
              f"{summary['machine_busy_share']:.0%}; load {' '.join(load_before)}")
        for name, s in summary["by_endpoint"].items():
            print(f"  {name:17} {s['rate']:8.1f}/s  p95 {s['latency_ms']['p95']:8.1f} ms  p99 "
                  f"{s['latency_ms']['p99']:8.1f} ms  errors {s['errors']}  {s['status_codes']}")
        print(f"  summary {out / 'summary.json'}, plot {out / 'latency.png'}")
        for b in summary["breaches"]:
            print(f"  THRESHOLD BREACHED: {b}")
        return 0 if summary["passed"] else 1
    except ServerFailed as exc:
        print(str(exc), file=sys.stderr)
        return 3
    except httpx.HTTPError as exc:
        print(f"the service did not answer: {exc}", file=sys.stderr)
        return 3
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
