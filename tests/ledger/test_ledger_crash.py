"""Nothing acknowledged is ever lost, and a crash never breaks the log (SPEC §8 "Writes").

A child process appends from three threads in a loop and prints each entry's seq and id only after
``append`` returned. The test kills it with SIGKILL at a random moment, repeatedly, and restarts it. After
every round, on both backends: every seq the child printed is stored with the same id, the seqs are
contiguous from 0, and the full verifier passes (chain, signatures, Merkle nodes, checkpoints).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from pathlib import Path

from ledger_support import PYTHON, open_runtime

WORKER = str(Path(__file__).with_name("ledger_worker.py"))
ROUNDS = 6


def _run_and_kill(url: str, keys_dir: Path, rng: random.Random) -> dict[int, str]:
    proc = subprocess.Popen([PYTHON, WORKER, "loop", url, str(keys_dir), "0", "3"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    acknowledged: dict[int, str] = {}
    first = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.endswith("\n"):
                seq, eid = line.split()
                acknowledged[int(seq)] = eid
                first.set()

    reader = threading.Thread(target=read)
    reader.start()
    started = first.wait(60)
    if started:
        time.sleep(rng.uniform(0.0, 0.4))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    reader.join(30)
    assert proc.stderr is not None
    errors = proc.stderr.read()
    proc.stderr.close()
    assert started, f"the child never acknowledged an append: {errors}"
    assert proc.returncode == -signal.SIGKILL, errors
    return acknowledged


def test_sigkill_never_loses_an_acknowledged_entry(tmp_path: Path, database_url: str) -> None:
    data = tmp_path / "data"
    open_runtime(database_url, data).close()
    rng = random.Random()
    acknowledged: dict[int, str] = {}
    sizes = []
    for _ in range(ROUNDS):
        acknowledged.update(_run_and_kill(database_url, data / "keys", rng))
        rt = open_runtime(database_url, data)  # a restart: whatever recovery is needed happens here
        try:
            size = rt.ledger.tree_size("receipts")
            stored = {e.seq: e.id for e in rt.ledger.entries("receipts", limit=10_000)}
            assert sorted(stored) == list(range(size))
            missing = {s: i for s, i in acknowledged.items() if stored.get(s) != i}
            assert not missing, f"acknowledged but not stored: {sorted(missing)[:10]}"
            report = rt.ledger.verify("receipts")
            assert report.ok, report.to_json()
            sizes.append(size)
        finally:
            rt.close()
    assert sizes == sorted(sizes)
    assert len(set(sizes)) == ROUNDS  # every round added entries
