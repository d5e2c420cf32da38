"""What a restored store must satisfy to be accepted (pure: facts in, problems out).

* its row counts and schema version equal the manifest's (exact backups), or lie between the manifest's
  before/after states for append-only tables (physical backups taken online), or are at least the
  manifest's (a restore that replayed WAL past the backup);
* each ledger log fully verifies (:mod:`knhk.ledger.verify`) and contains the manifest's tree: equal size
  and root, or an RFC 9162 consistency proof from the manifest's size to the restored size;
* each manifest checkpoint is signed by the log key and consistent with the restored tree;
* the restored tree and the newest checkpoint known to the running system lie on one history: when the
  running system is ahead, a consistency proof it produces from the restored size to its checkpoint, checked
  against the root recomputed from the restored entries; when the restore is ahead, a proof the restored
  store produces from the checkpoint's size.

Every check returns :class:`Problem` values naming the table, log or file and what is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from knhk.backup.manifest import APPEND_ONLY_TABLES, Checkpoint, LogState, StoreState
from knhk.errors import IntegrityError
from knhk.proof.checkpoint import Checkpoint as ParsedCheckpoint
from knhk.proof.checkpoint import verify_checkpoint
from knhk.proof.merkle import proves_consistency


@dataclass(frozen=True)
class Problem:
    subject: str
    message: str

    def __str__(self) -> str:
        return f"{self.subject}: {self.message}"


class Tree(Protocol):
    """A stored log: its size, its root at a size, and consistency proofs between sizes."""

    def tree_size(self, log: str) -> int: ...
    def root(self, log: str, size: int | None = None) -> bytes: ...
    def consistency_proof(self, log: str, first: int, second: int) -> list[bytes]: ...


def compare_tables(expected: StoreState, restored: StoreState, *, upper: StoreState | None,
                   exact: bool) -> list[Problem]:
    """Row counts and schema version. ``exact``: equal. Otherwise append-only tables must lie within
    [expected, upper] (``upper`` None: at least ``expected``); other tables are not compared."""
    out: list[Problem] = []
    low_v, high_v = expected.schema_version, (upper or expected).schema_version
    if exact and restored.schema_version != low_v:
        out.append(Problem("schema", f"version {restored.schema_version}, manifest says {low_v}"))
    elif not exact and (restored.schema_version < low_v or (upper is not None and restored.schema_version > high_v)):
        out.append(Problem("schema", f"version {restored.schema_version} outside the backup's {low_v}…{high_v}"))
    for table, want in sorted(expected.tables.items()):
        have = restored.tables.get(table)
        if have is None:
            out.append(Problem(f"table {table}", "missing from the restored store"))
            continue
        if exact:
            if have != want:
                out.append(Problem(f"table {table}", f"{have} rows restored, manifest says {want}"))
            continue
        if table not in APPEND_ONLY_TABLES:
            continue
        high = None if upper is None else upper.tables.get(table)
        if have < want:
            out.append(Problem(f"table {table}", f"{have} rows restored, fewer than the {want} at backup start"))
        elif high is not None and have > high:
            out.append(Problem(f"table {table}", f"{have} rows restored, more than the {high} at backup end"))
    if exact:
        for table in sorted(set(restored.tables) - set(expected.tables)):
            out.append(Problem(f"table {table}", "present in the restored store but not in the manifest"))
    return out


def check_prefix(log: str, tree: Tree, size: int, root: bytes, what: str) -> list[Problem]:
    """Is the tree of ``size`` with ``root`` (from ``what``) a prefix of the restored log?"""
    have = tree.tree_size(log)
    subject = f"log {log}"
    if size == 0:
        return []
    if size > have:
        return [Problem(subject, f"restored tree has {have} entries, fewer than the {size} of {what}")]
    if size == have:
        if tree.root(log, have) != root:
            return [Problem(subject, f"restored root at size {have} differs from {what}")]
        return []
    proof = tree.consistency_proof(log, size, have)
    if not proves_consistency(size, have, root, tree.root(log, have), proof):
        return [Problem(subject, f"restored tree of size {have} is not consistent with {what} (size {size}): "
                                 "the RFC 9162 consistency proof fails")]
    return []


def check_manifest_log(log: str, tree: Tree, expected: LogState, *, exact: bool, upper: LogState | None,
                       keys: Mapping[str, bytes], label: str) -> list[Problem]:
    """The restored log against one manifest state of it (tree size, root, checkpoint)."""
    subject = f"log {log}"
    have = tree.tree_size(log)
    out: list[Problem] = []
    if exact and have != expected.tree_size:
        out.append(Problem(subject, f"{have} entries restored, manifest says {expected.tree_size}"))
        return out
    if upper is not None and have > upper.tree_size:
        out.append(Problem(subject, f"{have} entries restored, more than the {upper.tree_size} at backup end"))
    out += check_prefix(log, tree, expected.tree_size, bytes.fromhex(expected.root_hash), f"the manifest's {label}")
    if expected.checkpoint is not None:
        out += check_checkpoint(log, tree, expected.checkpoint, keys, f"the manifest's {label} checkpoint")
    return out


def verified_checkpoint(log: str, cp: Checkpoint, keys: Mapping[str, bytes],
                        what: str) -> tuple[ParsedCheckpoint | None, list[Problem]]:
    """Check a checkpoint's signature (by the key it names, which must be in ``keys``) and that it is for
    this log at the size it claims."""
    public = keys.get(cp.key_id)
    if public is None:
        return None, [Problem(f"log {log}", f"{what} is signed by key {cp.key_id}, which the trusted keyring lacks")]
    try:
        parsed = verify_checkpoint(cp.note, public)
    except IntegrityError as exc:
        return None, [Problem(f"log {log}", f"{what}: {exc.message}")]
    if not parsed.origin.endswith(f"knhk/{log}") or parsed.tree_size != cp.tree_size:
        return None, [Problem(f"log {log}", f"{what} is for {parsed.origin} at size {parsed.tree_size}, "
                                            "not for this log at the size it claims")]
    return parsed, []


def check_checkpoint(log: str, tree: Tree, cp: Checkpoint, keys: Mapping[str, bytes], what: str) -> list[Problem]:
    """A signed checkpoint: signature by the named key, and consistent with the restored tree."""
    parsed, problems = verified_checkpoint(log, cp, keys, what)
    if parsed is None:
        return problems
    return check_prefix(log, tree, parsed.tree_size, parsed.root_hash, what)


@dataclass(frozen=True)
class LiveProof:
    """The outcome of proving a restored log against the running system's newest checkpoint."""

    log: str
    restored_size: int
    checkpoint_size: int
    direction: str  # "restored-is-prefix" | "checkpoint-is-prefix" | "equal" | "none"
    proof: tuple[bytes, ...]
    problems: tuple[Problem, ...]


def prove_against_live(log: str, restored: Tree, live: Tree, cp: Checkpoint | None,
                       keys: Mapping[str, bytes]) -> LiveProof:
    """Prove the restored log and the running system's newest checkpoint lie on one history."""
    size = restored.tree_size(log)
    if cp is None:
        return LiveProof(log, size, 0, "none", (), ())
    parsed, problems = verified_checkpoint(log, cp, keys, "the running system's newest checkpoint")
    if parsed is None:
        return LiveProof(log, size, cp.tree_size, "none", (), tuple(problems))
    parsed_root = parsed.root_hash
    if cp.tree_size <= size:
        found = check_prefix(log, restored, cp.tree_size, parsed_root, "the running system's newest checkpoint")
        proof: Sequence[bytes] = () if cp.tree_size in (0, size) else restored.consistency_proof(
            log, cp.tree_size, size)
        direction = "equal" if cp.tree_size == size else "checkpoint-is-prefix"
        return LiveProof(log, size, cp.tree_size, direction, tuple(proof), tuple(found))
    if size == 0:
        return LiveProof(log, 0, cp.tree_size, "restored-is-prefix", (), ())
    proof = live.consistency_proof(log, size, cp.tree_size)
    ok = proves_consistency(size, cp.tree_size, restored.root(log, size), parsed_root, proof)
    found = [] if ok else [Problem(f"log {log}", f"restored tree of size {size} is not a prefix of the running "
                                               f"system's checkpoint at size {cp.tree_size}: the consistency "
                                               "proof fails")]
    return LiveProof(log, size, cp.tree_size, "restored-is-prefix", tuple(proof), tuple(found))
