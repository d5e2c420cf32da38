"""The role → permission matrix (SPEC §10), checked cell by cell against a table written out by hand here,
and the MFA rule for mutating operator/administrator actions."""

from __future__ import annotations

import pytest

from knhk.errors import ForbiddenError
from knhk.identity import PERMISSIONS, ROLE_PERMISSIONS, ROLES, Principal, authorize, needs_mfa

PERMS = [
    "observations:write", "observations:read", "patterns:detect", "patterns:read", "proposals:create",
    "proposals:read", "proposals:validate", "proposals:approve", "snapshots:read", "snapshots:promote",
    "snapshots:rollback", "cycles:run", "cycles:read", "receipts:read", "audit:read", "subjects:erase",
    "keys:rotate", "guards:read", "guards:relax", "guards:approve", "guards:revoke",
]

# Columns: observer, analyst, proposer, validator, operator, administrator, ingestor.
COLUMNS = ["observer", "analyst", "proposer", "validator", "operator", "administrator", "ingestor"]
TABLE = {
    "observations:write": "-----XX",
    "observations:read":  "XXXXXX-",
    "patterns:detect":    "-XX--X-",
    "patterns:read":      "XXXXXX-",
    "proposals:create":   "--X--X-",
    "proposals:read":     "XXXXXX-",
    "proposals:validate": "---X-X-",
    "proposals:approve":  "---X-X-",
    "snapshots:read":     "XXXXXX-",
    "snapshots:promote":  "----XX-",
    "snapshots:rollback": "----XX-",
    "cycles:run":         "----XX-",
    "cycles:read":        "XXXXXX-",
    "receipts:read":      "XXXXXX-",
    "audit:read":         "-----X-",
    "subjects:erase":     "-----X-",
    "keys:rotate":        "-----X-",
    "guards:read":        "XXXXXX-",
    "guards:relax":       "----XX-",
    "guards:approve":     "---X-X-",
    "guards:revoke":      "---XXX-",
}
MFA_WHEN_MUTATING = {"snapshots:promote", "snapshots:rollback", "cycles:run", "audit:read", "subjects:erase",
                     "keys:rotate", "guards:relax"}

CELLS = [(role, perm, TABLE[perm][COLUMNS.index(role)] == "X") for role in COLUMNS for perm in PERMS]


def principal(*roles: str, mfa: bool = True) -> Principal:
    return Principal(identity="urn:test#u1", issuer="urn:test", subject="u1", roles=frozenset(roles), mfa=mfa)


def test_matrix_declares_exactly_the_specified_roles_and_permissions() -> None:
    assert list(PERMISSIONS) == PERMS
    assert list(ROLES) == COLUMNS
    assert set(ROLE_PERMISSIONS) == set(COLUMNS)
    for role in COLUMNS:
        assert ROLE_PERMISSIONS[role] == {p for p in PERMS if TABLE[p][COLUMNS.index(role)] == "X"}, role


@pytest.mark.parametrize(("role", "permission", "allowed"), CELLS, ids=[f"{r}-{p}" for r, p, _ in CELLS])
def test_every_role_and_permission(role: str, permission: str, allowed: bool) -> None:
    for mutating in (False, True):
        if allowed:
            authorize(principal(role, mfa=True), permission, mutating=mutating)
        else:
            with pytest.raises(ForbiddenError) as info:
                authorize(principal(role, mfa=True), permission, mutating=mutating)
            assert info.value.http_status == 403
            assert f"missing permission {permission}" in info.value.message


@pytest.mark.parametrize("permission", PERMS)
def test_mfa_rule(permission: str) -> None:
    assert needs_mfa(permission, mutating=True) is (permission in MFA_WHEN_MUTATING)
    assert needs_mfa(permission, mutating=False) is False
    holder = "administrator"
    if permission in MFA_WHEN_MUTATING:
        with pytest.raises(ForbiddenError) as info:
            authorize(principal(holder, mfa=False), permission, mutating=True)
        assert info.value.message.startswith("this action needs multi-factor authentication")
        authorize(principal(holder, mfa=True), permission, mutating=True)
    else:
        authorize(principal(holder, mfa=False), permission, mutating=True)
    authorize(principal(holder, mfa=False), permission, mutating=False)


def test_mfa_roles_are_configurable() -> None:
    # With only administrators listed, a permission operators also grant (promote) no longer needs MFA, while
    # an administrator-only one (keys:rotate) still does.
    authorize(principal("operator", mfa=False), "snapshots:promote", mutating=True,
              mfa_required_roles=("administrator",))
    with pytest.raises(ForbiddenError):
        authorize(principal("administrator", mfa=False), "keys:rotate", mutating=True,
                  mfa_required_roles=("administrator",))


def test_ingestor_and_proposer_mutations_need_no_mfa() -> None:
    authorize(principal("ingestor", mfa=False), "observations:write", mutating=True)
    authorize(principal("proposer", mfa=False), "proposals:create", mutating=True)
    authorize(principal("validator", mfa=False), "proposals:approve", mutating=True)


def test_roles_combine_as_a_union() -> None:
    both = principal("ingestor", "observer", mfa=False)
    authorize(both, "observations:write", mutating=True)
    authorize(both, "observations:read", mutating=False)
    with pytest.raises(ForbiddenError):
        authorize(both, "patterns:detect", mutating=True)


def test_no_role_is_forbidden_everywhere() -> None:
    nobody = principal()
    unknown = principal("superuser")  # not a KNHK role: grants nothing
    for who in (nobody, unknown):
        for permission in PERMS:
            with pytest.raises(ForbiddenError) as info:
                authorize(who, permission, mutating=False)
            assert "no group mapped to a KNHK role" in info.value.message


def test_unknown_permission_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown permission"):
        authorize(principal("administrator"), "observations:delete", mutating=True)
