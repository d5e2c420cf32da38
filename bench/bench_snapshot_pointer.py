"""Benchmark (SPEC §12): the current-snapshot read (< 1 µs) and the in-process promotion swap (< 10 µs).

``SnapshotRegistry.current(sector)`` is served from an in-process dict; a promotion, once its transaction
commits, swaps the pointer under a lock (``_swap``). Both are timed in tight loops against the same work on a
plain dict (a read; an assignment under a lock) as the baseline measured in the same run.
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from pathlib import Path

from knhk.app.runtime import Runtime
from knhk.config import Settings

READS = 1_000_000
SWAPS = 200_000
ROUNDS = 5


def per_op_ns(fn: object, n: int) -> float:
    best = []
    for _ in range(ROUNDS):
        t0 = time.perf_counter_ns()
        fn(n)  # type: ignore[operator]
        best.append((time.perf_counter_ns() - t0) / n)
    return statistics.median(best)


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="knhk-bench-ptr-"))
    settings = Settings(data_dir=folder, database_url=f"sqlite:///{folder / 'knhk.db'}", db_pool_min=1, db_pool_max=2)
    with Runtime.open(settings) as rt:
        registry = rt.registry
        root = registry.current("finance")
        assert root is not None
        other = registry.current("logistics")
        assert other is not None
        plain = {"finance": root}
        lock = threading.Lock()

        def read_registry(n: int) -> None:
            current = registry.current
            for _ in range(n):
                current("finance")

        def read_dict(n: int) -> None:
            get = plain.__getitem__
            for _ in range(n):
                get("finance")

        version = [1_000]

        def swap_registry(n: int) -> None:
            swap = registry._swap
            v = version[0]
            for i in range(n):
                swap("finance", other if i & 1 else root, v + i)
            version[0] = v + n

        def swap_dict(n: int) -> None:
            for i in range(n):
                with lock:
                    plain["finance"] = other if i & 1 else root

        read = per_op_ns(read_registry, READS)
        read_base = per_op_ns(read_dict, READS)
        swap = per_op_ns(swap_registry, SWAPS)
        swap_base = per_op_ns(swap_dict, SWAPS)
        registry.refresh("finance")
    print(f"current-snapshot read : {read:8.1f} ns/op  (target < 1000 ns)   baseline dict read {read_base:6.1f} ns/op, "
          f"ratio {read / read_base:.2f}x")
    print(f"promotion pointer swap: {swap:8.1f} ns/op  (target < 10000 ns)  baseline locked dict store "
          f"{swap_base:6.1f} ns/op, ratio {swap / swap_base:.2f}x")
    ok = read < 1000 and swap < 10_000
    print("PASS" if ok else "FAIL")


if __name__ == "__main__":
    main()
