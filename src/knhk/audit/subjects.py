"""Pseudonymous subjects (SPEC §9, GDPR crypto-shredding).

A person or service is known to immutable rows only by a random pseudonym (``sub_`` + 16 random bytes hex).
Their identity is stored once, encrypted with AES-256-GCM under a key of their own, and found again through
a blind index (HMAC-SHA-256 of the identity under the installation's index secret), so the database never
holds the identity in clear. Erasure deletes the key, the ciphertext and the index entry: the pseudonym
remains in the ledger (which still verifies) but can no longer be linked to anyone.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import threading
import time

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from knhk.audit import store as sql
from knhk.errors import DependencyUnavailableError, InvalidInputError, NotFoundError
from knhk.ops.clock import SYSTEM_CLOCK, Clock
from knhk.storage.database import Database

PSEUDONYM = re.compile(r"^sub_[0-9a-f]{32}$")
CACHE_TTL_S = 60.0


class Subjects:
    """Maps identities to pseudonyms and back, and erases them."""

    def __init__(self, db: Database, index_secret: bytes, clock: Clock = SYSTEM_CLOCK) -> None:
        if len(index_secret) < 32:
            raise InvalidInputError("the subject index secret must be at least 32 bytes")
        self.db = db
        self._secret = index_secret
        self.clock = clock
        # identity → (pseudonym, cached at): saves a database round trip per request. Entries live at most
        # CACHE_TTL_S, so an erasure made by another process is honoured within that time (this process's
        # own erasures drop the entry at once).
        self._cache: dict[str, tuple[str, float]] = {}
        self._cache_lock = threading.Lock()

    def _index(self, identity: str) -> str:
        return hmac.new(self._secret, identity.encode(), hashlib.sha256).hexdigest()

    def keyed_hash(self, purpose: str, identity: str) -> str:
        """A stable keyed hash of ``identity`` for ``purpose`` (HMAC-SHA-256 under a key derived from the index
        secret per purpose), for keys kept outside the database — e.g. rate-limit counters in Redis — that
        must neither reveal the identity nor match the blind index."""
        key = hmac.new(self._secret, b"knhk keyed hash\x00" + purpose.encode(), hashlib.sha256).digest()
        return hmac.new(key, identity.encode(), hashlib.sha256).hexdigest()

    def pseudonym(self, identity: str) -> str:
        """The pseudonym of ``identity``, created (with its encrypted identity) on first sight."""
        if not identity or len(identity) > 512:
            raise InvalidInputError("an identity is 1 to 512 characters")
        if PSEUDONYM.match(identity):
            return identity  # already a pseudonym
        cached = self._cache.get(identity)
        if cached is not None and time.monotonic() - cached[1] < CACHE_TTL_S:
            return cached[0]
        found = self._lookup_or_create(identity)
        with self._cache_lock:
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[identity] = (found, time.monotonic())
        return found

    def _lookup_or_create(self, identity: str) -> str:
        index = self._index(identity)
        with self.db.connection() as conn:
            found = sql.find_by_index(conn, index)
        if found is not None:
            return found
        pseudonym = "sub_" + os.urandom(16).hex()
        key = AESGCM.generate_key(bit_length=256)
        nonce = os.urandom(12)
        ciphertext = nonce + AESGCM(key).encrypt(nonce, identity.encode(), pseudonym.encode())
        with self.db.transaction() as conn:
            found = sql.find_by_index(conn, index)
            if found is not None:
                return found
            inserted = sql.insert(conn, pseudonym, index, ciphertext, key, self.clock.now_us())
        if not inserted:  # another process created it between our look-up and our insert
            with self.db.connection() as conn:
                winner = sql.find_by_index(conn, index)
            if winner is None:
                raise DependencyUnavailableError("the subject could not be created; try again")
            return winner
        return pseudonym

    def identity(self, pseudonym: str) -> str | None:
        """The identity behind a pseudonym, or None when it was erased or never existed."""
        with self.db.connection() as conn:
            stored = sql.load(conn, pseudonym)
        if stored is None:
            return None
        ciphertext, key = stored
        return AESGCM(key).decrypt(ciphertext[:12], ciphertext[12:], pseudonym.encode()).decode()

    def lookup(self, identity: str) -> str | None:
        """The pseudonym of a known identity (never cached: erasure must be visible at once)."""
        with self.db.connection() as conn:
            return sql.find_by_index(conn, self._index(identity))

    def erased(self, pseudonyms: list[str]) -> set[str]:
        """Those of ``pseudonyms`` whose subject was erased (never cached: an erasure counts at once)."""
        with self.db.connection() as conn:
            return sql.erased_among(conn, sorted(set(pseudonyms)))

    def erase(self, pseudonym: str) -> bool:
        """Crypto-shred a subject; True when there was something to erase."""
        if not PSEUDONYM.match(pseudonym):
            raise InvalidInputError(f"{pseudonym!r} is not a subject pseudonym (sub_ + 32 hex digits)")
        with self.db.transaction() as conn:
            existed = sql.erase(conn, pseudonym, self.clock.now_us())
        with self._cache_lock:
            for identity in [i for i, (p, _) in self._cache.items() if p == pseudonym]:
                del self._cache[identity]
        if not existed:
            with self.db.connection() as conn:
                if not sql.was_erased(conn, pseudonym):
                    raise NotFoundError(f"no subject {pseudonym}")
        return existed
