"""Opaque cursors for paginated lists: base64url of a small JSON object, never interpreted by clients."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from knhk.errors import UsageError


def encode_cursor(state: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(state)).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> dict[str, Any]:
    if not cursor:
        return {}
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        state = orjson.loads(raw)
    except (binascii.Error, ValueError, orjson.JSONDecodeError) as exc:
        raise UsageError("the cursor is not one this API issued") from exc
    if not isinstance(state, dict):
        raise UsageError("the cursor is not one this API issued")
    return state


def cursor_int(state: dict[str, Any], key: str, default: int) -> int:
    value = state.get(key, default)
    if type(value) is not int or not -1 <= value <= 2**62:
        raise UsageError("the cursor is not one this API issued")
    return value
