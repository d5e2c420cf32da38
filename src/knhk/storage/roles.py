"""The least-privilege PostgreSQL role the service runs as (SPEC §11).

The application role may read and insert everywhere, but it is granted UPDATE and DELETE only where the
product itself changes rows, and TRUNCATE nowhere. Append-only tables are therefore protected twice: by the
missing privilege and by their triggers. Schema changes are made by the owner (``knhk db migrate`` as an
administrator), never by the application role.
"""

from __future__ import annotations

import re

from knhk.errors import InvalidInputError
from knhk.storage.database import Database

#: table → extra privileges beyond SELECT, INSERT (why: what the product changes there).
MUTABLE: dict[str, tuple[str, ...]] = {
    "ledger_keys": ("UPDATE",),  # a key's retirement time is set once (a trigger forbids anything else)
    "snapshot_pointers": ("UPDATE",),  # the per-sector current pointer (compare-and-set promotion)
    "snapshot_contents": ("DELETE",),  # gc of never-promoted orphans (a trigger protects promoted ones)
    "proposal_status": ("UPDATE",),  # a proposal's current status
    "subjects": ("DELETE",),  # GDPR erasure (crypto-shredding)
    "subject_keys": ("DELETE",),
    "detector_thresholds": ("UPDATE",),  # learned confidence thresholds
    "leases": ("UPDATE",),  # job leases across replicas
    "ledger_outbox": ("UPDATE",),  # a drained row's seq is set once (a trigger forbids anything else)
    "proposal_classes": ("UPDATE",),  # a proposal's change class (normal → emergency at an emergency promotion)
    "proposal_reviews": ("UPDATE",),  # an emergency change's post-hoc review and its overdue alert
    "data_keys": ("UPDATE",),  # PHI data keys, re-wrapped when the key-encryption key rotates
    "relaxation_status": ("UPDATE",),  # a guard relaxation's current status and window
}
APPEND_ONLY: tuple[str, ...] = (
    "ledger_entries", "ledger_nodes", "ledger_checkpoints", "ledger_key_use", "observations", "snapshots",
    "snapshot_history", "snapshot_collections", "proposals", "validations", "approvals", "cycles",
    "subject_erasures", "schema_migrations", "evidence_sets", "relaxations", "relaxation_approvals",
    "observation_ids", "observation_segments",
)
_ROLE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def grant_statements(role: str) -> list[str]:
    if not _ROLE.match(role):
        raise InvalidInputError(f"role name {role!r} must be a lowercase SQL identifier")
    out = [f"GRANT USAGE ON SCHEMA public TO {role}"]
    for table in (*APPEND_ONLY, *MUTABLE):
        extra = MUTABLE.get(table, ())
        out.append(f"REVOKE ALL ON {table} FROM {role}")
        out.append(f"GRANT {', '.join(('SELECT', 'INSERT', *extra))} ON {table} TO {role}")
    out.append(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}")
    return out


def create_app_role(db: Database, role: str, password: str | None = None) -> list[str]:
    """Create (if missing) a login role and grant it exactly the application's privileges."""
    if db.dialect != "postgresql":
        raise InvalidInputError("application roles exist on PostgreSQL only")
    statements = grant_statements(role)
    if password is not None and (not password or "\x00" in password):
        raise InvalidInputError("the role password must be non-empty and contain no NUL character")
    with db.transaction() as conn:
        exists = conn.fetchone("SELECT 1 FROM pg_roles WHERE rolname=?", (role,))
        if not exists:
            conn.execute(f"CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE")
        if password is not None:
            from psycopg import sql  # PostgreSQL only (imported when needed, like the driver itself)

            # A role's password is part of the utility statement, never a bind parameter (PostgreSQL refuses
            # `$1` there). libpq hashes it here (SCRAM-SHA-256, as psql's \password does), so the clear text
            # never reaches the server or its statement log; the verifier is quoted as a SQL literal.
            raw = conn.raw  # type: ignore[attr-defined]
            verifier = raw.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256")
            raw.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role),
                                                                    sql.Literal(verifier.decode())))
        for statement in statements:
            conn.execute(statement)
    return statements
