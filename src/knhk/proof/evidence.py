"""Evidence commitments (SPEC §8): a receipt commits to *all* the observations it rests on.

A receipt's ``evidence`` lists observation ids; there may be far more of them than a receipt should carry, so
the receipt holds a bounded sample (at most :data:`SAMPLE` ids) and its ``data`` carries

- ``evidence_count``: the exact number of distinct observations;
- ``evidence_truncated``: whether ``evidence`` is only a sample (``evidence_count`` > its length);
- ``evidence_root``: the hex RFC 9162 Merkle Tree Hash (§2.1, the ledger's own :mod:`knhk.proof.merkle`
  hashing: leaf SHA-256(0x00 ‖ d), node SHA-256(0x01 ‖ l ‖ r)) over one leaf per observation, the leaves
  ordered by observation id (bytewise);
- ``evidence_scheme``: :data:`SCHEME`, naming this leaf format.

A leaf is the UTF-8 text ``"<observation id> <content hash>"`` (an id never holds a space; the content hash is
the observation's own SHA-256 over its content, :func:`knhk.observations.model.content_hash`). So the root
commits to every id *and* to every observation's content: an observation row edited after the fact no longer
hashes to the committed root. ``knhk receipts evidence SEQ`` recomputes it from the store.

When the evidence is truncated, the full member list is kept in the store as an *evidence set* keyed by its
root (content-addressed, append-only), encoded by :func:`encode_members`: the members' ingest sequence numbers
as zlib-compressed ascending deltas (``seq-delta-zlib``), or their ids when a sequence number is unknown
(``id-zlib``). The set only locates the members; the root alone decides whether they are intact.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from knhk.errors import VerificationError
from knhk.proof.merkle import EMPTY_ROOT, leaf_hash

SAMPLE = 100
SCHEME = "rfc9162-sha256/obs-id-content-v1"
ENC_SEQS = "seq-delta-zlib"
ENC_IDS = "id-zlib"
_ZLIB_MAX = 64 * 1024 * 1024


#: one observation a receipt rests on: (id, leaf hash (:func:`evidence_leaf`), ingest seq or None) — a plain
#: tuple, because a pattern may rest on a whole 100k-observation window
EvidenceItem = tuple[str, bytes, int | None]


def leaf_payload(obs_id: str, content_hash: str) -> bytes:
    return f"{obs_id} {content_hash}".encode()


def evidence_leaf(obs_id: str, content_hash: str) -> bytes:
    """The RFC 9162 leaf hash of one observation (computed once, when the observation is first seen)."""
    return leaf_hash(leaf_payload(obs_id, content_hash))


def item(obs_id: str, content_hash: str, seq: int | None = None) -> EvidenceItem:
    return (obs_id, evidence_leaf(obs_id, content_hash), seq)


def merkle_root(leaf_hashes: Sequence[bytes]) -> bytes:
    """RFC 9162 MTH of the leaf hashes, bottom-up (pair left to right; an unpaired last node moves up as it
    is), which equals the recursive definition of :func:`knhk.proof.merkle.mth` in O(n) without slicing."""
    if not leaf_hashes:
        return EMPTY_ROOT
    level = list(leaf_hashes)
    sha = hashlib.sha256
    while len(level) > 1:
        odd = level[-1] if len(level) % 2 else None
        pairs = iter(level)
        # RFC 9162 node hash (knhk.proof.merkle.node_hash) inlined; zip pairs consecutive nodes
        level = [sha(b"\x01" + left + right).digest() for left, right in zip(pairs, pairs, strict=False)]
        if odd is not None:
            level.append(odd)
    return level[0]


def evidence_root(items: Iterable[tuple[str, str]]) -> str:
    """The hex root over (observation id, content hash) pairs (any order; distinct ids)."""
    return merkle_root([leaf_hash(leaf_payload(i, h)) for i, h in sorted(items)]).hex()


@dataclass(frozen=True)
class Commitment:
    """What a receipt carries about its evidence."""

    sample: tuple[str, ...]
    count: int
    root: str
    members: tuple[EvidenceItem, ...]

    @property
    def truncated(self) -> bool:
        return self.count > len(self.sample)

    def data(self) -> dict[str, Any]:
        """The receipt ``data`` members of the commitment (canonical JSON)."""
        return {"evidence_count": self.count, "evidence_truncated": self.truncated, "evidence_root": self.root,
                "evidence_scheme": SCHEME}


def commit(items: Iterable[EvidenceItem], *, sample_from: Sequence[str] | None = None,
           limit: int = SAMPLE) -> Commitment:
    """The commitment to ``items`` (repeats of an id count once). The sample is the last ``limit`` ids of
    ``sample_from`` (default: of ``items`` in their order), every one of them a member."""
    members = {m[0]: m for m in items}  # an id names one observation, and so one leaf
    order = list(sample_from) if sample_from is not None else list(members)
    sample = tuple(i for i in order if i in members)[-limit:] if limit > 0 else ()
    ordered = sorted(members.values(), key=itemgetter(0))
    root = merkle_root([m[1] for m in ordered]).hex()
    return Commitment(sample, len(members), root, tuple(ordered))


def encode_members(members: Sequence[EvidenceItem]) -> tuple[str, bytes]:
    """(encoding, bytes) of a member list for the store: sequence numbers when all are known, else ids."""
    seqs = [m[2] for m in members if m[2] is not None]
    if len(seqs) == len(members):
        ordered = sorted(seqs)
        deltas = [b - a for a, b in zip([0, *ordered[:-1]], ordered, strict=True)]
        return ENC_SEQS, zlib.compress(",".join(map(str, deltas)).encode(), 6)
    return ENC_IDS, zlib.compress("\n".join(sorted(m[0] for m in members)).encode(), 6)


def decode_members(encoding: str, blob: bytes) -> tuple[str, list[int] | list[str]]:
    """The member list of a stored evidence set: ("seqs", [seq…]) or ("ids", [id…])."""
    try:
        inflater = zlib.decompressobj()
        text = inflater.decompress(bytes(blob), _ZLIB_MAX).decode()
        if inflater.unconsumed_tail:
            raise VerificationError("a stored evidence set is larger than any the product writes")
    except (zlib.error, UnicodeDecodeError) as exc:
        raise VerificationError(f"a stored evidence set does not decode: {exc}") from exc
    if encoding == ENC_SEQS:
        try:
            deltas = [int(x) for x in text.split(",")] if text else []
        except ValueError as exc:
            raise VerificationError("a stored evidence set holds something other than sequence numbers") from exc
        out: list[int] = []
        total = 0
        for d in deltas:
            total += d
            out.append(total)
        return "seqs", out
    if encoding == ENC_IDS:
        return "ids", text.split("\n") if text else []
    raise VerificationError(f"a stored evidence set has the unknown encoding {encoding!r}")
