"""A separate OS process that appends to a ledger (not a test module; run by the sequencer and crash tests).

    ledger_worker.py burst URL KEYS_DIR WORKER THREADS PER_THREAD CHUNK
        THREADS threads each append PER_THREAD entries in append_many calls of CHUNK; at the end prints
        one "seq id" line per entry it was given back.
    ledger_worker.py loop URL KEYS_DIR WORKER THREADS
        THREADS threads append one entry at a time forever; each prints "seq id" (flushed) only after
        ``append`` has returned, i.e. after the ledger acknowledged the entry as durable.

It wires the ledger by hand (database, keyring, ledger) so that it starts fast; the parent has already
migrated the database and made the signing key.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from knhk.ledger.keyring import Keyring
from knhk.ledger.ledger import Ledger
from knhk.ledger.sequencer import CheckpointPolicy
from knhk.proof.entry import EntryDraft
from knhk.storage.database import Database


def main() -> None:
    mode, url, keys_dir, worker, threads = sys.argv[1:6]
    db = Database(url, pool_min=1, pool_max=int(threads) + 4)
    ledger = Ledger(db, Keyring(db, Path(keys_dir)), policy=CheckpointPolicy(every_entries=500, every_seconds=3600))
    out_lock = threading.Lock()
    results: list[tuple[int, str]] = []

    def burst(t: int, per_thread: int, chunk: int) -> None:
        done = 0
        while done < per_thread:
            n = min(chunk, per_thread - done)
            drafts = [EntryDraft(log="receipts", kind="worker.appended", subject=f"w{worker}",
                                 data={"worker": int(worker), "thread": t, "i": done + i}) for i in range(n)]
            entries = ledger.append_many(drafts)
            with out_lock:
                results.extend((e.seq, e.id) for e in entries)
            done += n

    def loop(t: int) -> None:
        i = 0
        while True:
            entry = ledger.append(EntryDraft(log="receipts", kind="worker.appended",
                                             data={"worker": int(worker), "thread": t, "i": i}))
            with out_lock:
                sys.stdout.write(f"{entry.seq} {entry.id}\n")
                sys.stdout.flush()
            i += 1

    if mode == "burst":
        per_thread, chunk = int(sys.argv[6]), int(sys.argv[7])
        workers = [threading.Thread(target=burst, args=(t, per_thread, chunk)) for t in range(int(threads))]
    else:
        workers = [threading.Thread(target=loop, args=(t,), daemon=True) for t in range(int(threads))]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    sys.stdout.write("".join(f"{seq} {eid}\n" for seq, eid in results))
    sys.stdout.write(f"batches {ledger.sequencer.batches}\n")
    ledger.close()
    db.close()


if __name__ == "__main__":
    main()
