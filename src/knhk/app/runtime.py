"""Wiring for one process: settings → database (migrated) → keyring → ledger → audit log → snapshots →
observations and detection → proposals → the loop coordinator.

``Runtime.open(settings)`` builds it; :class:`~knhk.app.application.Application` holds it and is what the faces
(CLI, service, console) use — they never reach into these parts themselves. Tests and the application layer may.
A fresh data directory or database initialises itself here on first use (migrations applied, a signing key
generated for the embedded mode, the bundled sector packs installed as each sector's root snapshot).

Two clocks: ``clock`` stamps what the system records (ledger times, snapshot creation); ``loop_clock`` is the
time the loop reasons in (observation skew, detection windows, doctrine time windows, approval expiry). They
are the same wall clock in production; a replay (``knhk demo``) runs the loop on the recording's time.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING

from knhk.audit.erasure import References
from knhk.audit.log import AuditLog
from knhk.audit.subjects import Subjects
from knhk.config import Settings
from knhk.detection.engine import DetectionEngine
from knhk.detection.pattern import DetectorConfig
from knhk.detection.settings import SectorDetectors, layered
from knhk.detection.thresholds import ThresholdBook
from knhk.errors import ConfigurationError
from knhk.governance.relaxations import RelaxationService
from knhk.ledger import store as ledger_store
from knhk.ledger.keyring import Keyring
from knhk.ledger.ledger import Ledger
from knhk.ledger.sequencer import CheckpointPolicy
from knhk.loop import store as loop_store
from knhk.loop.coordinator import Coordinator, CycleRecord
from knhk.loop.leases import Leases
from knhk.loop.planner import LlmPlanner
from knhk.loop.proposals import LoopPolicy, ProposalService
from knhk.observations import store as observation_store
from knhk.observations.ingest import Ingestor
from knhk.observations.partitions import PartitionKeeper
from knhk.observations.reader import ObservationReader
from knhk.ontology.registry import SnapshotRegistry
from knhk.ontology.schema import SectorSchema
from knhk.ops import resilience
from knhk.ops.cache import DerivedCache, RedisLayer
from knhk.ops.clock import SYSTEM_CLOCK, Clock
from knhk.ops.stale import LastSeen
from knhk.proof.signing import SigningKey, read_key_file
from knhk.sectors.classes import pack_class_rules
from knhk.sectors.detectors import pack_detector_settings
from knhk.sectors.detectors import where as pack_settings_file
from knhk.sectors.pack import available_sectors, load_pack
from knhk.storage import schema
from knhk.storage.database import Database
from knhk.storage.fields import FieldCipher, KekRing
from knhk.validation.classes import ClassRules
from knhk.validation.doctrines import Doctrine

if TYPE_CHECKING:
    from knhk.proposals.llm import LlmSettings

SYSTEM_ACTOR = "system:knhk"

log = logging.getLogger("knhk")
_PRIME_PAGE = 5000  # observations fed to the detection windows at a time when a sector is first caught up


def _configured_key(settings: Settings) -> SigningKey | None:
    if settings.signing_key is not None:
        return SigningKey.from_hex(settings.signing_key.get_secret_value())
    if settings.signing_key_file is not None:
        return read_key_file(settings.signing_key_file)
    return None


def _index_secret(settings: Settings) -> bytes:
    if settings.subject_hmac_key is not None:
        secret = settings.subject_hmac_key.get_secret_value().encode()
        if len(secret) < 32:
            raise ConfigurationError("KNHK_SUBJECT_HMAC_KEY must be at least 32 characters")
        return secret
    path: Path = settings.resolved_keys_dir / "subject-index.secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return _written_secret(path)
        with os.fdopen(fd, "w") as handle:
            handle.write(os.urandom(32).hex())
            handle.flush()
            os.fsync(handle.fileno())
    return _written_secret(path)


def _written_secret(path: Path, wait_s: float = 5.0) -> bytes:
    """The index secret in ``path``, waiting briefly while a concurrent first start is still writing it (the
    file exists from its exclusive creation on, before its 64 hex digits are in it)."""
    deadline = time.monotonic() + wait_s
    while True:
        secret = path.read_text().strip().encode()
        if len(secret) >= 64 or time.monotonic() > deadline:
            return secret
        time.sleep(0.01)


def derived_cache(settings: Settings, secret: bytes) -> DerivedCache:
    """The process's cache of derived results: L1 always (unless sized 0), L2 when Redis is configured."""
    l2 = None
    if settings.redis_url and settings.cache_l2_bytes > 0:
        l2 = RedisLayer.from_url(settings.redis_url, timeout_s=settings.redis_timeout_s,
                                 max_bytes=settings.cache_l2_bytes, ttl_s=settings.cache_l2_ttl_s, secret=secret)
    return DerivedCache(settings.cache_l1_bytes, l2)


def phi_keys(settings: Settings) -> KekRing:
    """The key-encryption keys of PHI at rest: KNHK_PHI_KEY, else the key files of the keys directory."""
    if settings.phi_key is not None:
        return KekRing.from_hex(settings.phi_key.get_secret_value(), settings.resolved_keys_dir)
    return KekRing.load(settings.resolved_keys_dir)


def _phi_fields() -> dict[str, frozenset[str]]:
    return {sector: load_pack(sector).phi_fields for sector in available_sectors() if load_pack(sector).phi_fields}


def doctrines_for(sector: str) -> list[Doctrine]:
    """The doctrines of a sector's bundled pack (read once per process: ingest asks for them every batch)."""
    return list(_pack_doctrines(sector))


@cache
def _pack_doctrines(sector: str) -> tuple[Doctrine, ...]:
    if sector not in available_sectors():
        return ()
    return tuple(Doctrine.from_json(raw) for raw in load_pack(sector).doctrines)


def class_rules(sector: str, settings: Settings) -> ClassRules:
    """A sector's change-class rules: the defaults < its pack's classes.json < KNHK_CHANGE_CLASSES."""
    raw = {**pack_class_rules(sector), **settings.change_classes.get(sector, {})}
    return ClassRules.from_json(raw, f"change classes of {sector} (classes.json, KNHK_CHANGE_CLASSES)")


def detector_settings(sector: str, settings: Settings) -> SectorDetectors:
    """A sector's effective detector settings: SPEC defaults < its pack's detectors.json < KNHK_DETECTOR_SETTINGS."""
    return layered(sector, pack_detector_settings(sector), settings.detector_settings.get(sector),
                   pack_where=pack_settings_file(sector), configured_where=f"KNHK_DETECTOR_SETTINGS {sector}")


def _detector_configs(settings: Settings) -> dict[str, DetectorConfig]:
    """Every bundled sector's detector settings; configuration naming a sector that has no pack is refused (a
    typo would silently change nothing)."""
    installed = available_sectors()
    for sector in settings.detector_settings:
        if sector not in installed:
            raise ConfigurationError(f"KNHK_DETECTOR_SETTINGS names sector {sector!r}, which has no sector pack;"
                                     f" installed: {', '.join(installed)}")
    return {sector: detector_settings(sector, settings).config for sector in installed}


def configure_resilience(settings: Settings) -> None:
    """The process's circuit breakers and retries take the configured numbers (``KNHK_BREAKER_*``, ``KNHK_RETRY_*``)."""
    resilience.configure(
        resilience.BreakerPolicy(settings.breaker_fail_max, settings.breaker_open_s, settings.breaker_half_open_trials,
                                 settings.breaker_probe_interval_s),
        resilience.RetryPolicy(settings.retry_attempts, settings.retry_base_s, 2.0, settings.retry_cap_s,
                               settings.retry_jitter))


def llm_settings(settings: Settings) -> LlmSettings | None:
    """The LLM proposer's configuration (KNHK_LLM_*), or None when KNHK_LLM_URL is unset (rule proposer only)."""
    if settings.llm_url is None:
        return None
    from knhk.proposals.llm import LlmSettings  # httpx and the prompt machinery: only with an LLM configured
    from knhk.proposals.llm import read_key_file as read_llm_key

    if not settings.llm_model:
        raise ConfigurationError("KNHK_LLM_URL is set but KNHK_LLM_MODEL is not: name the model to ask")
    key = read_llm_key(settings.llm_key_file) if settings.llm_key_file is not None else None
    return LlmSettings(settings.llm_url, settings.llm_model, key, settings.llm_connect_timeout_s,
                       settings.llm_timeout_s, settings.llm_max_tokens, settings.llm_requests_per_hour,
                       settings.llm_tokens_per_hour)


def llm_planner(settings: Settings, db: Database, clock: Clock, proposals: ProposalService) -> LlmPlanner | None:
    """The LLM proposer when configured; its rate limit and token budget are counted in the database (shared by
    every process of the installation)."""
    configured = llm_settings(settings)
    if configured is None:
        return None
    from knhk.proposals.llm import LlmProposer, StoredAllowance

    allowance = StoredAllowance(db, configured.requests_per_hour, configured.tokens_per_hour, clock.now_us)
    return LlmPlanner(LlmProposer(configured, allowance=allowance), doctrines_for, proposals.decided)


@dataclass
class Runtime:
    """The wired-up objects of one KNHK process."""

    settings: Settings
    db: Database
    keyring: Keyring
    ledger: Ledger
    subjects: Subjects
    audit: AuditLog
    clock: Clock
    loop_clock: Clock
    registry: SnapshotRegistry
    reader: ObservationReader
    engine: DetectionEngine
    ingestor: Ingestor
    thresholds: ThresholdBook
    proposals: ProposalService
    coordinator: Coordinator
    leases: Leases
    relaxations: RelaxationService
    cache: DerivedCache
    subscribed: bool = True
    #: answers of reads served, marked stale, while the database is unavailable (``KNHK_STALE_READ_ENTRIES``)
    last_seen: LastSeen = field(default_factory=lambda: LastSeen(10_000))
    _cursors: dict[str, int] = field(default_factory=dict)

    @classmethod
    def open(cls, settings: Settings, *, clock: Clock = SYSTEM_CLOCK, loop_clock: Clock | None = None,
             migrate: bool = True, install_packs: bool = True, subscribe_engine: bool = True) -> Runtime:
        """Open (and on first use initialise) an installation.

        ``subscribe_engine``: feed the detection windows directly from this process's ingests (embedded use).
        A service with several workers or replicas passes False; each cycle then catches the windows up from
        the database by ingest sequence (:meth:`catch_up`), so every process sees every observation once.
        """
        configure_resilience(settings)
        db = Database(
            settings.resolved_database_url,
            pool_min=settings.db_pool_min,
            pool_max=settings.db_pool_max,
            statement_timeout_ms=settings.db_statement_timeout_ms,
            connect_timeout_s=settings.db_connect_timeout_s,
            pool_timeout_s=settings.db_pool_timeout_s,
            hung_check_s=settings.db_hung_check_s,
            liveness_timeout_s=settings.db_liveness_timeout_s,
        )
        try:
            if migrate:
                schema.migrate(db, lock_timeout_ms=settings.migration_lock_timeout_ms,
                               statement_timeout_ms=settings.migration_statement_timeout_ms)
            db.fields = FieldCipher.load(db, phi_keys(settings), _phi_fields(), clock.now_us())
            keyring = Keyring(db, settings.resolved_keys_dir, _configured_key(settings), clock)
            keyring.ensure_active()
            policy = CheckpointPolicy(settings.checkpoint_every_entries, settings.checkpoint_every_seconds,
                                      settings.log_origin_prefix)
            secret = _index_secret(settings)
            cache = derived_cache(settings, secret)
            ledger = Ledger(db, keyring, policy=policy, clock=clock, max_batch=settings.sequencer_max_batch,
                            drain_interval_s=settings.outbox_drain_interval_s)
            subjects = Subjects(db, secret, clock)
            audit = AuditLog(ledger, subjects)
            lclock = loop_clock or clock
            registry = SnapshotRegistry(db, ledger, audit, clock, cache=cache)
            if install_packs:
                for sector in available_sectors():
                    registry.install_root(sector, load_pack(sector).sigma, SYSTEM_ACTOR)
            reader = ObservationReader(db)
            engine = DetectionEngine(lclock, configs=_detector_configs(settings))

            def schema_for(sector: str) -> SectorSchema | None:  # one pointer read: the ingestor asks once a batch
                current = registry.current(sector)
                return None if current is None else registry.schema(current.id)

            def schemas_for(sectors: Sequence[str]) -> dict[str, SectorSchema | None]:  # one read for a batch
                return {sector: None if current is None else registry.schema(current.id)
                        for sector, current in registry.current_of(sectors).items()}

            relaxations = RelaxationService(db, ledger, audit, registry, doctrines_for, lclock,
                                            max_window_s=settings.relaxation_max_window_s)
            ingestor = Ingestor(db, ledger, schema_for, lclock, schemas_for=schemas_for,
                                on_ingested=engine.observe if subscribe_engine else None,
                                doctrines_for=doctrines_for, installed=registry.sectors,
                                relaxed_for=relaxations.relaxed, receipt_wait_s=settings.receipt_wait_s)
            keeper = PartitionKeeper(db, settings.partitions_ahead)
            keeper.cover(lclock.now_us())
            ingestor.before_store = keeper.cover
            thresholds = ThresholdBook(db, clock)
            unknown = set(settings.change_classes) - set(available_sectors())
            if unknown:
                raise ConfigurationError(f"KNHK_CHANGE_CLASSES names sectors without a pack: {sorted(unknown)}")
            rules = {sector: class_rules(sector, settings) for sector in available_sectors()}
            proposals = ProposalService(db, ledger, audit, registry, reader, doctrines_for, lclock, LoopPolicy(),
                                        classes_for=lambda sector: rules.get(sector, ClassRules()))
            proposals.on_outcome = thresholds.record
            coordinator = Coordinator(db, ledger, registry, engine, thresholds, proposals, lclock,
                                      llm=llm_planner(settings, db, clock, proposals))
        except BaseException:
            db.close()
            raise
        leases = Leases(db, ttl_s=settings.lease_ttl_s)
        return cls(settings, db, keyring, ledger, subjects, audit, clock, lclock, registry, reader, engine,
                   ingestor, thresholds, proposals, coordinator, leases, relaxations, cache, subscribe_engine,
                   last_seen=LastSeen(settings.stale_read_entries))

    def catch_up(self, sector: str) -> int:
        """Feed the sector's detection windows with observations stored since the last catch-up (by ingest
        sequence; the first time, everything within the longest detection window)."""
        if self.subscribed:
            return 0
        fed = 0
        after = self._cursors.get(sector)
        if after is None:
            window_s = max(300.0, self.engine.config(sector).drift_window_s)
            self.engine.monitor(sector)
            after = 0
            # page by page: the windows keep compact entries, so memory holds one page of observations at a
            # time, never the whole window as one list
            stream = self.reader.since(self.loop_clock.now_us() - int(window_s * 1_000_000), sector=sector)
            while chunk := list(islice(stream, _PRIME_PAGE)):
                self.engine.observe(chunk)
                fed += len(chunk)
                after = max(after, max(o.seq or 0 for o in chunk))
            if not fed:
                after = self.reader.last_seq(sector)
        while True:
            page = self.reader.query(sector=sector, after=after, limit=10_000)
            if not page.items:
                break
            self.engine.observe(page.items)
            fed += len(page.items)
            after = max(o.seq or after for o in page.items)
            if page.next_after is None:
                break
        self._cursors[sector] = after
        return fed

    def references(self, pseudonym: str) -> References:
        """How many stored rows of each concept mention a pseudonym (for the erasure report)."""
        with self.db.connection() as conn:
            return References(ledger_store.count_mentions(conn, "receipts", pseudonym),
                              ledger_store.count_mentions(conn, "audit", pseudonym),
                              loop_store.count_approvals_by(conn, pseudonym),
                              observation_store.count_ingested_by(conn, pseudonym))

    def run_cycle(self, sector: str) -> CycleRecord:
        """One cycle of ``sector``, holding the sector's database lease (one running cycle per sector across
        every process and replica; a second caller gets a ConflictError)."""
        with self.leases.hold(f"knhk.cycle.{sector}", what=f"a cycle of sector {sector}"):
            self.relaxations.sweep(sector)  # receipt the guard relaxations time has ended or expired
            self.catch_up(sector)
            return self.coordinator.run_cycle(sector)

    def close(self) -> None:
        if self.coordinator.llm is not None:
            self.coordinator.llm.proposer.close()
        self.ledger.close()
        self.db.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
