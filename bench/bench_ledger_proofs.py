"""Inclusion and consistency proofs at 1,000,000 entries, from storage (SPEC §12): < 1 ms each.

Uses a 1 M-entry log built by the real sequencer (``bench_ledger_verify.build``; reused from ``--db DIR`` if
that holds one), on SQLite and on PostgreSQL (the same rows copied with COPY). For each backend it asks the
ledger for ≥ 1,000 random inclusion proofs (leaf index, current tree size) and ≥ 1,000 random consistency
proofs (random older size → current size), each through ``Ledger.inclusion_proof`` /
``Ledger.consistency_proof`` exactly as the API and CLI do, checks every proof against the root, and prints
p50/p95. The baseline, measured in the same run on the same connection layer, is one raw single-row
primary-key SELECT (an entry by log and seq).

    .venv/bin/python bench/bench_ledger_proofs.py [--db DIR] [--entries 1000000] [--proofs 1000]
                                                  [--backend sqlite|postgresql|both]
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_ledger_verify import build, copy_to_postgres, drop_postgres, settings_for
from knhk.app.runtime import Runtime
from knhk.proof.merkle import leaf_hash, proves_consistency, proves_inclusion


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(0.95 * (len(ordered) - 1))]


def bench(url: str, data_dir: Path, proofs: int, rng: random.Random) -> dict[str, tuple[float, float]]:
    rt = Runtime.open(settings_for(url, data_dir), install_packs=False, migrate=False)
    try:
        ledger = rt.ledger
        size = ledger.tree_size("receipts")
        root = ledger.root("receipts", size)
        indexes = [rng.randrange(size) for _ in range(proofs)]
        firsts = [rng.randrange(1, size) for _ in range(proofs)]
        payloads = {i: ledger.entry("receipts", i).payload for i in indexes}
        roots = {m: ledger.root("receipts", m) for m in firsts}
        for i in indexes[:50] + firsts[:50]:  # warm up caches and connections
            ledger.inclusion_proof("receipts", i % size, size)
        inclusion, consistency, baseline = [], [], []
        clock = time.perf_counter
        for i in indexes:
            start = clock()
            proof = ledger.inclusion_proof("receipts", i, size)
            inclusion.append((clock() - start) * 1000)
            assert proves_inclusion(leaf_hash(payloads[i]), i, size, proof, root)
        for m in firsts:
            start = clock()
            proof = ledger.consistency_proof("receipts", m, size)
            consistency.append((clock() - start) * 1000)
            assert proves_consistency(m, size, roots[m], root, proof)
        with rt.db.connection() as conn:
            for i in indexes:
                start = clock()
                conn.fetchone("SELECT payload FROM ledger_entries WHERE log=? AND seq=?", ("receipts", i))
                baseline.append((clock() - start) * 1000)
        return {"inclusion": percentiles(inclusion), "consistency": percentiles(consistency),
                "baseline": percentiles(baseline), "size": (float(size), 0.0)}
    finally:
        rt.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", type=Path, help="directory holding (or to keep) the 1 M-entry SQLite ledger")
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--proofs", type=int, default=1_000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="knhk-proofs-bench-"))
    base = args.db or work
    db_file, data_dir = base / "ledger.db", base / "data"
    rng = random.Random(1_000_000)
    ok = True
    try:
        if not db_file.exists():
            base.mkdir(parents=True, exist_ok=True)
            seconds = build(db_file, args.entries, data_dir)
            print(f"built {args.entries:,} entries in {seconds:.1f} s")
        for backend in (["sqlite", "postgresql"] if args.backend == "both" else [args.backend]):
            url = f"sqlite:///{db_file}" if backend == "sqlite" else copy_to_postgres(db_file)
            try:
                figures = bench(url, data_dir, args.proofs, rng)
            finally:
                if backend == "postgresql":
                    drop_postgres(url)
            b50, b95 = figures["baseline"]
            print(f"{backend}: tree size {int(figures['size'][0]):,}; raw single-row PK SELECT p50 {b50:.3f} ms "
                  f"p95 {b95:.3f} ms")
            for kind in ("inclusion", "consistency"):
                p50, p95 = figures[kind]
                good = p50 < 1 and p95 < 1
                ok &= good
                print(f"  {kind:12s} proof p50 {p50:.3f} ms  p95 {p95:.3f} ms  ({p50 / b50:.1f}× / {p95 / b95:.1f}× "
                      f"the PK SELECT)  {'OK' if good else 'MISSED'} (target < 1 ms)")
        print("all targets met" if ok else "some targets missed")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
