"""Operations on the ledger (SPEC §8, §10 ``/receipts``; §13 ``knhk receipts``, ``knhk keys``): read entries,
prove one offline, checkpoints, consistency proofs, full verification, and the signing keys.

Checking a proof bundle needs no installation at all: :func:`knhk.proof.bundle.verify_bundle`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from knhk.app.access import READ_AUDIT, READ_KEYS, READ_RECEIPTS, ROTATE_KEYS
from knhk.app.base import Operations
from knhk.errors import ConfigurationError, ConflictError
from knhk.identity.rbac import Principal
from knhk.ledger.store import StoredCheckpoint
from knhk.ledger.verify import VerifyReport
from knhk.observations.evidence import EvidenceReport, check_all_evidence, check_evidence
from knhk.proof.entry import Entry
from knhk.proof.signing import PublicKey, SigningKey


@dataclass(frozen=True)
class Consistency:
    """An RFC 9162 consistency proof between two tree sizes of a log, with both roots."""

    log: str
    first: int
    second: int
    first_root: bytes
    second_root: bytes
    proof: list[bytes]

    def to_json(self) -> dict[str, Any]:
        return {"log": self.log, "first": self.first, "second": self.second, "first_root": self.first_root.hex(),
                "second_root": self.second_root.hex(), "proof": [h.hex() for h in self.proof]}


@dataclass(frozen=True)
class SigningKeyInfo:
    """A key of the keyring (its public half) and whether it is the active one."""

    key: PublicKey
    active: bool


class LedgerOps(Operations):
    def _allow_entries(self, actor: Principal, log: str) -> None:
        """Reading the *contents* of a log's entries: ``receipts:read`` for the receipts log, ``audit:read``
        (administrators, SPEC §10) for the audit log. Checkpoints, consistency proofs and verification reveal
        only hashes and sizes and stay ``receipts:read`` for both logs."""
        self._allow(actor, READ_AUDIT if log == "audit" else READ_RECEIPTS)

    def receipts(self, actor: Principal, log: str = "receipts", *, after_seq: int = -1, limit: int = 100,
                 kind: str | None = None, sector: str | None = None, subject: str | None = None,
                 since_us: int | None = None, until_us: int | None = None, newest_first: bool = False,
                 before_seq: int | None = None) -> list[Entry]:
        """Entries of a log in seq order after ``after_seq`` (``newest_first``: descending, before ``before_seq``),
        filtered by kind, sector, subject and time (``since_us`` ≤ ts_us < ``until_us``)."""
        self._allow_entries(actor, log)
        return self.runtime.ledger.entries(log, after_seq=after_seq, limit=limit, kind=kind, sector=sector,
                                           subject=subject, since_us=since_us, until_us=until_us,
                                           descending=newest_first, before_seq=before_seq)

    def receipt(self, actor: Principal, log: str, seq: int) -> Entry:
        self._allow_entries(actor, log)
        ledger = self.runtime.ledger
        return self.runtime.last_seen.read("receipt", f"{log}/{seq}", lambda: ledger.entry(log, seq))

    def prove(self, actor: Principal, log: str, seq: int) -> dict[str, Any]:
        """An offline proof bundle for entry ``seq`` (entry, inclusion proof, signed checkpoint, public key)."""
        self._allow_entries(actor, log)
        ledger = self.runtime.ledger
        return self.runtime.last_seen.read("proof", f"{log}/{seq}", lambda: ledger.prove(log, seq))

    def receipt_evidence(self, actor: Principal, log: str, seq: int) -> EvidenceReport:
        """Entry ``seq``'s evidence commitment recomputed from the observation store (SPEC §8): the report
        names the first mismatch (a missing or edited observation, a root that no longer matches)."""
        self._allow_entries(actor, log)
        return check_evidence(self.runtime.ledger, self.runtime.db, log, seq,
                              self.runtime.settings.resolved_archive_dir)

    def verify_evidence(self, actor: Principal) -> tuple[int, EvidenceReport | None]:
        """Every receipt's evidence commitment recomputed: (how many were checked, the first failing report)."""
        self._allow(actor, READ_RECEIPTS)
        return check_all_evidence(self.runtime.ledger, self.runtime.db,
                                  archive_dir=self.runtime.settings.resolved_archive_dir)

    def checkpoint(self, actor: Principal, log: str = "receipts") -> StoredCheckpoint:
        """The signed checkpoint of the log's current tree (issued now if the log grew since the latest)."""
        self._allow(actor, READ_RECEIPTS)
        ledger = self.runtime.ledger

        def latest() -> StoredCheckpoint:
            cp = ledger.latest_checkpoint(log)
            if cp is None or cp.tree_size < ledger.tree_size(log):
                cp = ledger.checkpoint(log)
            return cp

        return self.runtime.last_seen.read("checkpoint", log, latest)

    def consistency(self, actor: Principal, log: str, first: int, second: int) -> Consistency:
        self._allow(actor, READ_RECEIPTS)
        ledger = self.runtime.ledger

        def prove() -> Consistency:
            proof = ledger.consistency_proof(log, first, second)
            return Consistency(log, first, second, ledger.root(log, first), ledger.root(log, second), proof)

        return self.runtime.last_seen.read("consistency", f"{log}/{first}/{second}", prove)

    def verify(self, actor: Principal, log: str, *, workers: int | None = None,
               progress: Callable[[int, int], None] | None = None) -> VerifyReport:
        """Recompute and check a whole log: ids, signatures, chain, time order, Merkle tree, checkpoints."""
        self._allow(actor, READ_RECEIPTS)
        return self.runtime.ledger.verify(log, workers=workers, progress=progress)

    # -- keys -----------------------------------------------------------------------------------------------
    def signing_keys(self, actor: Principal) -> list[SigningKeyInfo]:
        """Every key of the keyring (public halves only), oldest first."""
        self._allow(actor, READ_KEYS)
        keyring = self.runtime.keyring
        active = keyring.active_key_id()
        return [SigningKeyInfo(k, k.key_id == active) for k in keyring.public_keys(refresh=True).values()]

    def generate_key(self, actor: Principal) -> tuple[PublicKey, str]:
        """Create the installation's first signing key (a conflict once it has rotated keys); the active key
        and the file holding its private half."""
        self._allow(actor, ROTATE_KEYS)
        keyring = self.runtime.keyring
        active = keyring.active_key_id()
        if active is not None and len(keyring.public_keys(refresh=True)) > 1:
            raise ConflictError(f"the keyring already has active key {active}; use 'knhk keys rotate'")
        key_id = keyring.ensure_active()
        return keyring.public_key(key_id), str(keyring.keys_dir / f"{key_id}.key")

    def rotate_key(self, actor: Principal, key: SigningKey | None = None, *,
                   reason: str | None = None) -> tuple[str | None, PublicKey]:
        """Make a new key (or ``key``) active; each log is first closed with a checkpoint signed by the outgoing
        key, so every old entry keeps verifying. Audited."""
        self._allow(actor, ROTATE_KEYS)
        old, public = self.runtime.ledger.rotate_key(key)
        self.runtime.audit.record(actor.identity, "key.rotated", f"key/{public.key_id}", reason=reason,
                                  metadata={"previous_key_id": old or "", "key_id": public.key_id})
        return old, public

    def rotate_phi_key(self, actor: Principal, *, retire: bool = False,
                       reason: str | None = None) -> tuple[str, str, int, list[str]]:
        """A new key-encryption key for PHI at rest: every data key re-wrapped under it in one transaction (no
        observation row and no ledger entry is rewritten), then made active; with ``retire``, the files of
        KEKs no data key uses any more are removed. Returns (previous KEK id, new KEK id, data keys re-wrapped,
        KEK ids retired). Audited."""
        self._allow(actor, ROTATE_KEYS)
        cipher = self.runtime.db.fields
        if cipher is None:
            raise ConfigurationError("this installation has no PHI encryption at rest loaded")
        if self.runtime.settings.phi_key is not None:
            raise ConfigurationError("the PHI key comes from KNHK_PHI_KEY: rotate it by re-wrapping with key files;"
                                     " unset KNHK_PHI_KEY to let knhk manage phi-<id>.kek files")
        previous = cipher.ring.active
        new, rewrapped = cipher.rotate(self.runtime.db)
        retired = cipher.retire(self.runtime.db) if retire else []
        self.runtime.audit.record(actor.identity, "phi_key.rotated", f"phi-key/{new}", reason=reason,
                                  metadata={"previous_kek_id": previous, "kek_id": new,
                                            "data_keys_rewrapped": str(rewrapped), "retired": ",".join(retired)})
        return previous, new, rewrapped, retired
