"""Content-addressed, immutable snapshots of a sector's Σ (SPEC §4).

A snapshot's *content* is Σ_sector only (domain classes, event types, fields, SHACL shapes, guards, guard
profile), skolemised, as a set of triples. Σ_core is shipped with the package and is not hashed: it is the
same for every snapshot of every installation, and :func:`full_graph` adds it when the whole Σ is needed.

- ``content_digest`` = hex SHA-256 of the canonical N-Quads of the content: one line per triple in the
  default graph, lines sorted by code point, as RDFC-1.0 serialises a dataset without blank nodes (blank
  nodes were skolemised at ingest, so no relabelling is needed).
- ``id`` = hex SHA-256 of (parent id, or the empty string for a root) followed by those same bytes.
  Identical content under the same parent therefore always gets the same id.

``origin`` says how a snapshot came to be: ``root`` (a sector pack's initial Σ), ``proposal`` (built from a
ΔΣ by the loop), ``operator`` (an operator's explicit change). Rollback never creates a snapshot: it moves
the sector's pointer back to the current snapshot's parent.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import pyoxigraph as ox

from knhk.errors import InvalidInputError
from knhk.ontology.core import core_triples, touches_core
from knhk.ontology.namespaces import sector_namespace
from knhk.ontology.rdf import Triple, normalize, ntriples_line, serialize, to_store

Origin = Literal["root", "proposal", "operator"]
ORIGINS: tuple[Origin, ...] = ("root", "proposal", "operator")
SECTOR_SLUG = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def check_sector(sector: str) -> str:
    if not isinstance(sector, str) or not SECTOR_SLUG.match(sector):
        raise InvalidInputError(f"sector {sector!r} must be a lowercase slug ([a-z][a-z0-9-]*, ≤ 63 characters)")
    return sector


def check_snapshot_id(snapshot_id: str, what: str = "snapshot id") -> str:
    if not isinstance(snapshot_id, str) or not _HEX64.match(snapshot_id):
        raise InvalidInputError(f"{what} {snapshot_id!r} is not 64 lowercase hex characters")
    return snapshot_id


def canonical_content(triples: Iterable[Triple]) -> bytes:
    """Canonical N-Quads of the content (default graph, sorted lines): the bytes KNHK hashes and stores."""
    return "".join(sorted(ntriples_line(t) for t in triples)).encode()


def content_digest(canonical: bytes) -> str:
    return hashlib.sha256(canonical).hexdigest()


def snapshot_id(parent: str | None, canonical: bytes) -> str:
    """hex SHA-256 over (parent id or empty) + canonical N-Quads (SPEC §4)."""
    digest = hashlib.sha256((parent or "").encode())
    digest.update(canonical)
    return digest.hexdigest()


@dataclass(frozen=True)
class SnapshotInfo:
    """What is known about a snapshot without loading its content."""

    id: str
    sector: str
    parent: str | None
    content_digest: str
    triple_count: int
    created_us: int
    origin: Origin
    proposal_id: str | None

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "sector": self.sector,
            "parent": self.parent,
            "content_digest": self.content_digest,
            "triple_count": self.triple_count,
            "created_us": self.created_us,
            "origin": self.origin,
            "proposal_id": self.proposal_id,
        }


@dataclass(frozen=True)
class Snapshot(SnapshotInfo):
    """A snapshot with its content (Σ_sector triples)."""

    triples: frozenset[Triple] = field(default=frozenset(), compare=False, repr=False)

    @property
    def info(self) -> SnapshotInfo:
        return SnapshotInfo(self.id, self.sector, self.parent, self.content_digest, self.triple_count,
                            self.created_us, self.origin, self.proposal_id)

    def canonical(self) -> bytes:
        return canonical_content(self.triples)

    def export(self, fmt: str = "turtle", *, full: bool = False) -> str:
        """Turtle or N-Triples of the content (``full`` adds Σ_core)."""
        triples = full_graph(self) if full else self.triples
        return serialize(triples, fmt, {self.sector: sector_namespace(self.sector)})

    def store(self, *, full: bool = False) -> ox.Store:
        """A pyoxigraph store of the content (``full`` adds Σ_core), for SPARQL."""
        return to_store(full_graph(self) if full else self.triples)


def _check_origin(origin: str) -> Origin:
    for known in ORIGINS:
        if origin == known:
            return known
    raise InvalidInputError(f"snapshot origin {origin!r} must be one of {', '.join(ORIGINS)}")


def make_snapshot(sector: str, parent: str | None, triples: Iterable[Triple], *, origin: str,
                  created_us: int, proposal_id: str | None = None, canonical_input: bool = False) -> Snapshot:
    """Build a snapshot of ``triples`` (any N-Triples spelling; normalised unless ``canonical_input``).

    Content may not state anything about Σ_core names (those belong to the package, not to a sector).
    """
    check_sector(sector)
    if parent is not None:
        check_snapshot_id(parent, "parent snapshot id")
    kind = _check_origin(origin)
    if (kind == "root") != (parent is None):
        raise InvalidInputError("a root snapshot has no parent, and only a root snapshot lacks one")
    content = frozenset(triples) if canonical_input else frozenset(normalize(triples, what="snapshot content"))
    core = touches_core(content)
    if core:
        raise InvalidInputError(
            f"snapshot content may not describe Σ_core names; first offending triple: {' '.join(core[0])}"
        )
    canonical = canonical_content(content)
    return Snapshot(snapshot_id(parent, canonical), sector, parent, content_digest(canonical), len(content),
                    created_us, kind, proposal_id, content)


def derive(base: Snapshot, *, additions: Iterable[Triple] = (), removals: Iterable[Triple] = (),
           origin: str = "proposal", created_us: int, proposal_id: str | None = None) -> Snapshot:
    """The child of ``base`` whose content is base − removals + additions (a ΔΣ applied)."""
    added = normalize(additions, what="ΔΣ additions")
    removed = normalize(removals, what="ΔΣ removals")
    content = (base.triples - removed) | added
    return make_snapshot(base.sector, base.id, content, origin=origin, created_us=created_us,
                         proposal_id=proposal_id, canonical_input=True)


def full_graph(snapshot: Snapshot) -> frozenset[Triple]:
    """Σ = Σ_core ⊕ Σ_sector for a snapshot."""
    return snapshot.triples | core_triples()
