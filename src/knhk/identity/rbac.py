"""Role-based access control (SPEC §10): one declarative role → permission matrix and the one check.

Every route declares the single permission it needs; roles grant permissions; a principal holds the union of
its roles' permissions. There are no wildcards at check time: the matrix below is spelled out in full, so a
new permission (say a future ``audit:export``) is granted to nobody until a line here says so.

Multi-factor rule: a *mutating* request that is allowed only through a permission that no role other than
the MFA-required roles (default operator and administrator) grants — promote, rollback, run cycles, request a
guard relaxation, erase a subject, rotate keys — needs a principal whose token proved MFA (``amr``/``acr``,
see :mod:`.oidc`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from knhk.errors import ForbiddenError

PERMISSIONS: tuple[str, ...] = (
    "observations:write",
    "observations:read",
    "patterns:detect",
    "patterns:read",
    "proposals:create",
    "proposals:read",
    "proposals:validate",
    "proposals:approve",
    "snapshots:read",
    "snapshots:promote",
    "snapshots:rollback",
    "cycles:run",
    "cycles:read",
    "receipts:read",
    "audit:read",
    "subjects:erase",
    "keys:rotate",
    "guards:read",
    "guards:relax",
    "guards:approve",
    "guards:revoke",
)

#: Every ``*:read`` permission except ``audit:read`` (the audit log is for administrators only).
READ: frozenset[str] = frozenset(
    {"observations:read", "patterns:read", "proposals:read", "snapshots:read", "cycles:read", "receipts:read",
     "guards:read"}
)

_OBSERVER = READ
_ANALYST = _OBSERVER | {"patterns:detect"}
_PROPOSER = _ANALYST | {"proposals:create"}

#: The matrix: role → the permissions it grants.
ROLE_PERMISSIONS: Mapping[str, frozenset[str]] = MappingProxyType({
    "observer": _OBSERVER,
    "analyst": _ANALYST,
    "proposer": _PROPOSER,
    "validator": READ | {"proposals:validate", "proposals:approve", "guards:approve", "guards:revoke"},
    "operator": READ | {"snapshots:promote", "snapshots:rollback", "cycles:run", "guards:relax", "guards:revoke"},
    "administrator": frozenset(PERMISSIONS),
    "ingestor": frozenset({"observations:write"}),
})

ROLES: tuple[str, ...] = tuple(ROLE_PERMISSIONS)

DEFAULT_MFA_REQUIRED_ROLES: tuple[str, ...] = ("operator", "administrator")

# The matrix must only name declared permissions (checked once, at import).
_undeclared = {p for perms in ROLE_PERMISSIONS.values() for p in perms} - set(PERMISSIONS)
if _undeclared:  # pragma: no cover - a broken edit of this file
    raise RuntimeError(f"role matrix names undeclared permissions: {sorted(_undeclared)}")


def permissions_of(roles: Iterable[str]) -> frozenset[str]:
    """The union of the permissions the given roles grant (unknown role names grant nothing)."""
    out: set[str] = set()
    for role in roles:
        out |= ROLE_PERMISSIONS.get(role, frozenset())
    return frozenset(out)


def roles_granting(permission: str) -> frozenset[str]:
    """The roles whose permissions include ``permission``."""
    return frozenset(role for role, perms in ROLE_PERMISSIONS.items() if permission in perms)


def needs_mfa(permission: str, *, mutating: bool,
              mfa_required_roles: Collection[str] = DEFAULT_MFA_REQUIRED_ROLES) -> bool:
    """True when a request needs MFA: mutating, and only MFA-required roles grant its permission."""
    granting = roles_granting(permission)
    return mutating and bool(granting) and granting <= set(mfa_required_roles)


@dataclass(frozen=True)
class Principal:
    """Who is calling, as established from a verified bearer token.

    ``identity`` is ``<issuer>#<user id>``: stable, unique across issuers, and the string the audit log turns
    into a pseudonym (the caller fills ``pseudonym`` through :meth:`with_pseudonym`; identities never enter
    immutable rows).
    """

    identity: str
    issuer: str
    subject: str
    roles: frozenset[str]
    mfa: bool = False
    sector: str | None = None
    token_id: str | None = None
    expires_at: int | None = None  # seconds since the epoch (the token's exp)
    client_id: str | None = None
    pseudonym: str | None = None
    groups: tuple[str, ...] = field(default=(), repr=False)  # the raw group/role claim values

    @property
    def permissions(self) -> frozenset[str]:
        return permissions_of(self.roles)

    def can(self, permission: str) -> bool:
        return permission in self.permissions

    def with_pseudonym(self, pseudonym: str) -> Principal:
        return replace(self, pseudonym=pseudonym)


def authorize(principal: Principal, permission: str, *, mutating: bool,
              mfa_required_roles: Collection[str] = DEFAULT_MFA_REQUIRED_ROLES) -> None:
    """Allow or refuse one request; raise :class:`ForbiddenError` (403) saying why when refused.

    ``mutating`` is True for routes that change state (POST/PUT/PATCH/DELETE). ``permission`` must be one of
    :data:`PERMISSIONS` (a programming error otherwise, reported as ValueError).
    """
    if permission not in PERMISSIONS:
        raise ValueError(f"unknown permission {permission!r}")
    if not principal.roles & set(ROLE_PERMISSIONS):
        raise ForbiddenError(
            f"the token carries no group mapped to a KNHK role, so it grants nothing (needed: {permission})",
            permission=permission, reason="no_role",
        )
    if permission not in principal.permissions:
        raise ForbiddenError(
            f"missing permission {permission} (roles: {', '.join(sorted(principal.roles))})",
            permission=permission, reason="missing_permission",
        )
    if needs_mfa(permission, mutating=mutating, mfa_required_roles=mfa_required_roles) and not principal.mfa:
        raise ForbiddenError(
            f"this action needs multi-factor authentication ({permission}); sign in again with MFA",
            permission=permission, reason="mfa_required",
        )
