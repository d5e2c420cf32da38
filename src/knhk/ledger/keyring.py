"""The ledger keyring: public keys kept forever in the database, private keys in files or the environment.

A key is identified by its SPEC §8 key id. Exactly one key is active (not retired). Which key signed which
part of each log is recorded in ``ledger_key_use`` (log, first seq, key id) by the sequencer the first time
it signs with a key, so an entry verifies only with the key that was valid at its seq, and rotated keys keep
verifying old entries forever. Private key files are ``<keys_dir>/<key_id>.key`` (hex seed, mode 0600).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from knhk.errors import ConfigurationError, NotFoundError
from knhk.ledger import store as sql
from knhk.ops.clock import SYSTEM_CLOCK, Clock
from knhk.proof.signing import PublicKey, SigningKey, read_key_file, write_key_file
from knhk.storage.database import Connection, Database

log = logging.getLogger("knhk.ledger")


class Keyring:
    """Public keys from the database; private keys from ``keys_dir`` or an explicitly configured key."""

    def __init__(self, db: Database, keys_dir: Path, configured: SigningKey | None = None,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        self.db = db
        self.keys_dir = keys_dir
        self.configured = configured
        self.clock = clock
        self._private: dict[str, SigningKey] = {}
        self._public: dict[str, PublicKey] = {}
        self._lock = threading.Lock()
        if configured is not None:
            self._private[configured.key_id] = configured

    # -- reading --------------------------------------------------------------------------------------
    def public_keys(self, refresh: bool = False) -> dict[str, PublicKey]:
        with self._lock:
            if refresh or not self._public:
                with self.db.connection() as conn:
                    self._public = {k.key_id: k for k in sql.list_keys(conn)}
            return dict(self._public)

    def public_key(self, key_id: str) -> PublicKey:
        keys = self.public_keys()
        if key_id not in keys:
            keys = self.public_keys(refresh=True)
        if key_id not in keys:
            raise NotFoundError(f"key {key_id} is not in the keyring")
        return keys[key_id]

    def signing_key(self, key_id: str) -> SigningKey:
        """The private key with this id, from the configured key or the key directory."""
        with self._lock:
            key = self._private.get(key_id)
            if key is None:
                path = self.keys_dir / f"{key_id}.key"
                if not path.exists():
                    raise ConfigurationError(
                        f"the active signing key {key_id} is not available to this process "
                        f"(no {path}; set KNHK_SIGNING_KEY or KNHK_KEYS_DIR)"
                    )
                key = read_key_file(path)
                if key.key_id != key_id:
                    raise ConfigurationError(f"key file {path} holds key {key.key_id}, not {key_id}")
                self._private[key_id] = key
            return key

    def active_key_id(self, conn: Connection | None = None) -> str | None:
        if conn is not None:
            return sql.active_key_id(conn)
        with self.db.connection() as c:
            return sql.active_key_id(c)

    # -- changing -------------------------------------------------------------------------------------
    def ensure_active(self) -> str:
        """Make sure a key is active: register the configured key, or generate one on first use."""
        active = self.active_key_id()
        if self.configured is not None:
            if active != self.configured.key_id:
                self.install(self.configured)
            return self.configured.key_id
        if active is None:
            return self.install(SigningKey.generate()).key_id
        return active

    def install(self, key: SigningKey, *, lock: str = "knhk.ledger.all",
                before_switch: Callable[[Connection], None] | None = None) -> PublicKey:
        """Store ``key`` (file unless configured), make it the active key and retire every other key.

        ``before_switch`` runs in the same transaction, under ``lock``, while the old key is still active
        (the ledger uses it to close each log with a checkpoint signed by the outgoing key).
        """
        if self.configured is None or key.key_id != self.configured.key_id:
            path = self.keys_dir / f"{key.key_id}.key"
            if not path.exists():
                write_key_file(path, key)
        now = self.clock.now_us()
        with self.db.transaction(lock=lock) as conn:
            if before_switch is not None:
                before_switch(conn)
            sql.insert_key(conn, key.key_id, key.public_key, now)
            sql.retire_keys_except(conn, key.key_id, now)
        with self._lock:
            self._private[key.key_id] = key
            self._public = {}
        log.info("signing key %s is now active", key.key_id)
        return self.public_key(key.key_id)
