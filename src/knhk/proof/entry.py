"""Ledger entries: the payload, its id and its signature, exactly as SPEC §8 defines them.

payload = canonical JSON of ``{v, log, seq, ts_us, sector, kind, subject, outcome, reason, evidence, data,
parent, key_id}``; ``id`` = hex SHA-256(payload); ``sig`` = Ed25519 over the payload bytes. An entry is
written once, by the sequencer, and read back as :class:`Entry`; callers describe what they want recorded
with an :class:`EntryDraft`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from knhk.errors import CanonicalEncodingError, InvalidInputError
from knhk.proof.canonical import MAX_SAFE_INT, canonical_bytes, check_canonical
from knhk.proof.signing import SigningKey

FORMAT_VERSION = 1
LOGS = ("receipts", "audit")
PAYLOAD_FIELDS = frozenset(
    {"v", "log", "seq", "ts_us", "sector", "kind", "subject", "outcome", "reason", "evidence", "data",
     "parent", "key_id"}
)
_KIND = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")
_SECTOR = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_MAX_TEXT = 4096


def check_log(log: str) -> str:
    if log not in LOGS:
        raise InvalidInputError(f"unknown log {log!r}; the logs are {', '.join(LOGS)}")
    return log


@dataclass(frozen=True, slots=True)
class EntryDraft:
    """What a caller asks the ledger to record; seq, time, parent and key are added by the sequencer."""

    log: str
    kind: str
    sector: str | None = None
    subject: str | None = None
    outcome: str = "ok"
    reason: str | None = None
    evidence: Sequence[Any] = ()
    data: Mapping[str, Any] = field(default_factory=dict)
    # '"data":<canonical data>,"evidence":<canonical evidence>', encoded (and so checked) once, here.
    _head: bytes = field(default=b"", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_log(self.log)
        if not _KIND.match(self.kind):
            raise InvalidInputError(f"entry kind {self.kind!r} must look like 'noun.verb' in lowercase")
        if self.sector is not None and not _SECTOR.match(self.sector):
            raise InvalidInputError(f"sector {self.sector!r} must be a lowercase slug")
        for name in ("subject", "outcome", "reason"):
            value = getattr(self, name)
            if value is not None and (type(value) is not str or len(value) > _MAX_TEXT):
                raise InvalidInputError(f"entry {name} must be text of at most {_MAX_TEXT} characters")
            if value is not None:
                check_canonical({name: value})
        if not isinstance(self.evidence, list | tuple):
            raise CanonicalEncodingError("entry evidence must be a list")
        if not isinstance(self.data, dict):
            raise CanonicalEncodingError("entry data must be an object")
        body = canonical_bytes({"data": self.data, "evidence": list(self.evidence)})
        object.__setattr__(self, "_head", body[1:-1])

    def payload(self, seq: int, ts_us: int, parent: str | None, key_id: str) -> dict[str, Any]:
        return {
            "v": FORMAT_VERSION,
            "log": self.log,
            "seq": seq,
            "ts_us": ts_us,
            "sector": self.sector,
            "kind": self.kind,
            "subject": self.subject,
            "outcome": self.outcome,
            "reason": self.reason,
            "evidence": list(self.evidence),
            "data": dict(self.data),
            "parent": parent,
            "key_id": key_id,
        }


@dataclass(frozen=True, slots=True)
class Entry:
    """A stored ledger entry: its payload bytes, id and signature, with the payload fields decoded (read them
    through the typed properties; ``fields`` is the decoded payload as a whole)."""

    payload: bytes
    id: str
    sig: bytes
    fields: Mapping[str, Any]

    @property
    def log(self) -> str:
        return str(self.fields["log"])

    @property
    def seq(self) -> int:
        return int(self.fields["seq"])

    @property
    def ts_us(self) -> int:
        return int(self.fields["ts_us"])

    @property
    def kind(self) -> str:
        return str(self.fields["kind"])

    @property
    def sector(self) -> str | None:
        sector = self.fields["sector"]
        return None if sector is None else str(sector)

    @property
    def subject(self) -> str | None:
        subject = self.fields["subject"]
        return None if subject is None else str(subject)

    @property
    def outcome(self) -> str:
        return str(self.fields["outcome"])

    @property
    def reason(self) -> str | None:
        reason = self.fields["reason"]
        return None if reason is None else str(reason)

    @property
    def evidence(self) -> list[Any]:
        evidence: list[Any] = self.fields["evidence"]
        return evidence

    @property
    def data(self) -> Mapping[str, Any]:
        data: Mapping[str, Any] = self.fields["data"]
        return data

    @property
    def parent(self) -> str | None:
        parent = self.fields["parent"]
        return None if parent is None else str(parent)

    @property
    def key_id(self) -> str:
        return str(self.fields["key_id"])

    def to_json(self) -> dict[str, Any]:
        """All payload fields plus ``id`` and ``sig`` (hex), as in proof bundles and the API."""
        out = dict(self.fields)
        out["id"] = self.id
        out["sig"] = self.sig.hex()
        return out

    @classmethod
    def from_stored(cls, payload: bytes, entry_id: str, sig: bytes) -> Entry:
        return cls(payload, entry_id, sig, orjson.loads(payload))


def entry_id(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def encode_payload(draft: EntryDraft, seq: int, ts_us: int, parent: str | None, key_id: str) -> bytes:
    """The canonical payload of ``draft`` at ``seq`` (SPEC §8), byte-identical to JCS of its fields.

    The payload's keys are ASCII, so JCS orders them as bytes: "data" and "evidence" come first, and
    their canonical encoding was made (and checked) when the draft was created; the remaining fields are
    text the draft validated and integers this function is given, encoded here in sorted order.
    """
    if not (0 <= seq <= MAX_SAFE_INT and 0 <= ts_us <= MAX_SAFE_INT):
        raise CanonicalEncodingError(f"seq {seq} or ts_us {ts_us} is outside the ledger's integer range")
    tail = orjson.dumps(
        {"key_id": key_id, "kind": draft.kind, "log": draft.log, "outcome": draft.outcome, "parent": parent,
         "reason": draft.reason, "sector": draft.sector, "seq": seq, "subject": draft.subject, "ts_us": ts_us,
         "v": FORMAT_VERSION},
        option=orjson.OPT_SORT_KEYS,
    )
    return b"{" + draft._head + b"," + tail[1:]


def seal(draft: EntryDraft, seq: int, ts_us: int, parent: str | None, key: SigningKey) -> Entry:
    """Build the canonical payload of ``draft`` at ``seq`` and sign it."""
    payload = encode_payload(draft, seq, ts_us, parent, key.key_id)
    return Entry(payload, entry_id(payload), key.sign(payload), orjson.loads(payload))


def payload_from_json(entry: Mapping[str, Any]) -> bytes:
    """Re-encode the payload of an entry given as JSON (payload fields plus id and sig)."""
    missing = PAYLOAD_FIELDS - entry.keys()
    if missing:
        raise CanonicalEncodingError(f"entry lacks payload fields: {', '.join(sorted(missing))}")
    extra = set(entry.keys()) - PAYLOAD_FIELDS - {"id", "sig"}
    if extra:
        raise CanonicalEncodingError(f"entry has unknown fields: {', '.join(sorted(extra))}")
    return canonical_bytes({k: entry[k] for k in PAYLOAD_FIELDS})
