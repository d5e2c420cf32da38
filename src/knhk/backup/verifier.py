"""Verifying a restored store against its manifest and the running system (the I/O around
:mod:`knhk.backup.checks`): count rows, verify every log in full, check the manifest's checkpoints and prove
consistency with the newest checkpoint the running system knows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from knhk.backup import store
from knhk.backup.checks import (
    LiveProof,
    Problem,
    check_checkpoint,
    check_manifest_log,
    compare_tables,
    prove_against_live,
)
from knhk.backup.manifest import Checkpoint, Manifest, StoreState
from knhk.ledger.keyring import Keyring
from knhk.ledger.ledger import Ledger
from knhk.proof.entry import LOGS
from knhk.storage.database import Database

Mode = Literal["exact", "between", "at_least"]


def reader(db: Database) -> Ledger:
    """A ledger over ``db`` for reading, proving and verifying only (it holds no private key)."""
    return Ledger(db, Keyring(db, Path("/nonexistent-knhk-keys")))


class LiveSystem:
    """The running installation as the trust anchor: its keyring, newest checkpoints and audit log."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.ledger = reader(db)
        with db.snapshot() as conn:
            self.keys = store.public_keys(conn)
            states = {log: store.log_state(conn, log) for log in LOGS}
        self.checkpoints: dict[str, Checkpoint | None] = {log: s.checkpoint for log, s in states.items()}
        self.tree_sizes = {log: s.tree_size for log, s in states.items()}

    def records(self, backup_id: str) -> list[str]:
        with self.db.connection() as conn:
            return store.backup_records(conn, backup_id)

    def close(self) -> None:
        self.ledger.close()


@dataclass
class Verification:
    backup: str
    kind: str
    problems: list[Problem] = field(default_factory=list)
    restored: StoreState | None = None
    logs: dict[str, dict[str, Any]] = field(default_factory=dict)
    live: str = "not checked"
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems and self.restored is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "backup": self.backup, "kind": self.kind, "ok": self.ok,
            "problems": [str(p) for p in self.problems],
            "tables": dict(self.restored.tables) if self.restored else {},
            "logs": self.logs, "live": self.live, "duration_s": round(self.duration_s, 3),
        }


def _live_json(proof: LiveProof) -> dict[str, Any]:
    return {"checkpoint_size": proof.checkpoint_size, "direction": proof.direction,
            "proof": [h.hex() for h in proof.proof]}


def verify_restored(manifest: Manifest, db: Database, live: LiveSystem | None, *, mode: Mode,
                    workers: int | None = None, result: Verification | None = None) -> Verification:
    """Check the restored store ``db`` (nobody else writes to it) against ``manifest`` and ``live``."""
    started = time.monotonic()
    out = result or Verification(manifest.id, manifest.kind)
    with db.snapshot() as conn:
        restored = store.read_state(conn)
        restored_keys = store.public_keys(conn)
    out.restored = restored
    upper = manifest.state_after
    out.problems += compare_tables(manifest.state, restored, upper=upper if mode == "between" else None,
                                   exact=mode == "exact")
    keys = live.keys if live is not None else restored_keys
    tree = reader(db)
    try:
        for log in LOGS:
            report = tree.verify(log, workers=workers)
            entry: dict[str, Any] = {"tree_size": report.tree_size, "root_hash": report.root_hash,
                                     "verified": report.ok, "verified_count": report.verified_count,
                                     "checkpoints_checked": report.checkpoints_checked}
            if not report.ok:
                first = report.first_failure
                where = f"entry {first.seq}: " if first and first.seq is not None else ""
                reason = first.reason if first else "the log does not verify"
                out.problems.append(Problem(f"log {log}", f"ledger verification failed: {where}{reason}"))
            expected = manifest.state.logs.get(log)
            if expected is None:
                out.problems.append(Problem(f"log {log}", "the manifest does not describe this log"))
                continue
            entry["manifest_tree_size"] = expected.tree_size
            after = upper.logs.get(log) if upper is not None and mode == "between" else None
            out.problems += check_manifest_log(log, tree, expected, exact=mode == "exact", upper=after, keys=keys,
                                               label="backup state")
            after_cp = upper.logs[log].checkpoint if upper is not None and log in upper.logs else None
            if mode != "exact" and after_cp is not None and after_cp.tree_size <= report.tree_size:
                out.problems += check_checkpoint(log, tree, after_cp, keys, "the manifest's backup-end checkpoint")
            if live is not None:
                proof = prove_against_live(log, tree, live.ledger, live.checkpoints.get(log), keys)
                out.problems += proof.problems
                entry["live"] = _live_json(proof)
            out.logs[log] = entry
    finally:
        tree.close()
    if live is not None:
        # The creation record is appended after the backup's last audit entry: a running system whose audit log
        # has grown past that point on the same history must hold it. One that has not (the backup is from its
        # future, e.g. rolling forward after restoring an older backup) cannot, and is not asked to.
        audit_state = manifest.state.logs.get("audit")
        must_hold = audit_state is None or live.tree_sizes.get("audit", 0) > audit_state.tree_size
        if must_hold and manifest.digest() not in live.records(manifest.id):
            out.problems.append(Problem("manifest", "this backup is not recorded (with this manifest digest) in the "
                                                    "running system's audit log"))
        out.live = "checked"
    out.duration_s = time.monotonic() - started
    return out
