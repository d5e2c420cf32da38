"""Strict JSON input: what KNHK accepts as a JSON document from outside (HTTP bodies, JSON-lines files).

RFC 8259 JSON restricted as I-JSON (RFC 7493) requires where a ledger must not guess:

- UTF-8 only, no byte-order mark (RFC 8259 §8.1);
- no duplicate member names in any object (RFC 7493 §2.3): ``{"a": 1, "a": 2}`` is ambiguous, and which value
  a reader keeps differs between parsers, so it is refused naming the key instead of "last one wins";
- no lone UTF-16 surrogate escapes in strings (RFC 7493 §2.1): ``"\\ud800"`` names no character and cannot be
  encoded as UTF-8, the form everything downstream (storage, canonical ledger JSON) uses;
- no ``NaN`` / ``Infinity`` literals and no number that overflows a double (``1e400``), which are not JSON;
- nesting at most 1,024 levels deep.

orjson checks all of that except duplicates in one fast pass; duplicates are then found by the standard
library's parser with a pair hook, whose result (integers kept exact) is returned.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

from knhk.errors import UsageError


class JsonInputError(UsageError):
    """The input is not strict JSON; ``details`` may name the duplicated ``key``."""


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return out


_POSITION = re.compile(r": line \d+ column \d+ \(char \d+\)$")


def _explain(exc: orjson.JSONDecodeError) -> str:
    message = _POSITION.sub("", str(exc))
    if "not valid UTF-8" in message:
        return "it is not UTF-8 text"
    if "surrogate in string" in message:
        return f"a string holds a lone UTF-16 surrogate escape, which is no character ({message})"
    return message


def loads_strict(data: bytes | str, *, what: str = "the request body") -> Any:
    """Parse one strict JSON document, or raise :class:`JsonInputError` saying what is wrong with it."""
    try:
        orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise JsonInputError(f"{what} is not valid JSON: {_explain(exc)}", position=exc.pos) from None
    try:
        return json.loads(data, object_pairs_hook=_object)
    except _DuplicateKey as exc:
        raise JsonInputError(f"{what} is ambiguous JSON: duplicate key {exc.key!r} in one object", key=exc.key) \
            from None
    except (ValueError, RecursionError) as exc:  # orjson accepted it; never expected, never a 500
        raise JsonInputError(f"{what} is not valid JSON: {exc}") from None
