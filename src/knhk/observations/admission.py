"""The one rule deciding what becomes of an observation offered for storage (SPEC §2).

Each candidate is *new*, a *duplicate* of a stored observation (the same client id and content), a *repeat* of
an earlier candidate offered with it, or *refused*: the same id with other content (observations are never
overwritten), or a timestamp more than 60 s off the server's clock. Skew is judged for new observations only, so a
late retry of a stored one still answers as a duplicate; an explicit *backfill* of recorded data keeps past
timestamps as given (flagged skewed).

Ingesting one observation (group-committed with other callers'), an atomic batch, and checking a batch without
storing it (``knhk ingest`` checks the whole file first) all apply this rule, so the API and the CLI cannot
disagree. Two ways of offering several candidates differ in one point only:

- a **batch** is one request: its items are numbered (``label``) and may refer to each other ("also used by
  observation 3 of this batch");
- a **group** is independent requests committed together: each answers alone, and an id repeated with other
  content conflicts with the one admitted first as with a stored one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from knhk.errors import ConflictError, DependencyUnavailableError, KnhkError
from knhk.observations.model import Observation, check_skew

Label = Callable[[int], str]


def observation_label(index: int) -> str:
    """How a batch item is named in a refusal: ``observation 3``."""
    return f"observation {index}"


@dataclass(frozen=True, slots=True)
class Admission:
    """What the rule decided for one candidate (exactly one field is set)."""

    new: bool = False
    stored: Observation | None = None  # the identical observation already stored
    repeat_of: int | None = None  # the index of the identical earlier candidate this one repeats
    refusal: KnhkError | None = None


_NEW = Admission(new=True)


def at(index: int | None, exc: KnhkError, label: Label = observation_label) -> KnhkError:
    """The same error, naming the batch item it concerns (unchanged for a lone observation, and for an
    unavailable dependency, which concerns no item and keeps its Retry-After)."""
    if index is None or isinstance(exc, DependencyUnavailableError):
        return exc
    return type(exc)(f"{label(index)}: {exc.message}", **{**exc.details, "index": index})


def _overwrite(obs: Observation) -> ConflictError:
    return ConflictError(f"id {obs.id!r} is already stored with different content; observations are never"
                         " overwritten", id=obs.id)


def admit(candidates: Sequence[Observation], stored: Mapping[str, Observation], received_us: int, *,
          batch: bool, label: Label = observation_label, backfill: bool = False) -> list[Admission]:
    """Judge ``candidates`` (in order) against the ``stored`` observations among their client ids.

    ``batch``: the candidates are one request (refusals name the item through ``label``); otherwise a group of
    independent requests. ``backfill``: recorded data, explicitly (and audited by the caller) — timestamps in
    the past are kept as given, however old (flagged ``skewed``); one more than 60 s ahead is still refused.
    """
    out: list[Admission] = []
    first: dict[str, int] = {}  # id → the index that first offered it (batch: any; group: an admitted new one)
    for index, obs in enumerate(candidates):
        where = index if batch else None
        earlier = first.get(obs.id)
        if batch:
            if earlier is not None:
                same = candidates[earlier].content_hash == obs.content_hash
                out.append(Admission(repeat_of=earlier) if same else Admission(refusal=ConflictError(
                    f"{label(index)}: id {obs.id!r} is also used by {label(earlier)} of this batch with different"
                    " content", id=obs.id, index=index)))
                continue
            first[obs.id] = index
        old = stored.get(obs.id) if obs.client_id else None
        if old is not None:
            same = old.content_hash == obs.content_hash
            out.append(Admission(stored=old) if same else Admission(refusal=at(where, _overwrite(obs), label)))
            continue
        if not batch and earlier is not None:  # admitted a moment ago, in the same commit
            same = candidates[earlier].content_hash == obs.content_hash
            out.append(Admission(repeat_of=earlier) if same else Admission(refusal=_overwrite(obs)))
            continue
        if obs.skewed and not (backfill and obs.ts_us <= received_us):
            try:
                check_skew(obs.ts_us, received_us)
            except KnhkError as exc:
                out.append(Admission(refusal=at(where, exc, label)))
                continue
        if not batch:
            first[obs.id] = index
        out.append(_NEW)
    return out


def first_refusal(admissions: Sequence[Admission]) -> KnhkError | None:
    """The refusal of the lowest-numbered refused candidate (a batch is refused as a whole)."""
    return next((a.refusal for a in admissions if a.refusal is not None), None)
