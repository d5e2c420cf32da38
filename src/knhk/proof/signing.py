"""Ed25519 signing keys for the ledger (RFC 8032, via libsodium/PyNaCl).

``key_id`` = hex of the first 8 bytes of SHA-256(raw 32-byte public key) (SPEC §8). Private keys are held
as 32-byte seeds; their text form is hex. Nothing here ever formats a seed into a string other than when
writing a key file, and key objects have a ``repr`` that shows only the key id.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import nacl.bindings
import nacl.exceptions
import nacl.signing

from knhk.errors import ConfigurationError, VerificationError

PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64


def key_id_of(public_key: bytes) -> str:
    """The SPEC §8 key id of a raw Ed25519 public key."""
    return hashlib.sha256(public_key).digest()[:8].hex()


class SigningKey:
    """An Ed25519 private key with its public half and key id."""

    __slots__ = ("_secret", "key_id", "public_key")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise ConfigurationError("an Ed25519 seed is exactly 32 bytes")
        public, secret = nacl.bindings.crypto_sign_seed_keypair(seed)
        self._secret = secret
        self.public_key: bytes = public
        self.key_id: str = key_id_of(public)

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(os.urandom(32))

    @classmethod
    def from_hex(cls, text: str) -> SigningKey:
        try:
            seed = bytes.fromhex(text.strip())
        except ValueError as exc:
            raise ConfigurationError("signing key is not hex text") from exc
        return cls(seed)

    def sign(self, message: bytes) -> bytes:
        """Detached 64-byte signature over ``message``."""
        return nacl.bindings.crypto_sign(message, self._secret)[:SIGNATURE_SIZE]

    def seed_hex(self) -> str:
        return nacl.bindings.crypto_sign_ed25519_sk_to_seed(self._secret).hex()

    def __repr__(self) -> str:
        return f"SigningKey(key_id={self.key_id!r})"


def is_valid_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is a valid RFC 8032 Ed25519 signature of ``message`` by ``public_key``."""
    if len(signature) != SIGNATURE_SIZE or len(public_key) != PUBLIC_KEY_SIZE:
        return False
    try:
        nacl.bindings.crypto_sign_open(signature + message, public_key)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError, TypeError):
        return False
    return True


def verify_signature(public_key: bytes, message: bytes, signature: bytes, what: str = "signature") -> None:
    """Raise :class:`VerificationError` unless ``signature`` is ``public_key``'s Ed25519 signature of ``message``."""
    if not is_valid_signature(public_key, message, signature):
        raise VerificationError(f"{what} does not verify with the public key {key_id_of(public_key)}")


@dataclass(frozen=True)
class PublicKey:
    """A keyring entry: public key, its id, when it was created and (if so) retired."""

    key_id: str
    public_key: bytes
    created_us: int
    retired_us: int | None = None


def write_key_file(path: Path, key: SigningKey) -> None:
    """Write a private key file readable by its owner only (0600), never overwriting."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key.seed_hex() + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_key_file(path: Path) -> SigningKey:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigurationError(f"cannot read signing key file {path}: {exc.strerror}") from exc
    return SigningKey.from_hex(text)
