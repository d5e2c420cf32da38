"""Who may run which operation (SPEC §10, §13): the catalogue of operations, each with the one permission of the
RBAC matrix (:mod:`knhk.identity.rbac`) it needs, and the two access policies the faces run with.

- :class:`RoleBasedAccess` — the matrix, for principals established from verified tokens (the service; the
  console). MFA is required for privileged mutations as the matrix says.
- :class:`LocalAccess` — the operator at the terminal of an installation: today's CLI, which trusts whoever can
  read the data directory (they hold its keys anyway) and names its actors with ``--actor`` / ``--approver``
  flags. The domain's own rules (segregation of duties, the author may not approve, quorum) still apply to them.

An operation whose permission is ``None`` has no API route: only a local operator may run it, and role-based
access refuses it (fail closed).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Protocol

from knhk.errors import ForbiddenError
from knhk.identity.rbac import DEFAULT_MFA_REQUIRED_ROLES, Principal, authorize

LOCAL_ISSUER = "urn:knhk:terminal"


@dataclass(frozen=True)
class Operation:
    """One thing a face can ask the application to do."""

    name: str
    permission: str | None  # the RBAC permission it needs; None: local operators only
    mutating: bool = False  # counts for the MFA rule


# The catalogue. A new operation is a line here and a method of Application in the concept's module of knhk.app.
INGEST = Operation("observations.ingest", "observations:write")
CHECK_OBSERVATIONS = Operation("observations.check", "observations:write")
READ_OBSERVATIONS = Operation("observations.read", "observations:read")
DETECT = Operation("patterns.detect", "patterns:detect")
READ_PATTERNS = Operation("patterns.read", "patterns:read")
CREATE_PROPOSAL = Operation("proposals.create", "proposals:create", mutating=True)
READ_PROPOSALS = Operation("proposals.read", "proposals:read")
VALIDATE_PROPOSAL = Operation("proposals.validate", "proposals:validate", mutating=True)
DECIDE_PROPOSAL = Operation("proposals.decide", "proposals:approve", mutating=True)
# an operator's expedited promotion of an open proposal (the emergency change class): promote rights, with MFA
EMERGENCY_PROMOTE = Operation("proposals.emergency", "snapshots:promote", mutating=True)
REVIEW_PROPOSAL = Operation("proposals.review", "proposals:approve", mutating=True)
READ_SNAPSHOTS = Operation("snapshots.read", "snapshots:read")
PROMOTE = Operation("snapshots.promote", "snapshots:promote", mutating=True)
ROLLBACK = Operation("snapshots.rollback", "snapshots:rollback", mutating=True)
COLLECT_SNAPSHOTS = Operation("snapshots.collect", None, mutating=True)
RUN_CYCLE = Operation("cycles.run", "cycles:run", mutating=True)
READ_CYCLES = Operation("cycles.read", "cycles:read")
READ_RECEIPTS = Operation("receipts.read", "receipts:read")
READ_SECTORS = Operation("sectors.read", "snapshots:read")
READ_AUDIT = Operation("audit.read", "audit:read")
RECORD_AUDIT = Operation("audit.record", None, mutating=True)
RESOLVE_IDENTITY = Operation("subjects.resolve", None)
ERASE_SUBJECT = Operation("subjects.erase", "subjects:erase", mutating=True)
READ_KEYS = Operation("keys.read", "receipts:read")
ROTATE_KEYS = Operation("keys.rotate", "keys:rotate", mutating=True)
READ_RELAXATIONS = Operation("relaxations.read", "guards:read")
REQUEST_RELAXATION = Operation("relaxations.request", "guards:relax", mutating=True)
DECIDE_RELAXATION = Operation("relaxations.decide", "guards:approve", mutating=True)
REVOKE_RELAXATION = Operation("relaxations.revoke", "guards:revoke", mutating=True)
# Backups act on the host (backup and data directories, pgBackRest as the cluster's OS user) and a restore
# replaces the store under any running service: the operator or administrator at the host's terminal only.
CREATE_BACKUP = Operation("backups.create", None, mutating=True)
LIST_BACKUPS = Operation("backups.list", None)
VERIFY_BACKUP = Operation("backups.verify", None)
RESTORE_BACKUP = Operation("backups.restore", None, mutating=True)
# Retention drops whole partitions (PostgreSQL: as the schema owner) and writes the archive directory on the host.
ARCHIVE_OBSERVATIONS = Operation("observations.archive", None, mutating=True)


class Access(Protocol):
    """An access policy: whether a principal may run an operation, and may force a promotion."""

    def authorize(self, principal: Principal, operation: Operation) -> None:
        """Return when allowed; raise :class:`ForbiddenError` saying why not."""
        ...

    def may_force(self, principal: Principal) -> bool:
        """May this principal promote without a validation receipt?"""
        ...

    def may_expedite(self, principal: Principal) -> bool:
        """May this principal take the emergency path (promote an open proposal at once)?"""
        ...


class RoleBasedAccess:
    """The RBAC matrix with this installation's MFA-required roles."""

    def __init__(self, mfa_required_roles: Collection[str] = DEFAULT_MFA_REQUIRED_ROLES) -> None:
        self.mfa_required_roles = tuple(mfa_required_roles)

    def authorize(self, principal: Principal, operation: Operation) -> None:
        if operation.permission is None:
            raise ForbiddenError(f"{operation.name} is for local operators only (it has no API route)",
                                 permission=operation.name, reason="local_only")
        authorize(principal, operation.permission, mutating=operation.mutating,
                  mfa_required_roles=self.mfa_required_roles)

    def may_force(self, principal: Principal) -> bool:
        return "administrator" in principal.roles and principal.mfa

    def may_expedite(self, principal: Principal) -> bool:
        return bool({"operator", "administrator"} & principal.roles) and principal.mfa


class LocalAccess:
    """The operator at the terminal: every operation is allowed (the domain's own rules still apply)."""

    def authorize(self, principal: Principal, operation: Operation) -> None:
        return None

    def may_force(self, principal: Principal) -> bool:
        return True

    def may_expedite(self, principal: Principal) -> bool:
        return True


class TerminalAccess:
    """The CLI's policy (SPEC §13): the same authorization as the API for a principal authenticated by a bearer
    token (``--token`` / ``KNHK_TOKEN``); a name typed at the terminal is trusted only in dev mode (the
    installation trusts no identity provider, only the local dev issuer), and never for a forced or emergency
    promotion. Local-only operations (backups, gc, audit append, resolving a pseudonym) stay the terminal's.
    """

    def __init__(self, *, dev_mode: bool, mfa_required_roles: Collection[str] = DEFAULT_MFA_REQUIRED_ROLES) -> None:
        self.dev_mode = dev_mode
        self.roles = RoleBasedAccess(mfa_required_roles)

    def authorize(self, principal: Principal, operation: Operation) -> None:
        if operation.permission is None:
            return None
        if principal.issuer == LOCAL_ISSUER:
            if self.dev_mode:
                return None
            raise ForbiddenError(f"{operation.name} needs an authenticated subject: this installation trusts an "
                                 "identity provider, so pass --token or KNHK_TOKEN", permission=operation.name,
                                 reason="unauthenticated_terminal")
        return self.roles.authorize(principal, operation)

    def may_force(self, principal: Principal) -> bool:
        return principal.issuer != LOCAL_ISSUER and self.roles.may_force(principal)

    def may_expedite(self, principal: Principal) -> bool:
        return principal.issuer != LOCAL_ISSUER and self.roles.may_expedite(principal)


def local_principal(name: str, roles: Iterable[str] = (), sector: str | None = None) -> Principal:
    """A principal named by the operator at the terminal (``--actor``, ``--approver`` …): its identity is the
    name as given (stored only as a pseudonym), its roles and sector attribute the ones claimed with it."""
    return Principal(identity=name, issuer=LOCAL_ISSUER, subject=name, roles=frozenset(roles), sector=sector)


#: The installation itself (the loop's own jobs, the scheduler).
SYSTEM = local_principal("system:knhk")
