"""``knhk backup create|verify|restore|list``: backups for both backends (the application layer's backup
operations, :mod:`knhk.app.backup`, call these and record them in the audit log).

Which mechanism serves which verb, and why:

* SQLite: the online backup API for ``create`` (a consistent copy while the service writes), the copy itself
  for ``verify`` and ``restore``.
* PostgreSQL, physical (the default): pgBackRest (:mod:`knhk.backup.pgbackrest`). Full, differential and
  incremental backups of the whole cluster with continuous WAL archiving, so a restore can reach any point in
  time (``--target-time``); restores are file copies, fast for large databases; page and file checksums.
* PostgreSQL, logical (``--logical``): pg_dump (:mod:`knhk.backup.pgdump`) from an exported snapshot, so the
  manifest is exact; portable across PostgreSQL versions and hosts, one database only, no point in time.

Every backup gets a manifest and (through the ``record`` step its caller passes) a ``backup.created`` audit
entry recording the manifest's digest. ``verify`` never writes to the running system; ``restore`` restores
beside the live store, verifies, then swaps.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from knhk import __version__
from knhk.backup import cipher, content, pgbackrest, pgdump, sqlite_backend, store, swap
from knhk.backup.checks import Problem
from knhk.backup.manifest import Manifest
from knhk.backup.pgurl import redact
from knhk.backup.repository import Repository, Stored
from knhk.backup.verifier import LiveSystem, Mode, Verification, verify_restored
from knhk.config import Settings
from knhk.errors import ConfigurationError, ConflictError, DependencyUnavailableError, IntegrityError, UsageError
from knhk.ledger.ledger import Ledger
from knhk.ops.clock import Clock, format_rfc3339, parse_rfc3339
from knhk.proof.entry import LOGS
from knhk.storage.database import Database


@dataclass
class RestoreReport:
    backup: str
    target: str
    verification: Verification
    kept_previous: str | None = None
    target_time: str | None = None
    duration_s: float = 0.0
    tidied: list[str] = field(default_factory=list)
    lost: dict[str, int] = field(default_factory=dict)
    manifest_sha256: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"backup": self.backup, "manifest_sha256": self.manifest_sha256, "target": self.target,
                "restored": self.verification.ok, "target_time": self.target_time, "kept_previous": self.kept_previous,
                "duration_s": round(self.duration_s, 3), "entries_not_restored": self.lost,
                "tidied": self.tidied, "verification": self.verification.to_json()}


def backup_key(settings: Settings) -> bytes | None:
    if settings.backup_key is not None:
        return cipher.parse_key(settings.backup_key.get_secret_value(), "KNHK_BACKUP_KEY")
    if settings.backup_key_file is not None:
        return cipher.read_key_file(settings.backup_key_file)
    return None


def sqlite_path(url: str) -> Path:
    """The file of a ``sqlite:///…`` URL (as :class:`Database` reads it), without opening or creating it."""
    path = unquote(urlparse(url).path)
    return Path("/" + path.lstrip("/") if url.startswith("sqlite:////") else path)


class Backups:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.repo = Repository(settings.resolved_backup_dir)
        self.url = settings.resolved_database_url
        self.dialect = "sqlite" if settings.embedded else "postgresql"

    # -- create ---------------------------------------------------------------------------------------
    def create(self, ledger: Ledger, clock: Clock, record: Callable[[Manifest], object], *, logical: bool = False,
               backup_type: str = "incr") -> Manifest:
        """Take a backup of the running installation (``ledger``: its ledger, over its database), then call
        ``record`` with the committed manifest; when ``record`` fails the backup is removed again."""
        key = backup_key(self.settings)
        db = ledger.db
        for log in LOGS:  # the backup carries a checkpoint of (at least nearly) its own tree size
            if ledger.tree_size(log):
                ledger.checkpoint(log)
        now = clock.now_us()
        if self.dialect == "sqlite":
            if logical:
                raise UsageError("--logical is for PostgreSQL; an SQLite backup is already a portable file")
            kind = "sqlite"
        else:
            kind = "pg_dump" if logical else "pgbackrest"
        backup_id = self.repo.new_id(kind, now)
        staging = self.repo.staging(backup_id)
        try:
            base: dict[str, Any] = {"id": backup_id, "kind": kind, "created_us": now, "knhk_version": __version__,
                                    "dialect": self.dialect, "database": redact(self.url)}
            if kind == "sqlite":
                plain = staging / sqlite_backend.DATA_FILE
                sqlite_backend.copy_online(sqlite_path(self.url), plain)
                copy = Database(f"sqlite:///{plain}")
                try:
                    with copy.snapshot() as conn:
                        state = store.read_state(conn)
                finally:
                    copy.close()
                files, digest, encryption = content.seal(plain, key)
                manifest = Manifest(**base, files=files, content=digest, encryption=encryption, state=state)
            elif kind == "pg_dump":
                plain = staging / pgdump.DATA_FILE
                state = pgdump.dump(db, self.url, plain, self.settings)
                files, digest, encryption = content.seal(plain, key)
                manifest = Manifest(**base, files=files, content=digest, encryption=encryption, state=state)
            else:
                tool = pgbackrest.PgBackRest.from_settings(self.settings)
                with db.snapshot() as conn:
                    before = store.read_state(conn)
                backup_set = tool.backup(backup_type)
                with db.snapshot() as conn:
                    after = store.read_state(conn)
                manifest = Manifest(**base, files=[], state=before, state_after=after, pgbackrest=backup_set)
            path = self.repo.commit(staging, manifest)
        except BaseException:
            self.repo.discard(staging)
            raise
        try:
            record(manifest)
        except BaseException:
            self.repo.discard(path)
            raise
        return manifest

    # -- verify ---------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _running(self, use_live: bool) -> Iterator[tuple[LiveSystem | None, str]]:
        """The running system as trust anchor (closed afterwards), or None and why there is none."""
        if not use_live:
            yield None, "not checked (--no-live): trusted only the backup's own keyring"
            return
        if self.dialect == "sqlite" and not sqlite_path(self.url).exists():
            yield None, "no running store: trusted only the backup's own keyring"
            return
        try:
            db = Database(self.url, pool_min=1, pool_max=2, connect_timeout_s=self.settings.db_connect_timeout_s)
        except DependencyUnavailableError as exc:
            raise DependencyUnavailableError(f"{exc.message}; to check a backup without the running system "
                                             "pass --no-live") from exc
        try:
            with db.connection() as conn:
                empty = store.is_empty(conn)
            if empty:
                yield None, "the running store is empty: trusted only the backup's own keyring"
                return
            live = LiveSystem(db)
            try:
                yield live, "checked"
            finally:
                live.close()
        finally:
            db.close()

    @contextlib.contextmanager
    def _scratch(self, prefix: str) -> Iterator[Path]:
        path = Path(tempfile.mkdtemp(prefix=prefix, dir=self.settings.backup_scratch_dir))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    @staticmethod
    def _check(manifest: Manifest, url: str, live: LiveSystem | None, mode: Mode, workers: int | None,
               result: Verification) -> None:
        db = Database(url, pool_min=1, pool_max=2)
        try:
            verify_restored(manifest, db, live, mode=mode, workers=workers, result=result)
        finally:
            db.close()

    def verify(self, ref: str, *, use_live: bool = True, workers: int | None = None) -> Verification:
        """Restore into scratch and check everything; never writes to the running system."""
        stored = self.repo.load(ref)
        manifest = stored.manifest
        with self._running(use_live) as (live, note), self._scratch("knhk-verify-") as scratch:
            result = Verification(manifest.id, manifest.kind, live=note)
            started = time.monotonic()
            try:
                if manifest.kind == "sqlite":
                    data = scratch / sqlite_backend.DATA_FILE
                    content.unseal(stored, data, backup_key(self.settings))
                    self._check(manifest, f"sqlite:///{data}", live, "exact", workers, result)
                elif manifest.kind == "pg_dump":
                    data = scratch / pgdump.DATA_FILE
                    content.unseal(stored, data, backup_key(self.settings))
                    with pgdump.scratch_database(self.url, data, self.settings) as url:
                        self._check(manifest, url, live, "exact", workers, result)
                else:
                    tool = pgbackrest.PgBackRest.from_settings(self.settings)
                    self._check_set(tool, manifest)
                    with tool.scratch_cluster(manifest, scratch, self.url) as url:
                        self._check(manifest, url, live, "between", workers, result)
            except IntegrityError as exc:
                result.problems.append(_problem(exc))
            result.duration_s = time.monotonic() - started
            return result

    @staticmethod
    def _check_set(tool: pgbackrest.PgBackRest, manifest: Manifest) -> None:
        assert manifest.pgbackrest is not None
        problems = tool.verify_set(manifest.pgbackrest)
        if problems:
            raise IntegrityError("; ".join(problems))

    # -- restore --------------------------------------------------------------------------------------
    def restore(self, ref: str | None, *, force: bool = False, target_time: str | None = None,
                use_live: bool = True, workers: int | None = None) -> RestoreReport:
        """Restore beside the live store, verify, and only then swap it in (the caller then records
        ``backup.restored`` in the restored store's audit log)."""
        started = time.monotonic()
        target_us = None
        if target_time is not None:
            try:
                target_us = parse_rfc3339(target_time)
            except ValueError as exc:
                raise UsageError(f"--target-time must be an RFC 3339 time: {exc}") from exc
        if self.dialect == "sqlite":
            if target_us is not None:
                raise UsageError("--target-time needs PostgreSQL with WAL archiving (pgBackRest); an SQLite backup "
                                 "restores to the moment it was taken")
            report = self._restore_sqlite(self._require(ref), force, use_live, workers)
        else:
            if ref is None and target_us is None:
                raise UsageError("name the backup to restore, or give --target-time for point-in-time recovery")
            stored = self._pick_physical(target_us) if ref is None else self.repo.load(ref)
            if stored.manifest.kind == "pg_dump":
                if target_us is not None:
                    raise UsageError("--target-time needs a physical (pgBackRest) backup, not a pg_dump export")
                report = self._restore_logical(stored, force, use_live, workers)
            else:
                report = self._restore_physical(stored, force, target_us, use_live, workers)
        report.target_time = None if target_us is None else format_rfc3339(target_us)
        report.manifest_sha256 = self.repo.load(report.backup).manifest.digest()
        report.duration_s = time.monotonic() - started
        return report

    @staticmethod
    def _require(ref: str | None) -> str:
        if ref is None:
            raise UsageError("name the backup to restore (see `knhk backup list`)")
        return ref

    def _pick_physical(self, target_us: int | None) -> Stored:
        """The newest pgBackRest backup that finished before the target time."""
        candidates = [e for _, e in self.repo.entries() if not isinstance(e, IntegrityError)
                      and e.manifest.pgbackrest is not None
                      and (target_us is None or e.manifest.pgbackrest.stop_us <= target_us)]
        if not candidates:
            raise UsageError("no pgBackRest backup in the backup directory finished before the target time")
        return max(candidates, key=lambda e: e.manifest.pgbackrest.stop_us if e.manifest.pgbackrest else 0)

    @staticmethod
    def _refuse(stored: Stored, result: Verification) -> None:
        if not result.ok:
            raise IntegrityError(f"backup {stored.manifest.id} failed verification; nothing was restored: "
                                 f"{result.problems[0]}", report=result.to_json())

    def _restore_sqlite(self, ref: str, force: bool, use_live: bool, workers: int | None) -> RestoreReport:
        stored = self.repo.load(ref)
        if stored.manifest.kind != "sqlite":
            raise UsageError(f"backup {stored.manifest.id} is a {stored.manifest.kind} backup; the configured store "
                             "is SQLite")
        target = sqlite_path(self.url)
        tidied = swap.tidy(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        side = swap.side_path(target, stored.manifest.id)
        with self._running(use_live) as (live, note):
            if (live is not None or (target.exists() and not _sqlite_is_empty(target))) and not force:
                raise ConflictError(f"the target store {target} is not empty; pass --force to replace it (the "
                                    "previous store is kept beside it)")
            result = Verification(stored.manifest.id, stored.manifest.kind, live=note)
            try:
                content.unseal(stored, side, backup_key(self.settings))
                self._check(stored.manifest, f"sqlite:///{side}", live, "exact", workers, result)
            except IntegrityError as exc:
                result.problems.append(_problem(exc))
        if not result.ok:
            side.unlink(missing_ok=True)
        self._refuse(stored, result)
        keep_as = target.with_name(f"{target.name}.pre-restore-{_stamp()}")
        kept = sqlite_backend.swap_in(side, target, keep_as)
        return RestoreReport(stored.manifest.id, str(target), result, str(kept) if kept else None, tidied=tidied)

    def _restore_logical(self, stored: Stored, force: bool, use_live: bool, workers: int | None) -> RestoreReport:
        side = pgdump.SideDatabase(self.url, stored.manifest.id, self.settings)
        with self._running(use_live) as (live, note), self._scratch("knhk-restore-") as scratch:
            if live is not None and not force:
                raise ConflictError("the target database is not empty; pass --force to replace it (the previous "
                                    "database is kept under another name)")
            result = Verification(stored.manifest.id, stored.manifest.kind, live=note)
            try:
                data = scratch / pgdump.DATA_FILE
                content.unseal(stored, data, backup_key(self.settings))
                side.load(data)
                self._check(stored.manifest, side.url, live, "exact", workers, result)
            except IntegrityError as exc:
                result.problems.append(_problem(exc))
        if not result.ok:
            side.drop()
        self._refuse(stored, result)
        kept = side.swap_in(f"pre_restore_{_stamp().lower()}", force=force)
        return RestoreReport(stored.manifest.id, redact(self.url), result, kept)

    def _restore_physical(self, stored: Stored, force: bool, target_us: int | None, use_live: bool,
                          workers: int | None) -> RestoreReport:
        tool = pgbackrest.PgBackRest.from_settings(self.settings)
        self._check_set(tool, stored.manifest)
        pg_data = self.settings.backup_pg_data
        if pg_data is None:
            raise ConfigurationError("a physical restore needs KNHK_BACKUP_PG_DATA (the cluster's data directory)")
        if not force and pgbackrest.data_dir_in_use(pg_data):
            raise ConflictError(f"the data directory {pg_data} holds a cluster; pass --force to replace it (the "
                                "previous data directory is kept beside it)")
        lost: dict[str, int] = {}
        with self._running(use_live) as (live, note):
            result = Verification(stored.manifest.id, stored.manifest.kind, live=note)
            if live is not None:
                tool.archive_current_wal()  # everything the running server wrote reaches the archive first
            side = tool.restore_side(stored.manifest, pg_data, target_us)
            try:
                with tool.start_side(side, self.url) as url:
                    self._check(stored.manifest, url, live, "at_least", workers, result)
            except IntegrityError as exc:
                result.problems.append(_problem(exc))
            if live is not None and result.restored is not None:
                lost = {log: max(0, live.tree_sizes[log] - result.restored.logs[log].tree_size)
                        for log in LOGS if log in result.restored.logs}
        if not result.ok:
            shutil.rmtree(side, ignore_errors=True)
        self._refuse(stored, result)
        kept = tool.swap_in(side, pg_data, pg_data.with_name(f"{pg_data.name}.pre-restore-{_stamp()}"))
        tool.start_in_place(pg_data, self.url, result)
        return RestoreReport(stored.manifest.id, str(pg_data), result, str(kept) if kept else None, lost=lost)

    # -- list -----------------------------------------------------------------------------------------
    def list(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for name, entry in self.repo.entries():
            if isinstance(entry, IntegrityError):
                out.append({"id": name, "error": entry.message})
                continue
            m = entry.manifest
            row: dict[str, Any] = {
                "id": m.id, "kind": m.kind, "created": format_rfc3339(m.created_us),
                "encrypted": m.encryption is not None or (m.pgbackrest is not None and m.pgbackrest.cipher != "none"),
                "bytes": sum(f.bytes for f in m.files) if m.pgbackrest is None else m.pgbackrest.repo_delta,
                "tree_sizes": {log: s.tree_size for log, s in m.state.logs.items()},
                "observations": m.state.tables.get("observations"),
            }
            if m.pgbackrest is not None:
                row |= {"label": m.pgbackrest.label, "type": m.pgbackrest.type, "size": m.pgbackrest.size}
            out.append(row)
        return out


def _sqlite_is_empty(path: Path) -> bool:
    db = Database(f"sqlite:///{path}")
    try:
        with db.connection() as conn:
            return store.is_empty(conn)
    finally:
        db.close()


def _problem(exc: IntegrityError) -> Problem:
    return Problem("backup", exc.message)


def _stamp() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
