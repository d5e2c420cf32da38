"""Field encryption at rest (seed HIPAA: PHI encrypted at rest): envelope AES-256-GCM (NIST SP 800-38D).

Values of the fields a sector pack marks as PHI are stored as tokens ``phi1.<data key id>.<scope>.<base64url(
nonce ‖ ciphertext ‖ tag)>``. The 96-bit nonce is random; the additional authenticated data binds a token to
its row and field (observation id, sector, field name), so a token copied into another row or field fails.

The installation's data key (32 random bytes) is stored in ``data_keys`` only wrapped (AES-256-GCM) by a
key-encryption key (KEK); each scope (sector and month of ingest) seals under its own key derived from it with
HKDF-SHA-256 (RFC 5869), so no single AES key sees more than a month of one sector, far below the 2^32
random-nonce bound. The KEK never enters the database: a key file in the keys
directory (``phi-<kek id>.kek``, 64 hex digits, mode 0600), the active one named in ``phi.active``. Rotation
(:meth:`FieldCipher.rotate`) writes a new KEK file, re-wraps every data key in one transaction and then
switches ``phi.active``; no observation row and no ledger entry is rewritten. A KEK file may be removed only
once no data key is wrapped by it (:meth:`FieldCipher.retire`). The database alone (a dump, a backup) opens
nothing.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import threading
import time
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from knhk.errors import ConfigurationError, IntegrityError, InvalidInputError

PREFIX = "phi1."
_SCOPE = "installation"  # the one data key of an installation; the schema allows more later
_KEK_FILE = re.compile(r"^phi-([0-9a-f]{16})\.kek$")
_ACTIVE = "phi.active"


class _Db(Protocol):
    """The database surface used here (``knhk.storage.database.Database``, which imports this module)."""

    def transaction(self) -> AbstractContextManager[Any]: ...
    def connection(self) -> AbstractContextManager[Any]: ...


def kek_id_of(kek: bytes) -> str:
    return hashlib.sha256(b"knhk-phi-kek\n" + kek).digest()[:8].hex()


def _write_secret(path: Path, secret: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret.hex())
        handle.flush()
        os.fsync(handle.fileno())


def _read_kek(path: Path) -> bytes:
    if path.stat().st_mode & 0o077:
        raise ConfigurationError(f"PHI key file {path} is readable by others: chmod 600 it")
    text = path.read_text().strip()
    try:
        kek = bytes.fromhex(text)
    except ValueError:
        raise ConfigurationError(f"PHI key file {path} does not hold 64 hex digits") from None
    if len(kek) != 32:
        raise ConfigurationError(f"PHI key file {path} does not hold 64 hex digits")
    return kek


@dataclass(frozen=True)
class KekRing:
    """The key-encryption keys of ``keys_dir``: every ``phi-<id>.kek`` file, and which one is active."""

    keks: Mapping[str, bytes]
    active: str
    keys_dir: Path

    @classmethod
    def from_hex(cls, text: str, keys_dir: Path) -> KekRing:
        """One KEK given as configuration (KNHK_PHI_KEY) instead of key files."""
        try:
            kek = bytes.fromhex(text.strip())
        except ValueError:
            kek = b""
        if len(kek) != 32:
            raise ConfigurationError("KNHK_PHI_KEY must be 64 hex digits (a 256-bit key)")
        return cls({kek_id_of(kek): kek}, kek_id_of(kek), keys_dir)

    @classmethod
    def load(cls, keys_dir: Path, *, create: bool = True, wait_s: float = 5.0) -> KekRing:
        """Load the KEKs; a first start running concurrently (another replica writing the first key file and
        ``phi.active``) is waited for up to ``wait_s`` before an incomplete directory is an error."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                return cls._load(keys_dir, create=create)
            except ConfigurationError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    @classmethod
    def _load(cls, keys_dir: Path, *, create: bool = True) -> KekRing:
        keks: dict[str, bytes] = {}
        if keys_dir.is_dir():
            for item in sorted(keys_dir.iterdir()):
                match = _KEK_FILE.match(item.name)
                if match:
                    try:
                        kek = _read_kek(item)
                    except FileNotFoundError:
                        # gone since the listing: the key of a concurrent first start that lost the claim of
                        # phi.active (it wrapped nothing); if it was the active one, the check below refuses
                        continue
                    if kek_id_of(kek) != match.group(1):
                        raise ConfigurationError(f"PHI key file {item} does not hold the key its name says")
                    keks[match.group(1)] = kek
        active_file = keys_dir / _ACTIVE
        if active_file.exists():
            active = active_file.read_text().strip()
            if active not in keks:
                raise ConfigurationError(f"{active_file} names PHI key {active}, but phi-{active}.kek is missing")
            return cls(keks, active, keys_dir)
        if keks:
            raise ConfigurationError(f"{keys_dir} holds PHI key files but no {_ACTIVE} naming the active one")
        if not create:
            raise ConfigurationError(f"no PHI key in {keys_dir}")
        kek = AESGCM.generate_key(bit_length=256)
        kek_id = kek_id_of(kek)
        key_file = keys_dir / f"phi-{kek_id}.kek"
        _write_secret(key_file, kek)
        if not _claim(active_file, kek_id):  # a concurrent first start named its key first: use that one
            key_file.unlink()  # ours wrapped nothing yet
            return cls._load(keys_dir, create=False)
        return cls({kek_id: kek}, kek_id, keys_dir)

    def kek(self, kek_id: str) -> bytes | None:
        """The KEK ``kek_id``: from the ring, else from its file (written since, e.g. by a rotation elsewhere)."""
        if kek_id in self.keks:
            return self.keks[kek_id]
        path = self.keys_dir / f"phi-{kek_id}.kek"
        if not path.is_file():
            return None
        kek = _read_kek(path)
        return kek if kek_id_of(kek) == kek_id else None


def _private_tmp(path: Path, text: str, tag: str) -> Path:
    """A complete, fsynced, owner-only (0600) temporary file next to ``path`` holding ``text``."""
    tmp = path.with_name(f"{path.name}.{tag}.tmp")
    with open(tmp, "w") as handle:
        handle.write(text + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(tmp, 0o600)
    return tmp


def _claim(path: Path, text: str) -> bool:
    """Create ``path`` holding ``text`` unless it exists (atomically, content included: a hard link of a
    complete temporary file); False when another process created it first."""
    tmp = _private_tmp(path, text, f"{os.getpid()}.{os.urandom(4).hex()}")
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        tmp.unlink()
    return True


def _replace_text(path: Path, text: str) -> None:
    os.replace(_private_tmp(path, text, str(os.getpid())), path)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _wrap_aad(data_key_id: str) -> bytes:
    return b"knhk-phi-data-key\n" + data_key_id.encode()


def _unwrap(ring: KekRing, data_key_id: str, kek_id: str, wrapped: str) -> bytes:
    kek = ring.kek(kek_id)
    if kek is None:
        raise ConfigurationError(
            f"PHI data key {data_key_id} is wrapped by key {kek_id}, and {ring.keys_dir}/phi-{kek_id}.kek is missing"
        )
    blob = _unb64(wrapped)
    try:
        return AESGCM(kek).decrypt(blob[:12], blob[12:], _wrap_aad(data_key_id))
    except InvalidTag:
        raise IntegrityError(f"PHI data key {data_key_id} does not open with key {kek_id}") from None


def _wrap(ring: KekRing, data_key_id: str, key: bytes, kek_id: str) -> str:
    nonce = os.urandom(12)
    return _b64(nonce + AESGCM(ring.keks[kek_id]).encrypt(nonce, key, _wrap_aad(data_key_id)))


class FieldCipher:
    """Seals and opens PHI field values; which fields are PHI is ``phi_fields`` (sector → field names).

    Open with :meth:`load`, which reads (on first use creates) the installation's data key in a transaction
    of its own and unwraps it; sealing is then pure computation, so it adds no round trip to an ingest.
    """

    def __init__(self, ring: KekRing, phi_fields: Mapping[str, frozenset[str]], data_key_id: str,
                 data_key: bytes) -> None:
        self.ring = ring
        self.phi_fields = dict(phi_fields)
        self.data_key_id = data_key_id
        self._data_keys = {data_key_id: data_key}
        self._subkeys: dict[tuple[str, str], AESGCM] = {}
        self._lock = threading.Lock()

    @classmethod
    def load(cls, db: _Db, ring: KekRing, phi_fields: Mapping[str, frozenset[str]], now_us: int) -> FieldCipher:
        with db.transaction() as conn:
            row = conn.fetchone("SELECT id, kek_id, wrapped FROM data_keys WHERE scope=?", (_SCOPE,))
            if row is None:
                data_key_id = "dk_" + os.urandom(8).hex()
                wrapped = _wrap(ring, data_key_id, AESGCM.generate_key(bit_length=256), ring.active)
                conn.execute("INSERT INTO data_keys (id, scope, kek_id, wrapped, created_us) VALUES (?,?,?,?,?)"
                             " ON CONFLICT (scope) DO NOTHING", (data_key_id, _SCOPE, ring.active, wrapped, now_us))
                row = conn.fetchone("SELECT id, kek_id, wrapped FROM data_keys WHERE scope=?", (_SCOPE,))
            if row is None:
                raise IntegrityError("the PHI data key could not be created")
        data_key_id = str(row[0])
        return cls(ring, phi_fields, data_key_id, _unwrap(ring, data_key_id, str(row[1]), str(row[2])))

    def fields_of(self, sector: str) -> frozenset[str]:
        return self.phi_fields.get(sector, frozenset())

    def _subkey(self, data_key_id: str, scope: str) -> AESGCM:
        """The AES-256-GCM key of one scope (sector and month): HKDF-SHA-256 (RFC 5869) of the data key."""
        cached = self._subkeys.get((data_key_id, scope))
        if cached is None:
            root = self._data_keys.get(data_key_id)
            if root is None:
                raise IntegrityError(f"a PHI value is sealed under data key {data_key_id}, not this installation's")
            derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                           info=b"knhk-phi-scope\n" + scope.encode()).derive(root)
            cached = AESGCM(derived)
            with self._lock:
                self._subkeys[(data_key_id, scope)] = cached
        return cached

    # -- values -----------------------------------------------------------------------------------------
    def seal(self, scope: str, plaintext: bytes, aad: bytes) -> str:
        """``phi1.<data key id>.<scope>.<base64url(nonce ‖ ciphertext ‖ tag)>``."""
        if "." in scope:
            raise InvalidInputError(f"PHI scope {scope!r} must not contain '.'")
        nonce = os.urandom(12)
        sealed = self._subkey(self.data_key_id, scope).encrypt(nonce, plaintext, aad)
        return f"{PREFIX}{self.data_key_id}.{scope}.{_b64(nonce + sealed)}"

    def open(self, token: str, aad: bytes) -> bytes:
        parts = token.split(".")
        if not token.startswith(PREFIX) or len(parts) != 4:
            raise IntegrityError("a PHI field holds no well-formed sealed value")
        _, data_key_id, scope, body = parts
        blob = _unb64(body)
        try:
            return self._subkey(data_key_id, scope).decrypt(blob[:12], blob[12:], aad)
        except InvalidTag:
            raise IntegrityError("a sealed PHI value fails authentication (altered, or moved from another"
                                 " row or field)") from None

    # -- rotation ---------------------------------------------------------------------------------------
    def rotate(self, db: _Db) -> tuple[str, int]:
        """A new KEK: written to its file, every data key re-wrapped in one transaction, then made active.
        Returns the new KEK id and how many data keys were re-wrapped."""
        kek = AESGCM.generate_key(bit_length=256)
        kek_id = kek_id_of(kek)
        _write_secret(self.ring.keys_dir / f"phi-{kek_id}.kek", kek)
        ring = KekRing({**self.ring.keks, kek_id: kek}, self.ring.active, self.ring.keys_dir)
        self.ring = ring
        with db.transaction() as conn:
            rows = conn.fetchall("SELECT id, kek_id, wrapped FROM data_keys ORDER BY id")
            for data_key_id, old_kek, wrapped in rows:
                key = _unwrap(ring, str(data_key_id), str(old_kek), str(wrapped))
                conn.execute("UPDATE data_keys SET kek_id=?, wrapped=? WHERE id=?",
                             (kek_id, _wrap(ring, str(data_key_id), key, kek_id), str(data_key_id)))
        _replace_text(self.ring.keys_dir / _ACTIVE, kek_id)
        self.ring = KekRing(ring.keks, kek_id, ring.keys_dir)
        return kek_id, len(rows)

    def retire(self, db: _Db) -> list[str]:
        """Remove the files of KEKs that no data key is wrapped by any more (never the active one)."""
        with db.connection() as conn:
            used = {str(r[0]) for r in conn.fetchall("SELECT DISTINCT kek_id FROM data_keys")}
        removed = [k for k in self.ring.keks if k not in used and k != self.ring.active]
        for kek_id in removed:
            (self.ring.keys_dir / f"phi-{kek_id}.kek").unlink()
        self.ring = KekRing({k: v for k, v in self.ring.keks.items() if k not in removed}, self.ring.active,
                            self.ring.keys_dir)
        return removed
