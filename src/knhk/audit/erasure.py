"""GDPR erasure by crypto-shredding (SPEC §9): delete a subject's key and encrypted identity, keep every
immutable row (which only ever held the pseudonym), audit the erasure by pseudonym, and report what still
references the pseudonym so the data controller can see the effect in numbers.

The rows that reference a pseudonym live in other concepts' tables (ledger entries, approvals, observations);
the caller (the application layer) counts them and passes them in as :class:`References`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from knhk.audit.log import AuditLog
from knhk.audit.subjects import PSEUDONYM, Subjects
from knhk.errors import NotFoundError


@dataclass(frozen=True)
class References:
    """How many stored rows mention a pseudonym."""

    receipts: int  # receipts-log entries naming it (as subject or anywhere in the payload)
    audit: int  # audit-log entries naming it
    approvals: int  # approvals it gave or refused
    observations: int  # observations it ingested


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


def erase_subject(subjects: Subjects, audit: AuditLog, subject: str, *, actor: str,
                  references: Callable[[str], References]) -> ErasureReport:
    """Erase ``subject`` (a pseudonym, or an identity that is looked up through the blind index)."""
    if PSEUDONYM.match(subject):
        pseudonym = subject
    else:
        found = subjects.lookup(subject)
        if found is None:
            raise NotFoundError("no subject is known by that identity")
        pseudonym = found
    counts = references(pseudonym)
    erased = subjects.erase(pseudonym)
    entry = audit.record(actor, "subject.erased", f"subject/{pseudonym}", "success",
                         metadata={"identity_rows_deleted": str(int(erased))})
    return ErasureReport(pseudonym, erased, counts.receipts, counts.audit, counts.approvals, counts.observations,
                         int(erased), int(erased), entry.id)
