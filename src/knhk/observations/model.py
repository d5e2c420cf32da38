"""The observation as KNHK stores it, and the parser that turns raw JSON into one (SPEC §2).

An observation is ``{id?, event_type, sector, timestamp?, value?, metadata?}``:

- ``id``: a client-chosen idempotency key (1–128 of ``[A-Za-z0-9_.:-]``) or, when absent, a server-assigned
  UUIDv7 string.
- ``event_type``: 1–128 of ``[A-Za-z0-9_.:-]``; ``sector``: a lowercase slug ``^[a-z][a-z0-9-]{0,62}$``.
- ``timestamp``: RFC 3339 with a UTC offset (``Z`` or ``±hh:mm``); when absent, the receipt time. Stored as
  microseconds since the epoch.
- ``value``: a JSON object (default ``{}``) of at most 64 KiB when encoded; floats are allowed (unlike the
  ledger), NaN and infinities are not, integers must fit in 64 signed bits.
- ``metadata``: a string → string map (default ``{}``): at most 64 keys of 1–128 characters, values of at most
  1,024 characters.

Unknown top-level keys are refused. Clock skew is judged against the server's clock: |timestamp − now| ≤ 5 s is
accepted, ≤ 60 s is accepted and flagged ``skewed``, more is rejected (:func:`check_skew`).

The content hash is SHA-256 over the sorted-key JSON of ``{event_type, sector, timestamp, value, metadata}``
where ``timestamp`` is the client's timestamp in microseconds, or ``null`` when the client sent none (the
receipt time is then not part of the content, so a retry without a timestamp is recognised as identical).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import uuid_utils
from typing_extensions import TypedDict

from knhk.errors import InvalidInputError, PayloadTooLargeError, UsageError
from knhk.ops.clock import format_rfc3339

MAX_VALUE_BYTES = 64 * 1024
MAX_METADATA_KEYS = 64
MAX_METADATA_KEY_CHARS = 128
MAX_METADATA_VALUE_CHARS = 1024
MAX_DEPTH = 64
SKEW_FLAG_US = 5_000_000
SKEW_LIMIT_US = 60_000_000
FIELDS = frozenset({"id", "event_type", "sector", "timestamp", "value", "metadata"})

_TOKEN = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
_SECTOR = re.compile(r"[a-z][a-z0-9-]{0,62}")
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})")
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)

Conform = Callable[[str, Mapping[str, Any]], tuple[str, ...]]


class ObservationView(TypedDict):
    """An observation as the API and the CLI show it (:meth:`Observation.to_json`; the API's response model)."""

    id: str
    seq: int | None
    event_type: str
    sector: str
    timestamp: str
    received_at: str
    value: dict[str, Any]
    metadata: dict[str, str]
    conforming: bool
    issues: list[str]
    skewed: bool
    client_id: bool
    content_hash: str


@dataclass(frozen=True, slots=True)
class Observation:
    """One stored (or about to be stored) observation."""

    id: str
    event_type: str
    sector: str
    ts_us: int
    received_us: int
    value: Mapping[str, Any]
    metadata: Mapping[str, str]
    content_hash: str
    client_id: bool = False  # the id was chosen by the client (an idempotency key)
    ts_defaulted: bool = False  # the client sent no timestamp; ts_us is the receipt time
    skewed: bool = False
    conforming: bool = True
    issues: tuple[str, ...] = ()
    client: str | None = None  # who ingested it (a pseudonym or service name), when known
    seq: int | None = None  # the ingest sequence number, assigned by the store
    value_json: bytes = field(default=b"", repr=False, compare=False)

    @property
    def is_error(self) -> bool:
        """An error event for the error-spike detector: the type mentions ``error`` or ``level=error``."""
        return "error" in self.event_type.lower() or self.metadata.get("level", "").lower() == "error"

    def to_json(self) -> ObservationView:
        """The observation as the API and CLI show it."""
        return {
            "id": self.id,
            "seq": self.seq,
            "event_type": self.event_type,
            "sector": self.sector,
            "timestamp": format_rfc3339(self.ts_us),
            "received_at": format_rfc3339(self.received_us),
            "value": dict(self.value),
            "metadata": dict(self.metadata),
            "conforming": self.conforming,
            "issues": list(self.issues),
            "skewed": self.skewed,
            "client_id": self.client_id,
            "content_hash": self.content_hash,
        }

    def with_seq(self, seq: int) -> Observation:
        """The same observation with its ingest sequence number."""
        return Observation(self.id, self.event_type, self.sector, self.ts_us, self.received_us, self.value,
                           self.metadata, self.content_hash, self.client_id, self.ts_defaulted, self.skewed,
                           self.conforming, self.issues, self.client, seq, self.value_json)


def assign_seq(obs: Observation, seq: int) -> None:
    """Give a just-stored observation its ingest sequence number in place. Only for the ingest's own new
    objects, before anyone else holds them (an observation is otherwise immutable; :meth:`Observation.with_seq`
    copies): a batch of 10,000 then costs no second object per item."""
    object.__setattr__(obs, "seq", seq)


def new_id() -> str:
    """A server-assigned observation id: a UUIDv7 string (time-ordered)."""
    return str(uuid_utils.uuid7())


def content_hash(event_type: str, sector: str, client_ts_us: int | None, value: Mapping[str, Any],
                 metadata: Mapping[str, str]) -> str:
    doc = {"event_type": event_type, "sector": sector, "timestamp": client_ts_us, "value": value,
           "metadata": metadata}
    return hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()


def parse_observation(raw: Any, *, received_us: int, client: str | None = None,
                      conform: Conform | None = None) -> Observation:
    """Validate one raw observation (as decoded from JSON) and build it.

    ``conform(event_type, value)`` gives its conformance issues (none when omitted). The timestamp is flagged
    ``skewed`` when it is more than 5 s off ``received_us``; rejecting one more than 60 s off is left to
    :func:`check_skew`, because a stored observation sent again is a duplicate however late it comes.
    Raises :class:`UsageError` for a non-object, :class:`PayloadTooLargeError` for a value or metadata over
    its size limit, and :class:`InvalidInputError` naming the field and the rule for anything else.
    """
    if not isinstance(raw, dict):
        raise UsageError(f"an observation must be a JSON object, not {_json_kind(raw)}")
    if not FIELDS.issuperset(raw):
        unknown = sorted(str(k) for k in raw if k not in FIELDS)
        raise InvalidInputError(
            f"unknown field(s) {', '.join(unknown)}; an observation has only {', '.join(sorted(FIELDS))}",
            field=unknown[0],
        )
    event_type = _token(raw.get("event_type"), "event_type", required=True)
    sector = raw.get("sector")
    if not isinstance(sector, str) or not _SECTOR.fullmatch(sector):
        raise InvalidInputError(
            "sector is required and must be a lowercase slug (a letter, then up to 62 of a-z, 0-9, '-'),"
            f" got {_show(sector)}", field="sector")
    client_id = raw.get("id") is not None
    obs_id = _token(raw["id"], "id", required=False) if client_id else new_id()
    client_ts = _timestamp(raw.get("timestamp"))
    value, value_json = _value(raw.get("value"))
    metadata = _metadata(raw.get("metadata"))
    issues = () if conform is None else conform(event_type, value)
    # positional, in field order (a batch builds thousands; keywords cost a frozen dataclass's __init__ more)
    return Observation(
        obs_id,  # id
        event_type,
        sector,
        received_us if client_ts is None else client_ts,  # ts_us
        received_us,
        value,
        metadata,
        content_hash(event_type, sector, client_ts, value, metadata),
        client_id,
        client_ts is None,  # ts_defaulted
        client_ts is not None and abs(client_ts - received_us) > SKEW_FLAG_US,  # skewed
        not issues,  # conforming
        issues,
        client,
        None,  # seq
        value_json,
    )


def is_sector(text: str) -> bool:
    return _SECTOR.fullmatch(text) is not None


def parse_timestamp(text: str) -> int | None:
    """Microseconds of an RFC 3339 timestamp with offset, or None when ``text`` is not one."""
    if not _RFC3339.fullmatch(text):
        return None
    try:
        parsed = datetime.fromisoformat(text.upper())
    except ValueError:
        return None
    return (parsed - _EPOCH) // _ONE_US


def check_skew(ts_us: int, now_us: int) -> bool:
    """Apply the clock-skew policy; return whether the timestamp is flagged ``skewed``."""
    skew = ts_us - now_us
    if abs(skew) <= SKEW_FLAG_US:
        return False
    if abs(skew) <= SKEW_LIMIT_US:
        return True
    direction = "ahead of" if skew > 0 else "behind"
    hint = "" if skew > 0 else "; recorded data is ingested with knhk ingest --backfill"
    raise InvalidInputError(
        f"timestamp {format_rfc3339(ts_us)} is {_duration(abs(skew))} {direction} the server's clock"
        f" ({format_rfc3339(now_us)}); the limit is {SKEW_LIMIT_US // 1_000_000} s{hint}", field="timestamp")


def _duration(us: int) -> str:
    """``60.000001 s`` below two minutes (exact near the limit), else the two largest non-zero units (``9 d 10 h``,
    ``4 min 5 s``)."""
    if us < 120_000_000:
        return f"{us / 1e6:.6f}".rstrip("0").rstrip(".") + " s"
    whole, parts = us // 1_000_000, []
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60), ("s", 1)):
        count, whole = divmod(whole, size)
        if count:
            parts.append(f"{count} {unit}")
    return " ".join(parts[:2])


# -- field rules ------------------------------------------------------------------------------------------
def _token(value: Any, name: str, *, required: bool) -> str:
    if not isinstance(value, str) or not _TOKEN.fullmatch(value):
        rule = "is required and must be" if required else "must be"
        raise InvalidInputError(
            f"{name} {rule} 1 to 128 characters of A-Z a-z 0-9 _ . : -, got {_show(value)}", field=name)
    return value


def _timestamp(value: Any) -> int | None:
    if value is None:
        return None
    parsed = parse_timestamp(value) if isinstance(value, str) else None
    if parsed is None:
        raise InvalidInputError(
            "timestamp must be a valid RFC 3339 date-time with a UTC offset, e.g. 2024-05-01T12:00:00Z,"
            f" got {_show(value)}", field="timestamp")
    return parsed


def _value(value: Any) -> tuple[dict[str, Any], bytes]:
    if value is None:
        return {}, b"{}"
    if not isinstance(value, dict):
        raise InvalidInputError(f"value must be a JSON object, not {_json_kind(value)}", field="value")
    if not _clean(value, 0):  # something to refuse (or too deep to vouch for): the full walk names it
        _check_json(value, "value", 0)
    encoded = orjson.dumps(value)
    if len(encoded) > MAX_VALUE_BYTES:
        raise PayloadTooLargeError(
            f"value is {len(encoded)} bytes when encoded; the limit is {MAX_VALUE_BYTES} bytes (64 KiB)",
            field="value")
    return value, encoded


def _clean(value: dict[str, Any] | list[Any], depth: int) -> bool:
    """Whether :func:`_check_json` accepts the container ``value`` at ``depth``, found without a call per scalar
    or a path per item (a batch checks thousands of values); False may also mean "ask :func:`_check_json`"."""
    if depth >= MAX_DEPTH:
        return False
    for key, item in value.items() if type(value) is dict else enumerate(value):
        if type(key) is not str and type(value) is dict:
            return False
        kind = type(item)
        if kind is str or kind is bool or item is None:
            continue
        if kind is int:
            if not _INT_MIN <= item <= _INT_MAX:
                return False
        elif kind is float:
            if not math.isfinite(item):
                return False
        elif kind is dict or kind is list:
            if not _clean(item, depth + 1):
                return False
        else:
            return False
    return True


def _check_json(value: Any, path: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise InvalidInputError(f"{path}: nested deeper than {MAX_DEPTH} levels", field="value")
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return
    if kind is int:
        if not _INT_MIN <= value <= _INT_MAX:
            raise InvalidInputError(f"{path}: integer {value} does not fit in 64 signed bits", field="value")
        return
    if kind is float:
        if not math.isfinite(value):
            raise InvalidInputError(f"{path}: {value!r} is not a JSON number", field="value")
        return
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise InvalidInputError(f"{path}: key {key!r} is not a string", field="value")
            _check_json(item, f"{path}.{key}", depth + 1)
        return
    if kind is list:
        for index, item in enumerate(value):
            _check_json(item, f"{path}[{index}]", depth + 1)
        return
    raise InvalidInputError(f"{path}: a {kind.__name__} is not a JSON value", field="value")


def _metadata(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInputError(f"metadata must be an object of strings, not {_json_kind(value)}",
                                field="metadata")
    if len(value) > MAX_METADATA_KEYS:
        raise PayloadTooLargeError(f"metadata has {len(value)} keys; the limit is {MAX_METADATA_KEYS}",
                                   field="metadata")
    for key, item in value.items():
        if not isinstance(key, str) or not 1 <= len(key) <= MAX_METADATA_KEY_CHARS:
            raise InvalidInputError(
                f"metadata keys must be 1 to {MAX_METADATA_KEY_CHARS} characters, got {_show(key)}",
                field="metadata")
        if not isinstance(item, str):
            raise InvalidInputError(f"metadata.{key} must be a string, not {_json_kind(item)}",
                                    field="metadata")
        if len(item) > MAX_METADATA_VALUE_CHARS:
            raise PayloadTooLargeError(
                f"metadata.{key} has {len(item)} characters; the limit is {MAX_METADATA_VALUE_CHARS}",
                field="metadata")
    return dict(value)


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    return _json_kind(value)
