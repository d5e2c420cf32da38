"""Ledger signatures are standard RFC 8032 Ed25519, checkable by anyone with any library.

Proves: the RFC 8032 §7.1 TEST 1–3 vectors (seed → public key → signature, byte for byte); our signatures
verify with a second, independent implementation (``cryptography``/OpenSSL) and theirs with ours; the
key id is SPEC §8's; and our verifier rejects everything it must: a flipped bit in message, signature or
key, wrong lengths, a non-canonical S (S + L), small-order and all-zero public keys.
"""

from __future__ import annotations

import hashlib

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from knhk.errors import ConfigurationError, VerificationError
from knhk.proof import signing
from knhk.proof.signing import SigningKey, key_id_of
from knhk.proof.signing import is_valid_signature as verify_signature

# RFC 8032 §7.1, TEST 1, TEST 2, TEST 3: (secret key, public key, message, signature), hex.
RFC8032_VECTORS = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
        "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
        "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
]

L = 2**252 + 27742317777372353535851937790883648493  # order of the Ed25519 base point


@pytest.mark.parametrize(("secret", "public", "message", "signature"), RFC8032_VECTORS)
def test_rfc8032_vectors(secret: str, public: str, message: str, signature: str) -> None:
    key = SigningKey.from_hex(secret)
    assert key.public_key.hex() == public
    assert key.sign(bytes.fromhex(message)).hex() == signature
    assert verify_signature(bytes.fromhex(public), bytes.fromhex(message), bytes.fromhex(signature))
    assert key.key_id == hashlib.sha256(bytes.fromhex(public)).digest()[:8].hex() == key_id_of(key.public_key)


def _their_public(raw: bytes) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(raw)


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.binary(max_size=300))
def test_our_signatures_verify_with_cryptography_and_theirs_with_ours(seed: bytes, message: bytes) -> None:
    ours = SigningKey(seed)
    theirs = Ed25519PrivateKey.from_private_bytes(seed)
    assert theirs.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw) == ours.public_key
    sig = ours.sign(message)
    _their_public(ours.public_key).verify(sig, message)  # raises InvalidSignature if not
    assert sig == theirs.sign(message)  # Ed25519 is deterministic: same key, same message, same bytes
    assert verify_signature(ours.public_key, message, theirs.sign(message))


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.binary(min_size=1, max_size=200), st.data())
def test_any_flipped_bit_is_rejected(seed: bytes, message: bytes, data: st.DataObject) -> None:
    key = SigningKey(seed)
    sig = key.sign(message)
    target = data.draw(st.sampled_from(["message", "signature", "key"]))
    blob = {"message": message, "signature": sig, "key": key.public_key}[target]
    bit = data.draw(st.integers(0, len(blob) * 8 - 1))
    flipped = bytearray(blob)
    flipped[bit // 8] ^= 1 << (bit % 8)
    args = {"message": message, "signature": sig, "key": key.public_key, target: bytes(flipped)}
    assert not verify_signature(args["key"], args["message"], args["signature"])
    if target != "key" or _is_valid_point(args["key"]):
        with pytest.raises(InvalidSignature):
            _their_public(args["key"]).verify(args["signature"], args["message"])


def _is_valid_point(raw: bytes) -> bool:
    try:
        _their_public(raw)
    except ValueError:
        return False
    return True


def test_wrong_lengths_are_rejected_not_crashing() -> None:
    key = SigningKey(bytes(range(32)))
    sig = key.sign(b"m")
    assert verify_signature(key.public_key, b"m", sig)
    for bad_sig in (sig[:63], sig + b"\x00", b"", sig[:32]):
        assert not verify_signature(key.public_key, b"m", bad_sig)
    for bad_key in (key.public_key[:31], key.public_key + b"\x00", b""):
        assert not verify_signature(bad_key, b"m", sig)
    with pytest.raises(ConfigurationError):
        SigningKey(bytes(31))
    with pytest.raises(ConfigurationError):
        SigningKey.from_hex("zz" * 32)


def test_non_canonical_s_is_rejected() -> None:
    """S + L is the same scalar mod L; RFC 8032 §5.1.7 requires rejecting S ≥ L (signature malleability)."""
    key = SigningKey(bytes(32))
    message = b"ledger payload"
    sig = key.sign(message)
    s = int.from_bytes(sig[32:], "little")
    assert s < L
    malleated = sig[:32] + (s + L).to_bytes(32, "little")
    assert not verify_signature(key.public_key, message, malleated)
    with pytest.raises(InvalidSignature):
        _their_public(key.public_key).verify(malleated, message)


# Small-order points of Ed25519 (encodings of the 8-torsion, as in libsodium's blocklist) and their order.
SMALL_ORDER = [
    ("0100000000000000000000000000000000000000000000000000000000000000", 1),  # identity
    ("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", 2),
    ("0000000000000000000000000000000000000000000000000000000000000080", 4),
    ("0000000000000000000000000000000000000000000000000000000000000000", 4),  # all zero
    ("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05", 8),
    ("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a", 8),
]
IDENTITY = bytes.fromhex(SMALL_ORDER[0][0])


@pytest.mark.parametrize(("public_hex", "order"), SMALL_ORDER)
def test_small_order_public_keys_are_rejected(public_hex: str, order: int) -> None:
    """The classic forgery: with a small-order key A, R = identity and S = 0 satisfy [S]B = R + [k]A
    whenever the order of A divides k = SHA-512(R ‖ A ‖ M). Find such a message; a verifier without the
    small-order check would accept the forged signature for it. Ours must not."""
    public = bytes.fromhex(public_hex)
    forged = IDENTITY + bytes(32)
    for i in range(10_000):
        message = f"pay mallory {i}".encode()
        k = int.from_bytes(hashlib.sha512(IDENTITY + public + message).digest(), "little") % L
        if k % order == 0:
            break
    else:  # pragma: no cover - probability 8^-10000
        raise AssertionError("no suitable message found")
    assert not verify_signature(public, message, forged)
    assert not verify_signature(public, b"", bytes(64))


def test_verify_signature_raises_the_one_verification_error() -> None:
    key = SigningKey(bytes(range(32)))
    sig = key.sign(b"m")
    assert signing.verify_signature(key.public_key, b"m", sig) is None
    with pytest.raises(VerificationError, match=f"does not verify with the public key {key.key_id}"):
        signing.verify_signature(key.public_key, b"n", sig)
