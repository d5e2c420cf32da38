"""Operations on the audit log and on data subjects (SPEC §9, §10 ``/audit``, ``/subjects/{id}/erasure``; §13
``knhk audit``, ``knhk subjects erase``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from knhk.app.access import ERASE_SUBJECT, READ_AUDIT, RECORD_AUDIT, RESOLVE_IDENTITY
from knhk.app.auth_audit import AuthFailureAudit
from knhk.app.base import Operations
from knhk.audit.erasure import ErasureReport, erase_subject
from knhk.audit.log import AuditEvent
from knhk.identity.rbac import Principal
from knhk.proof.entry import Entry


class AuditOps(Operations):
    auth_audit: AuthFailureAudit

    def audit_events(self, actor: Principal, *, after_seq: int = -1, limit: int = 100,
                     action: str | None = None, newest_first: bool = False) -> list[AuditEvent]:
        """Audit entries (actors as pseudonyms) in seq order after ``after_seq`` (``newest_first``: the latest)."""
        self._allow(actor, READ_AUDIT)
        return self.runtime.audit.events(after_seq=after_seq, limit=limit, action=action, newest_first=newest_first)

    def record_audit(self, actor: Principal, action: str, resource: str, outcome: str, *, reason: str | None = None,
                     metadata: Mapping[str, Any] | None = None) -> Entry:
        """Append one audit entry saying ``actor`` did ``action`` to ``resource`` (deployment scripts, operators)."""
        self._allow(actor, RECORD_AUDIT)
        return self.runtime.audit.record(actor.identity, action, resource, outcome, reason=reason,
                                         metadata=metadata or {})

    def record_authentication_failure(self, who: str, resource: str, reason: str, code: str = "unauthenticated"
                                      ) -> None:
        """Audit a request whose credentials were missing or invalid (``who``: e.g. ``unauthenticated@<address>``;
        ``code``: the failure's reason code): the first of ``who``'s minute at once, the rest aggregated
        (:mod:`knhk.app.auth_audit`)."""
        self.auth_audit.failed(who, resource, reason, code)

    def record_session(self, actor: Principal, event: str, method: str) -> None:
        """Audit a console session starting or ending (``session.started`` / ``session.ended``) for a principal
        the face has just verified (``method``: ``oidc`` or ``local``)."""
        if event not in ("session.started", "session.ended"):
            raise ValueError(f"unknown session event {event!r}")
        self.runtime.audit.record(actor.identity, event, "console", "success", metadata={"method": method})

    def identity_of(self, actor: Principal, pseudonym: str) -> str | None:
        """The identity behind a pseudonym, or None once it was erased."""
        self._allow(actor, RESOLVE_IDENTITY)
        return self.runtime.subjects.identity(pseudonym)

    def erase_subject(self, actor: Principal, subject: str) -> ErasureReport:
        """Crypto-shred a subject (by pseudonym or identity): the ledger still verifies, the person can no longer
        be linked, and the erasure itself is audited by pseudonym."""
        self._allow(actor, ERASE_SUBJECT)
        rt = self.runtime
        report = erase_subject(rt.subjects, rt.audit, subject, actor=actor.identity, references=rt.references)
        rt.proposals.freeze_erased(report.pseudonym)  # erasure must not reopen segregation of duties
        return report
