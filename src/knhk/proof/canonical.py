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


class _Refusal(Exception):
    """Raised inside the walk; the path is collected while it unwinds (no path strings on the happy path)."""

    def __init__(self, reason: str, part: str = "") -> None:
        self.reason = reason
        self.parts = [part] if part else []


def _utf8_problem(text: str) -> str | None:
    """None when ``text`` can be UTF-8 (no lone surrogates), else why not."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"string contains a lone surrogate (U+{ord(text[exc.start]):04X}) and cannot be UTF-8"
    return None


def _scalar_problem(item: Any, kind: type) -> str | None:
    """Why a non-container value is outside the domain (None when it is inside)."""
    if kind is str:
        return None if item.isascii() else _utf8_problem(item)
    if kind is int:
        return None if -MAX_SAFE_INT <= item <= MAX_SAFE_INT else f"integer {item} is outside ±(2^53 − 1)"
    if kind is bool or item is None:
        return None
    if kind is float:
        return f"floats are not allowed in ledger JSON ({item!r})"
    return f"values of type {kind.__name__} are not allowed in ledger JSON"


def _walk(value: Any, depth: int) -> bool:
    """Validate a dict/list/tuple; True when some object key needs JCS (UTF-16) ordering."""
    if depth >= _MAX_DEPTH and value:
        raise _Refusal(f"nesting deeper than {_MAX_DEPTH} levels")
    needs_utf16 = False
    if type(value) is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise _Refusal(f"object key {key!r} is not a string")
            if not key.isascii():
                problem = _utf8_problem(key)
                if problem:
                    raise _Refusal(problem, f" (key {key!r})")
                if any(ord(ch) > 0xFFFF for ch in key):
                    needs_utf16 = True
            kind = type(item)
            if kind is dict or kind is list or kind is tuple:
                try:
                    if _walk(item, depth + 1):
                        needs_utf16 = True
                except _Refusal as refusal:
                    refusal.parts.append(f".{key}")
                    raise
            elif kind is not str or not item.isascii():
                problem = _scalar_problem(item, kind)
                if problem:
                    raise _Refusal(problem, f".{key}")
        return needs_utf16
    for index, item in enumerate(value):
        kind = type(item)
        if kind is dict or kind is list or kind is tuple:
            try:
                if _walk(item, depth + 1):
                    needs_utf16 = True
            except _Refusal as refusal:
                refusal.parts.append(f"[{index}]")
                raise
        elif kind is not str or not item.isascii():
            problem = _scalar_problem(item, kind)
            if problem:
                raise _Refusal(problem, f"[{index}]")
    return needs_utf16


def _check(value: Any) -> bool:
    """Validate ``value``; return True when some object key needs JCS (UTF-16) ordering."""
    kind = type(value)
    if kind is dict or kind is list or kind is tuple:
        try:
            return _walk(value, 0)
        except _Refusal as refusal:
            raise CanonicalEncodingError(f"${''.join(reversed(refusal.parts))}: {refusal.reason}") from None
    problem = _scalar_problem(value, kind)
    if problem:
        raise CanonicalEncodingError(f"$: {problem}")
    return False


def check_canonical(value: Any) -> None:
    """Raise :class:`CanonicalEncodingError` unless ``value`` lies in the canonical domain."""
    _check(value)


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
    if _check(value):
        return _encode_jcs(value)
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError as exc:  # not expected after the walk; kept as a safety net
        raise CanonicalEncodingError(f"value cannot be encoded as UTF-8 JSON: {exc}") from exc


# -- checking stored bytes ------------------------------------------------------------------------------------
_STRICT = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER


def is_canonical(payload: bytes, decoded: Any) -> bool:
    """Is ``payload`` exactly the canonical encoding of ``decoded`` (what ``orjson.loads(payload)`` gave)?

    False for anything outside the domain (a float, an integer beyond ±(2^53 − 1), too deep) and for any
    other spelling of the same value (whitespace, key order, escapes, number forms).

    The verifier calls this once per entry, so the common case is checked on the bytes without walking the
    value. When ``payload`` is ASCII without a backslash, splitting it at ``"`` leaves the text outside
    strings at the even positions: there a canonical payload holds only structure, integers and the literals
    (so a ``.``, an ``E`` or an ``e`` not in ``true``/``false`` is a fraction or an exponent: not canonical);
    its keys are ASCII, so JCS order is orjson's code-point order; and it has fewer containers than the depth
    limit. What is left, integers beyond ±(2^53 − 1), ``OPT_STRICT_INTEGER`` refuses, and the bytes must
    then equal orjson's sorted encoding, which is :func:`canonical_bytes` on this domain. Any other payload
    (non-ASCII text, escapes, deep nesting) takes the full check.
    """
    if payload.isascii() and b"\\" not in payload:
        outside = b"".join(payload.split(b'"')[::2])
        if outside.count(b"[") + outside.count(b"{") < _MAX_DEPTH:
            if b"." in outside or b"E" in outside or \
                    outside.count(b"e") != outside.count(b"true") + outside.count(b"false"):
                return False
            try:
                return orjson.dumps(decoded, option=_STRICT) == payload
            except orjson.JSONEncodeError:
                return False
    try:
        return canonical_bytes(decoded) == payload
    except CanonicalEncodingError:
        return False
