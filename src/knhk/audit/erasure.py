"""GDPR erasure by crypto-shredding (SPEC §9): delete a subject's key and encrypted identity, keep every
immutable row (which only ever held the pseudonym), audit the erasure by pseudonym, and report what still
references the pseudonym so the data controller can see the effect in numbers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from knhk.audit.subjects import PSEUDONYM
from knhk.errors import NotFoundError
from knhk.storage import subject_store

if TYPE_CHECKING:
    from knhk.runtime import Runtime


@dataclass(frozen=True)
class ErasureReport:
    pseudonym: str
    erased: bool
    ledger_entries_referencing: int
    audit_entries_referencing: int
    approvals_referencing: int
    observations_ingested: int
    identity_rows_deleted: int
    key_rows_deleted: int
    receipt_id: str

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def erase_subject(rt: Runtime, subject: str, *, actor: str) -> ErasureReport:
    """Erase ``subject`` (a pseudonym, or an identity that is looked up through the blind index)."""
    if PSEUDONYM.match(subject):
        pseudonym = subject
    else:
        found = rt.subjects.lookup(subject)
        if found is None:
            raise NotFoundError("no subject is known by that identity")
        pseudonym = found
    with rt.db.connection() as conn:
        counts = subject_store.references(conn, pseudonym)
    erased = rt.subjects.erase(pseudonym)
    entry = rt.audit.record(actor, "subject.erased", f"subject/{pseudonym}", "success",
                            metadata={"identity_rows_deleted": str(int(erased))})
    return ErasureReport(pseudonym, erased, counts["receipts"], counts["audit"], counts["approvals"],
                         counts["observations"], int(erased), int(erased), entry.id)
