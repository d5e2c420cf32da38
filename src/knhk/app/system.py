"""The installation itself (SPEC §10 health, §11, §13 ``knhk init``, ``knhk db``): what it is, whether its parts
answer, the service's background jobs, and the administrative steps that run before an application exists
(migrating the schema, granting the application role).

The background jobs (:meth:`SystemOps.run_due_cycles`, :meth:`SystemOps.verify_ledgers`,
:meth:`SystemOps.issue_checkpoints`) are the installation's own work, not a principal's operation: each runs
under a database lease, so across every worker and replica at most one instance runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from knhk.app.base import Operations
from knhk.config import Settings
from knhk.errors import ConflictError
from knhk.ledger import receipts
from knhk.ledger.verify import VerifyReport
from knhk.loop.coordinator import CycleRecord
from knhk.observations import partitions
from knhk.ontology.schema import SectorSchema
from knhk.ops.clock import Clock
from knhk.proof.entry import LOGS, Entry
from knhk.sectors.pack import available_sectors
from knhk.storage import roles, schema
from knhk.storage.database import Database

log = logging.getLogger("knhk.service")


@dataclass(frozen=True)
class MigrationResult:
    applied: list[str]  # NNNN_name of each migration this call applied
    schema_version: int


@dataclass(frozen=True)
class MigrationPlan:
    pending: list[schema.Migration]  # what ``knhk db migrate`` would apply, in order
    schema_version: int  # the highest migration applied now (0: none)


def _migrate(db: Database, settings: Settings) -> list[schema.Migration]:
    return schema.migrate(db, lock_timeout_ms=settings.migration_lock_timeout_ms,
                          statement_timeout_ms=settings.migration_statement_timeout_ms)


def migrate_database(settings: Settings) -> MigrationResult:
    """Apply every pending schema migration (``knhk db migrate``)."""
    db = Database(settings.resolved_database_url, pool_min=1, pool_max=2)
    try:
        applied = _migrate(db, settings)
        have = sorted(schema.applied(db))
    finally:
        db.close()
    return MigrationResult([f"{m.version:04d}_{m.name}" for m in applied], have[-1] if have else 0)


def migration_plan(settings: Settings) -> MigrationPlan:
    """The migrations ``knhk db migrate`` would apply, with their SQL, changing nothing
    (``knhk db migrate --dry-run``); an applied migration whose file changed is refused as by migrate."""
    db = Database(settings.resolved_database_url, pool_min=1, pool_max=2)
    try:
        todo = schema.pending(db)
        have = sorted(schema.applied(db))
    finally:
        db.close()
    return MigrationPlan(todo, have[-1] if have else 0)


def schema_version(database_url: str) -> int:
    """The highest migration applied to a database (0: none, an empty database)."""
    db = Database(database_url, pool_min=1, pool_max=2)
    try:
        have = sorted(schema.applied(db))
    finally:
        db.close()
    return have[-1] if have else 0


def grant_app_role(settings: Settings, role: str, password: str | None = None) -> list[str]:
    """Create (if missing) the least-privilege PostgreSQL login role and grant it exactly the application's
    privileges (run as the schema owner); return the statements."""
    db = Database(settings.resolved_database_url, pool_min=1, pool_max=2)
    try:
        _migrate(db, settings)
        return roles.create_app_role(db, role, password)
    finally:
        db.close()


class SystemOps(Operations):
    @property
    def clock(self) -> Clock:
        """The clock the installation records time with (token checks use it too)."""
        return self.runtime.clock

    def describe(self) -> dict[str, Any]:
        """What ``knhk init`` reports: the store, the active signing key and where keys live."""
        db, keyring = self.runtime.db, self.runtime.keyring
        return {"database": db.url if db.dialect == "sqlite" else db.dialect,
                "active_key_id": keyring.active_key_id(), "keys_dir": str(keyring.keys_dir)}

    def on_receipts(self, listener: Callable[[list[Entry]], None]) -> None:
        """Call ``listener`` with the entries of each committed ledger batch (it must not raise)."""
        self.runtime.ledger.sequencer.listeners.append(listener)

    def start_outbox_drain(self) -> None:
        """Drain receipts owed in the outbox every ``KNHK_OUTBOX_DRAIN_INTERVAL_S`` from now on (the service)."""
        self.runtime.ledger.start_polling()

    def outbox_pending(self) -> int:
        """Ledger entries owed in the outbox and not written yet (``knhk_outbox_pending``)."""
        return self.runtime.ledger.outbox_pending()

    def ensure_partitions(self) -> int:
        """Make the observation partitions of this month and the next ``KNHK_PARTITIONS_AHEAD`` (the service's
        hourly job; ingest and startup do it too); how many were made."""
        rt = self.runtime
        return partitions.ensure(rt.db, rt.loop_clock.now_us(), rt.settings.partitions_ahead)

    def refresh_snapshots(self) -> None:
        """Reload every sector's current snapshot from the database."""
        self.runtime.registry.refresh()

    # -- health ---------------------------------------------------------------------------------------------
    @property
    def database_dialect(self) -> str:
        return self.runtime.db.dialect

    def database_health(self) -> dict[str, Any]:
        """The database's cached, bounded health state (:meth:`knhk.storage.database.Database.health`)."""
        return self.runtime.db.health()

    def ping_database(self) -> None:
        """One round trip to the database (raises when it does not answer)."""
        with self.runtime.db.connection() as conn:
            conn.fetchone("SELECT 1")

    def llm_status(self) -> dict[str, Any] | None:
        """The LLM proposer's state for ``/health`` (None: not configured; its breaker is read, nothing called)."""
        planner = self.runtime.coordinator.llm
        return None if planner is None else planner.proposer.status()

    def redis_up(self) -> bool | None:
        """Whether the Redis of the L2 cache answers (``None``: no L2 configured; ``False`` at once while the
        ``redis`` circuit breaker is open)."""
        l2 = self.runtime.cache.l2
        return None if l2 is None else l2.ping()

    def cache_stats(self) -> dict[str, int]:
        """Bytes held by the L1 cache of this process (and by KNHK's L2 keyspace, when Redis answers)."""
        cache = self.runtime.cache
        stats = {"l1_bytes": cache.l1.bytes_used, "l1_max_bytes": cache.l1.max_bytes}
        if cache.l2 is not None:
            stats["l2_max_bytes"] = cache.l2.max_bytes
        return stats

    def rate_limit_key(self, identity: str) -> str:
        """The key a principal's requests are counted under outside the database (Redis): a keyed hash of its
        identity, never the identity."""
        return self.runtime.subjects.keyed_hash("rate-limit", identity)

    def migrations_pending(self) -> bool:
        return bool(schema.pending(self.runtime.db))

    def signing_key_usable(self) -> bool:
        keyring = self.runtime.keyring
        key_id = keyring.active_key_id()
        return key_id is not None and keyring.signing_key(key_id) is not None

    def current_schemas(self) -> dict[str, SectorSchema]:
        """The read model of every installed sector's current snapshot."""
        registry = self.runtime.registry
        return {s: registry.current_schema(s) for s in available_sectors() if registry.current(s) is not None}

    def sector_packs_installed(self) -> bool:
        return all(self.runtime.registry.current(s) is not None for s in available_sectors())

    def pool_stats(self) -> dict[str, int]:
        """Database connections by state (in_use, idle, waiting); empty for SQLite."""
        return self.runtime.db.pool_stats()

    def tree_sizes(self) -> dict[str, int]:
        return {log: self.runtime.ledger.tree_size(log) for log in LOGS}

    # -- background jobs ------------------------------------------------------------------------------------
    def run_due_cycles(self, interval_s: float) -> list[CycleRecord]:
        """Run the cycle of every sector whose last cycle started at least ``interval_s`` ago, if this process
        takes the sector's scheduling lease (so across replicas each interval's cycle runs once). The loop's
        own work: not audited as a principal's run; a cycle that cannot run is logged and skipped."""
        rt = self.runtime
        now = rt.clock.now_us()
        done: list[CycleRecord] = []
        for sector in available_sectors():
            last = rt.coordinator.recent(sector, 1)
            if last and now - last[0]["started_us"] < interval_s * 1_000_000:
                continue
            if not rt.leases.try_acquire(f"knhk.schedule.{sector}", interval_s):
                continue  # another process scheduled this interval's cycle
            try:
                done.append(rt.run_cycle(sector))
            except Exception as exc:
                log.warning("scheduled cycle of %s not run: %s", sector, exc)
        return done

    def verify_ledgers(self) -> dict[str, VerifyReport]:
        """Verify both logs fully, unless another process holds the verifier's lease (then: nothing)."""
        try:
            # held for the whole verification and renewed by a heartbeat, so the TTL stays short
            # (KNHK_LEASE_TTL_S) and a killed or hung verifier is taken over within it
            with self.runtime.leases.hold("knhk.verifier", what="ledger verification"):
                return {log: self.runtime.ledger.verify(log, workers=1) for log in LOGS}
        except ConflictError:
            return {}  # another process is verifying

    def issue_checkpoints(self, interval_s: float) -> None:
        """Checkpoint each log that grew since its latest checkpoint (one process per interval; its holder
        keeps the lease by renewing it each interval, and a dead holder's lapses within KNHK_LEASE_TTL_S)."""
        if not self.runtime.leases.try_acquire("knhk.checkpointer", max(self.runtime.settings.lease_ttl_s,
                                                                        interval_s)):
            return
        ledger = self.runtime.ledger
        for log in (receipts.RECEIPTS, receipts.AUDIT):
            latest = ledger.latest_checkpoint(log)
            size = ledger.tree_size(log)
            if size and (latest is None or latest.tree_size < size):
                ledger.checkpoint(log)
