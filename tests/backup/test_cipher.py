"""The backup stream cipher (AES-256-GCM in chunks): any plaintext length round-trips, and every cut, flip,
reorder, drop, append or wrong key is refused with IntegrityError — never silently shortened output."""

from __future__ import annotations

import io
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from knhk.backup import cipher
from knhk.errors import IntegrityError

KEY = bytes(range(32))
CHUNK = 1024
SEALED = CHUNK + cipher.TAG_BYTES


def _seal(plain: bytes) -> bytes:
    out = io.BytesIO()
    cipher.encrypt_stream(KEY, io.BytesIO(plain), out, chunk_bytes=CHUNK)
    return out.getvalue()


def _open(sealed: bytes, key: bytes = KEY) -> bytes:
    out = io.BytesIO()
    cipher.decrypt_stream(key, io.BytesIO(sealed), out, "backup.enc")
    return out.getvalue()


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=5 * CHUNK + 3))
def test_any_length_round_trips(n: int) -> None:
    plain = os.urandom(n)
    assert _open(_seal(plain)) == plain


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=CHUNK, max_value=4 * CHUNK), st.data())
def test_every_cut_and_flip_is_refused(n: int, data: st.DataObject) -> None:
    sealed = _seal(os.urandom(n))
    cut = data.draw(st.integers(min_value=0, max_value=len(sealed) - 1))
    with pytest.raises(IntegrityError):
        _open(sealed[:cut])
    flip = data.draw(st.integers(min_value=0, max_value=len(sealed) - 1))
    damaged = bytearray(sealed)
    damaged[flip] ^= 1
    with pytest.raises(IntegrityError):
        _open(bytes(damaged))


def test_chunk_boundary_cut_reorder_drop_append_and_wrong_key() -> None:
    sealed = _seal(os.urandom(3 * CHUNK + 10))
    header, body = sealed[:cipher.HEADER_BYTES], sealed[cipher.HEADER_BYTES:]
    chunks = [body[i:i + SEALED] for i in range(0, len(body), SEALED)]
    assert len(chunks) == 4
    with pytest.raises(IntegrityError, match="truncated: it ends after chunk 1"):
        _open(header + b"".join(chunks[:2]))
    with pytest.raises(IntegrityError, match="chunk 1 fails authentication"):
        _open(header + chunks[0] + chunks[2] + chunks[1] + chunks[3])
    with pytest.raises(IntegrityError, match="fails authentication"):
        _open(header + chunks[0] + chunks[2] + chunks[3])
    with pytest.raises(IntegrityError, match="fails authentication"):
        _open(sealed + chunks[3])
    with pytest.raises(IntegrityError, match="not a KNHK encrypted backup file"):
        _open(b"SQLite format 3\x00" + sealed[16:])
    other = os.urandom(32)
    with pytest.raises(IntegrityError, match=f"the configured key is {cipher.key_id_of(other)}"):
        _open(sealed, other)
