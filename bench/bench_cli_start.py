"""Benchmark: how long a ``knhk`` command takes as a user starts it (a fresh process, imports included).

Each command runs as a child process ``--runs`` times after one warm-up run (so the bytecode cache is warm),
on an embedded store made once with ``knhk init`` in a temporary directory; printed per command: the median,
minimum and maximum wall time and the median CPU time (user + system, from the kernel's accounting of the
child), and the exit code. The first row is the interpreter alone (``python -c pass``), the floor no command
can go below. The load average is printed with the figures: on a shared machine, compare medians taken in the
same minute.

    .venv/bin/python bench/bench_cli_start.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KNHK = str(Path(sys.executable).with_name("knhk"))
COMMANDS: list[tuple[str, list[str]]] = [
    ("python -c pass (the floor)", [sys.executable, "-c", "pass"]),
    ("knhk --help", [KNHK, "--help"]),
    ("knhk audit --help", [KNHK, "audit", "--help"]),
    ("knhk receipts verify", [KNHK, "receipts", "verify"]),
    ("knhk audit append", [KNHK, "audit", "append", "--actor", "bench@host", "--action", "bench.ran",
                           "--resource", "bench/cli-start", "--outcome", "success"]),
    ("knhk token mint --role observer", [KNHK, "token", "mint", "--role", "observer"]),
    ("knhk preflight --only key-files", [KNHK, "preflight", "--only", "key-files"]),
]


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """(wall s, CPU s of the child, exit code) of one run."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_utime + usage.ru_stime, proc.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="counted runs per command (at least 3)")
    args = parser.parse_args()
    if args.runs < 3:
        parser.error("--runs must be at least 3 (a median of fewer says little)")
    with tempfile.TemporaryDirectory(prefix="knhk-bench-cli-") as folder:
        env = {**os.environ, "KNHK_DATA_DIR": folder}
        subprocess.run([KNHK, "init"], env=env, check=True, stdout=subprocess.DEVNULL)
        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {args.runs} runs each "
              "after 1 warm-up")
        print(f"{'command':<34} {'wall median':>11} {'min':>7} {'max':>7} {'cpu median':>10}  exit")
        for name, argv in COMMANDS:
            timed(argv, env)  # warm-up: bytecode cache, page cache
            runs = [timed(argv, env) for _ in range(args.runs)]
            walls = [w for w, _, _ in runs]
            codes = sorted({c for _, _, c in runs})
            print(f"{name:<34} {statistics.median(walls):>10.3f}s {min(walls):>6.3f}s {max(walls):>6.3f}s "
                  f"{statistics.median(c for _, c, _ in runs):>9.3f}s  {','.join(map(str, codes))}")
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
