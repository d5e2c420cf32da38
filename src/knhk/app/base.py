"""What every group of operations shares: the wiring, the access policy, and the one authorization step.

Each module of :mod:`knhk.app` (observations, proposals, snapshots, cycles, ledger, audit, backup, system) adds
its operations to :class:`~knhk.app.application.Application` as a mixin of :class:`Operations`. An operation takes the
acting :class:`~knhk.identity.rbac.Principal` first and starts with ``self._allow(actor, OPERATION)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from knhk.app.access import Access, Operation
from knhk.errors import ForbiddenError, InvalidInputError
from knhk.identity.rbac import Principal
from knhk.sectors.pack import available_sectors

if TYPE_CHECKING:
    from knhk.app.runtime import Runtime


class Operations:
    """The state every operation mixin relies on."""

    runtime: Runtime  # the wiring: for the application layer and tests; faces never touch it
    access: Access

    def authorize(self, actor: Principal, operation: Operation, *, resource: str | None = None) -> None:
        """Allow ``actor`` to run ``operation`` or raise :class:`ForbiddenError` (403) after auditing the denial.

        Every operation calls this first; a face may call it earlier (the service does, before it reads a
        request body) with the resource it names in the audit entry.
        """
        try:
            self.access.authorize(actor, operation)
        except ForbiddenError as exc:
            self.runtime.audit.record(actor.identity, "authz.denied", resource or f"operation/{operation.name}",
                                      "denied", reason=exc.message[:1000],
                                      metadata={"permission": operation.permission or operation.name})
            raise

    _allow = authorize

    def sectors(self) -> list[str]:
        """The installed sectors (their bundled packs)."""
        return available_sectors()

    def _installed(self, sector: str) -> None:
        if self.runtime.registry.current(sector) is None:
            raise InvalidInputError(f"unknown sector {sector!r}; installed: {', '.join(available_sectors())}")

    def _pseudonym(self, actor: Principal) -> str:
        return actor.pseudonym or self.runtime.subjects.pseudonym(actor.identity)

    def pseudonymised(self, actor: Principal) -> Principal:
        """The principal with its pseudonym filled in (what immutable rows may hold instead of the identity)."""
        return actor if actor.pseudonym else actor.with_pseudonym(self._pseudonym(actor))
