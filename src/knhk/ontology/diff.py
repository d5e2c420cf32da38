"""Set difference of two snapshots' triples (``knhk sigma diff``, ``GET /snapshots/{a}/diff/{b}``).

``diff(a, b)`` says what changed going from ``a`` to ``b``: ``added`` = b − a, ``removed`` = a − b, both
sorted, in the canonical N-Triples term form of :mod:`knhk.ontology.rdf`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from knhk.ontology.rdf import Triple, to_ntriples


@dataclass(frozen=True)
class Diff:
    added: tuple[Triple, ...]
    removed: tuple[Triple, ...]

    @property
    def empty(self) -> bool:
        return not self.added and not self.removed

    def to_json(self) -> dict[str, object]:
        return {"added": [list(t) for t in self.added], "removed": [list(t) for t in self.removed],
                "added_count": len(self.added), "removed_count": len(self.removed)}

    def to_text(self) -> str:
        """A patch-like listing: ``+ <triple>`` and ``- <triple>`` lines in N-Triples."""
        removed = "".join(f"- {line}" for line in to_ntriples(self.removed).splitlines(keepends=True))
        added = "".join(f"+ {line}" for line in to_ntriples(self.added).splitlines(keepends=True))
        return removed + added


def diff(a_triples: Iterable[Triple], b_triples: Iterable[Triple]) -> Diff:
    a = a_triples if isinstance(a_triples, frozenset | set) else set(a_triples)
    b = b_triples if isinstance(b_triples, frozenset | set) else set(b_triples)
    return Diff(added=tuple(sorted(b - a)), removed=tuple(sorted(a - b)))
