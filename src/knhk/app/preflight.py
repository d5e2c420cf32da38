"""The checks of ``knhk preflight`` that read the configured installation (SPEC §11; the seed's pre-deployment
checklist): the database answers and is migrated, the service's database role cannot change the ledger, the
keys are present with mode 0600, every identity provider serves a valid JWKS, Redis answers, the ledger
verifies, the newest backup is recent and verifies. Nothing here writes: the store is only opened once it is
known to be migrated and its keys present (so opening it generates or installs nothing).

Each function returns :class:`~knhk.ops.preflight.Check` results; one that cannot decide fails. The store, the
wiring, the identity providers and backups are imported by the checks that use them, so ``knhk preflight --help``
and a run of the file-only checks start without them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from knhk.config import Settings
from knhk.errors import KnhkError
from knhk.ops.clock import parse_rfc3339
from knhk.ops.preflight import Check, failed, key_file_problems, not_applicable, passed, redis_problem
from knhk.proof.entry import LOGS

if TYPE_CHECKING:
    from knhk.storage.database import Database

#: tables whose rows KNHK never changes: SQLite protects them with triggers only (it has no roles)
TRIGGER_PROTECTED = ("ledger_entries", "ledger_nodes", "ledger_checkpoints", "ledger_key_use", "observations")
PRIVILEGES = ("UPDATE", "DELETE", "TRUNCATE")


def _short(exc: BaseException) -> str:
    text = exc.message if isinstance(exc, KnhkError) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())[:400]


def open_database(settings: Settings) -> tuple[Database | None, Check]:
    """The configured database, opened without creating anything, and the ``database`` check."""
    from knhk.storage.database import Database

    url = settings.resolved_database_url
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if not path.is_file():
            return None, failed("database", "Database reachable", f"no store at {path} (knhk init, knhk db migrate)")
    try:
        db = Database(url, pool_min=1, pool_max=2, connect_timeout_s=settings.db_connect_timeout_s,
                      statement_timeout_ms=settings.db_statement_timeout_ms)
        with db.connection() as conn:
            conn.fetchone("SELECT 1")
    except Exception as exc:
        return None, failed("database", "Database reachable", _short(exc))
    return db, passed("database", "Database reachable", db.dialect if db.dialect != "sqlite" else url)


def schema_check(db: Database) -> Check:
    from knhk.storage import schema

    title = "Schema migrated"
    try:
        have = sorted(schema.applied(db))
        todo = schema.pending(db)
    except Exception as exc:
        return failed("schema", title, _short(exc))
    if not have:
        return failed("schema", title, "no migration applied: an empty database (knhk db migrate)")
    if todo:
        names = ", ".join(f"{m.version:04d}_{m.name}" for m in todo)
        return failed("schema", title, f"{len(todo)} pending migration(s): {names} (knhk db migrate)")
    return passed("schema", title, f"schema version {have[-1]}, nothing pending")


def app_role_check(db: Database, role: str | None = None) -> Check:
    """PostgreSQL: ``role`` (default: the role the configured URL logs in as, i.e. the service's) holds no
    UPDATE, DELETE or TRUNCATE beyond what ``knhk db grant-app-role`` grants, and is no superuser. SQLite has
    no roles: the append-only triggers must be in place."""
    from knhk.storage import roles

    title = "App role cannot change the ledger"
    try:
        with db.connection() as conn:
            if db.dialect == "sqlite":
                missing = [t for t in TRIGGER_PROTECTED
                           if (conn.fetchone("SELECT count(*) FROM sqlite_master WHERE type='trigger' AND tbl_name=?",
                                             (t,)) or (0,))[0] < 2]
                if missing:
                    return failed("app-role", title, f"append-only triggers missing on {', '.join(missing)}")
                return passed("app-role", title, f"SQLite (no roles): append-only triggers on {len(TRIGGER_PROTECTED)} "
                                                 "ledger and observation tables")
            who = role or str(conn.fetchone("SELECT current_user")[0])  # type: ignore[index]
            row = conn.fetchone("SELECT rolsuper FROM pg_roles WHERE rolname=?", (who,))
            if row is None:
                return failed("app-role", title, f"role {who} does not exist (knhk db grant-app-role {who})")
            if row[0]:
                return failed("app-role", title, f"role {who} is a superuser: it may change every table "
                                                 "(connect the service as the role knhk db grant-app-role creates)")
            extra: list[str] = []
            for table in (*roles.APPEND_ONLY, *roles.MUTABLE):
                allowed = roles.MUTABLE.get(table, ())
                for privilege in PRIVILEGES:
                    if privilege in allowed:
                        continue
                    held = conn.fetchone("SELECT has_table_privilege(?, ?, ?)", (who, table, privilege))
                    if held is not None and held[0]:
                        extra.append(f"{privilege} on {table}")
    except Exception as exc:
        return failed("app-role", title, _short(exc))
    if extra:
        shown = ", ".join(extra[:6]) + (f" and {len(extra) - 6} more" if len(extra) > 6 else "")
        return failed("app-role", title, f"role {who} holds {shown} (connect the service as the role "
                                         "knhk db grant-app-role creates)")
    return passed("app-role", title, f"role {who}: no UPDATE, DELETE or TRUNCATE on ledger and append-only tables")


def keys_check(db: Database, settings: Settings) -> Check:
    """The active signing key's private half, the subject index secret and the PHI key-encryption key are
    available to the service (as configured secrets or files)."""
    from knhk.ledger import store as ledger_store
    from knhk.proof.signing import SigningKey, read_key_file

    title = "Keys present"
    keys_dir = settings.resolved_keys_dir
    found: list[str] = []
    try:
        with db.connection() as conn:
            active = ledger_store.active_key_id(conn)
    except Exception as exc:
        return failed("keys", title, _short(exc))
    if active is None:
        return failed("keys", title, "the ledger has no active signing key (knhk init, or KNHK_SIGNING_KEY_FILE)")
    try:
        if settings.signing_key is not None:
            source = "KNHK_SIGNING_KEY"
            key_id = SigningKey.from_hex(settings.signing_key.get_secret_value()).key_id
        else:
            path = settings.signing_key_file or keys_dir / f"{active}.key"
            source = str(path)
            if not path.is_file():
                return failed("keys", title, f"the active signing key {active} is not available: no {path}")
            key_id = read_key_file(path).key_id
    except Exception as exc:
        return failed("keys", title, _short(exc))
    if key_id != active:
        return failed("keys", title, f"{source} holds key {key_id}, but the ledger's active key is {active}")
    found.append(f"signing key {active}")
    if settings.subject_hmac_key is None and not (keys_dir / "subject-index.secret").is_file():
        return failed("keys", title,
                      f"no subject index secret (KNHK_SUBJECT_HMAC_KEY or {keys_dir}/subject-index.secret)")
    found.append("subject index secret")
    if settings.phi_key is None and not (keys_dir / "phi.active").is_file():
        return failed("keys", title, f"no PHI key-encryption key (KNHK_PHI_KEY or {keys_dir}/phi.active)")
    found.append("PHI key")
    return passed("keys", title, ", ".join(found))


def key_file_paths(settings: Settings) -> list[Path]:
    """Every private key or secret file the configuration names or the keys directory holds."""
    keys_dir = settings.resolved_keys_dir
    paths = sorted(p for p in keys_dir.iterdir() if p.is_file()) if keys_dir.is_dir() else []
    for configured in (settings.signing_key_file, settings.backup_key_file, settings.tls_key_file):
        if configured is not None and configured not in paths:
            paths.append(configured)
    local = settings.resolved_local_issuer_key_file
    if local.exists() and local not in paths:
        paths.append(local)
    return paths


def key_files_check(settings: Settings) -> Check:
    title = "Key files mode 0600"
    paths = key_file_paths(settings)
    problems = key_file_problems(paths)
    if problems:
        return failed("key-files", title, "; ".join(problems))
    if not paths:
        return not_applicable("key-files", title, "every key comes from the environment (no key file)")
    return passed("key-files", title, f"{len(paths)} file(s), none readable by group or others")


def oidc_check(settings: Settings) -> Check:
    from knhk.identity.authenticator import build_authenticator  # JWT and JWKS: only with issuers to check

    title = "OIDC issuers serve a valid JWKS"
    if not settings.oidc_issuers:
        return not_applicable("oidc", title, "dev mode: no KNHK_OIDC_ISSUERS (the service binds loopback only)")
    try:
        with build_authenticator(settings) as authenticator:
            outcome = authenticator.prefetch()
            counts = {issuer: authenticator.usable_keys(issuer) for issuer in outcome}
    except Exception as exc:
        return failed("oidc", title, _short(exc))
    bad = {issuer: why or ("its JWKS holds no usable signature-verification key" if not counts[issuer] else None)
           for issuer, why in outcome.items()}
    bad = {issuer: why for issuer, why in bad.items() if why is not None}
    if bad:
        return failed("oidc", title, "; ".join(f"{i}: {w}" for i, w in bad.items()))
    return passed("oidc", title, f"{len(outcome)} issuer(s): " + ", ".join(f"{n} key(s)" for n in counts.values()))


def redis_check(settings: Settings) -> Check:
    title = "Redis reachable"
    if not settings.redis_url:
        return not_applicable("redis", title, "no KNHK_REDIS_URL (Redis is optional)")
    problem = redis_problem(settings.redis_url, max(settings.redis_timeout_s, 1.0))
    return failed("redis", title, problem) if problem else passed("redis", title, "PING answered")


def installation_checks(settings: Settings, db: Database) -> list[Check]:
    """Sector packs installed and both ledger logs verified, on the store opened read-only in effect (it is
    migrated and its keys are present, so opening it creates nothing)."""
    from knhk.app.runtime import Runtime  # the whole wiring: only when these checks run
    from knhk.sectors.pack import available_sectors

    small = settings.model_copy(update={"db_pool_min": 1, "db_pool_max": 2})
    try:
        rt = Runtime.open(small, migrate=False, install_packs=False, subscribe_engine=False)
    except Exception as exc:
        why = _short(exc)
        return [failed("sector-packs", "Sector packs installed", why), failed("ledger", "Ledger verifies", why)]
    try:
        missing = [s for s in available_sectors() if rt.registry.current(s) is None]
        packs = (failed("sector-packs", "Sector packs installed", f"not installed: {', '.join(missing)} (knhk init)")
                 if missing else passed("sector-packs", "Sector packs installed",
                                        f"{len(available_sectors())} sectors, each with a current snapshot"))
        reports = {log: rt.ledger.verify(log, workers=1) for log in LOGS}
    except Exception as exc:
        return [failed("sector-packs", "Sector packs installed", _short(exc)), failed("ledger", "Ledger verifies",
                                                                                      _short(exc))]
    finally:
        rt.close()
    bad = [r for r in reports.values() if not r.ok]
    if bad:
        first = bad[0].first_failure
        where = f"entry {first.seq}: {first.reason}" if first is not None else "incomplete"
        ledger = failed("ledger", "Ledger verifies", f"log {bad[0].log} failed at {where} "
                                                     "(docs/runbooks/receipt-chain-integrity.md)")
    else:
        sizes = ", ".join(f"{r.log} {r.tree_size} entries" for r in reports.values())
        ledger = passed("ledger", "Ledger verifies", sizes)
    return [packs, ledger]


def backup_check(settings: Settings, max_age_h: float) -> Check:
    """The newest backup exists, is at most ``max_age_h`` hours old and verifies (restored into scratch)."""
    from knhk.backup.service import Backups  # pgBackRest and manifests: only when this check runs

    title = "Latest backup recent and verified"
    try:
        backups = Backups(settings)
        listed = backups.list()
        if not listed:
            return failed("backup", title, f"no backup in {settings.resolved_backup_dir} (knhk backup create)")
        newest = listed[0]
        if "error" in newest:
            return failed("backup", title, f"newest backup {newest['id']} is unreadable: {newest['error']}")
        age_h = (time.time() - parse_rfc3339(newest["created"]) / 1_000_000) / 3600
        if age_h > max_age_h:
            return failed("backup", title, f"newest backup {newest['id']} is {age_h:.1f} h old (limit {max_age_h:g} h)")
        result = backups.verify(newest["id"], use_live=True)
    except Exception as exc:
        return failed("backup", title, _short(exc))
    if not result.ok:
        return failed("backup", title, f"backup {newest['id']} does not verify: "
                                       + "; ".join(str(p) for p in result.problems[:3]))
    return passed("backup", title, f"{newest['id']}, {age_h:.1f} h old, verified ({result.live})")


DATABASE_CHECKS = ("database", "schema", "app-role", "keys", "sector-packs", "ledger")
OTHER_CHECKS = ("key-files", "oidc", "redis", "backup")


def deployment_checks(settings: Settings, *, app_role: str | None = None, backup_max_age_h: float = 26.0,
                      only: frozenset[str] | None = None) -> list[Check]:
    """Every installation check in order (or those of ``only``); the ones that need the database fail (not
    checked) when it is unreachable or unmigrated."""
    wanted = frozenset((*DATABASE_CHECKS, *OTHER_CHECKS)) if only is None else only
    out: list[Check] = []
    if wanted & set(DATABASE_CHECKS):
        out += _database_checks(settings, app_role)
    others: dict[str, Callable[[], Check]] = {
        "key-files": lambda: key_files_check(settings), "oidc": lambda: oidc_check(settings),
        "redis": lambda: redis_check(settings), "backup": lambda: backup_check(settings, backup_max_age_h)}
    out += [run() for name, run in others.items() if name in wanted]
    return [c for c in out if c.id in wanted]


def _database_checks(settings: Settings, app_role: str | None) -> list[Check]:
    db, reachable = open_database(settings)
    out = [reachable]
    dependent = ("schema", "app-role", "keys", "sector-packs", "ledger")
    if db is None:
        out += [failed(c, c, "not checked: the database is unreachable") for c in dependent]
    else:
        try:
            out.append(schema_check(db))
            out.append(app_role_check(db, app_role))
            out.append(keys_check(db, settings))
            if out[1].status == "pass" and out[3].status == "pass":
                out += installation_checks(settings, db)
            else:
                out += [failed(c, c, "not checked: the schema is not migrated or a key is missing")
                        for c in ("sector-packs", "ledger")]
        finally:
            db.close()
    return out
