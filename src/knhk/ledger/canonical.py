"""Canonical JSON for ledger payloads (SPEC §8), byte-identical to RFC 8785 (JCS) on its domain.

The domain is deliberately small: ``str``, ``int`` within ±(2^53 − 1), ``bool``, ``None``, ``list`` (or
tuple) and ``dict`` with ``str`` keys. Floats, NaN, bytes, big integers, non-string keys and anything else are
refused with :class:`~knhk.errors.CanonicalEncodingError` naming the offending path. On that domain the
sorted, compact output of orjson equals JCS, except for key order when keys contain characters outside the
Basic Multilingual Plane (JCS orders keys by UTF-16 code units, orjson by code points); those rare objects
are encoded by a small JCS-ordering encoder instead.
"""

from __future__ import annotations

from typing import Any

import orjson

from knhk.errors import CanonicalEncodingError

MAX_SAFE_INT = 2**53 - 1
_MAX_DEPTH = 64


def _check_utf8(text: str, path: str) -> None:
    """Refuse strings that are not valid Unicode scalar sequences (lone surrogates cannot be UTF-8)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CanonicalEncodingError(
            f"{path}: string contains a lone surrogate (U+{ord(text[exc.start]):04X}) and cannot be UTF-8"
        ) from None


def _check(value: Any, path: str, depth: int) -> bool:
    """Validate ``value``; return True when some object key needs JCS (UTF-16) ordering."""
    if depth > _MAX_DEPTH:
        raise CanonicalEncodingError(f"{path}: nesting deeper than {_MAX_DEPTH} levels")
    kind = type(value)
    if kind is str:
        if not value.isascii():
            _check_utf8(value, path)
        return False
    if kind is bool or value is None:
        return False
    if kind is int:
        if -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            return False
        raise CanonicalEncodingError(f"{path}: integer {value} is outside ±(2^53 − 1)")
    if kind is dict:
        needs_utf16 = False
        for key, item in value.items():
            if type(key) is not str:
                raise CanonicalEncodingError(f"{path}: object key {key!r} is not a string")
            if not key.isascii():
                _check_utf8(key, f"{path} (key {key!r})")
                if any(ord(ch) > 0xFFFF for ch in key):
                    needs_utf16 = True
            if _check(item, f"{path}.{key}", depth + 1):
                needs_utf16 = True
        return needs_utf16
    if kind is list or kind is tuple:
        needs_utf16 = False
        for index, item in enumerate(value):
            if _check(item, f"{path}[{index}]", depth + 1):
                needs_utf16 = True
        return needs_utf16
    if kind is float:
        raise CanonicalEncodingError(f"{path}: floats are not allowed in ledger JSON ({value!r})")
    raise CanonicalEncodingError(f"{path}: values of type {kind.__name__} are not allowed in ledger JSON")


def check_canonical(value: Any) -> None:
    """Raise :class:`CanonicalEncodingError` unless ``value`` lies in the canonical domain."""
    _check(value, "$", 0)


def _encode_jcs(value: Any) -> bytes:
    if type(value) is dict:
        items = sorted(value.items(), key=lambda kv: kv[0].encode("utf-16-be"))
        inner = b",".join(orjson.dumps(k) + b":" + _encode_jcs(v) for k, v in items)
        return b"{" + inner + b"}"
    if type(value) in (list, tuple):
        return b"[" + b",".join(_encode_jcs(v) for v in value) + b"]"
    return orjson.dumps(value)


def canonical_bytes(value: Any) -> bytes:
    """Encode ``value`` as canonical JSON (UTF-8, sorted keys, no whitespace)."""
    try:
        if _check(value, "$", 0):
            return _encode_jcs(value)
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError as exc:  # e.g. a lone surrogate in a string
        raise CanonicalEncodingError(f"value cannot be encoded as UTF-8 JSON: {exc}") from exc
