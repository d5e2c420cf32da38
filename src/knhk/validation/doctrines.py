"""Sector doctrines (SPEC §6): organisational rules evaluated against a proposal and its approvals.

Rule types: ``approval_chain`` (N distinct approvers, at least one from each listed sector),
``segregation_of_duties`` (one person may not hold two roles of an incompatible set; two people may),
``resource_limit`` (a named resource above ``max`` violates, strictly; an absent resource passes),
``time_window`` (``[start_hour, end_hour)`` on listed days in a time zone, wrapping midnight when start >
end), ``protected`` (listed classes/properties may not be removed or narrowed). Levels: ``mandatory``
blocks, ``warning`` is recorded and the change proceeds, ``advisory`` informs. Rules apply only within their
effective/expiry dates and only to their own sector. Every violation is reported, not only the first. Also
universal, whatever the sector: the author of a proposal can neither approve nor promote it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from knhk.errors import InvalidInputError

RULE_TYPES = ("approval_chain", "segregation_of_duties", "resource_limit", "time_window", "protected")
LEVELS = ("mandatory", "warning", "advisory")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
UNIVERSAL_SOD = "UNIVERSAL-AUTHOR-SOD"


def _date(value: Any, what: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(str(value))
    except ValueError as exc:
        raise InvalidInputError(f"{what} {value!r} is not a YYYY-MM-DD date") from exc


def _decimal(value: Any, what: str) -> Decimal:
    if isinstance(value, bool):
        raise InvalidInputError(f"{what} must be a number")
    try:
        return Decimal(str(value))
    except InvalidOperation as exc:
        raise InvalidInputError(f"{what} {value!r} is not a number") from exc


@dataclass(frozen=True)
class Doctrine:
    """One sector rule."""

    id: str
    sector: str
    type: str
    level: str
    params: Mapping[str, Any]
    effective_from: date | None = None
    expires: date | None = None
    description: str = ""

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Doctrine:
        try:
            rule_id, sector, rtype, level = raw["id"], raw["sector"], raw["type"], raw["level"]
        except KeyError as exc:
            raise InvalidInputError(f"doctrine lacks field {exc.args[0]!r}") from exc
        if rtype not in RULE_TYPES:
            raise InvalidInputError(f"doctrine {rule_id}: unknown type {rtype!r}")
        if level not in LEVELS:
            raise InvalidInputError(f"doctrine {rule_id}: level must be one of {', '.join(LEVELS)}")
        params = dict(raw.get("params") or {})
        doctrine = cls(str(rule_id), str(sector), str(rtype), str(level), params,
                       _date(raw.get("effective_from"), f"doctrine {rule_id} effective_from"),
                       _date(raw.get("expires"), f"doctrine {rule_id} expires"), str(raw.get("description", "")))
        doctrine.check_params()
        return doctrine

    def check_params(self) -> None:
        p, who = self.params, f"doctrine {self.id}"
        if self.type == "approval_chain":
            if not isinstance(p.get("required"), int) or p["required"] < 1:
                raise InvalidInputError(f"{who}: approval_chain needs an integer 'required' ≥ 1")
            if not isinstance(p.get("sectors", []), list):
                raise InvalidInputError(f"{who}: approval_chain 'sectors' must be a list")
        elif self.type == "segregation_of_duties":
            sets = p.get("incompatible")
            if not isinstance(sets, list) or not all(isinstance(s, list) and len(s) >= 2 for s in sets):
                raise InvalidInputError(f"{who}: segregation_of_duties needs 'incompatible' as lists of ≥ 2 roles")
        elif self.type == "resource_limit":
            if not isinstance(p.get("resource"), str):
                raise InvalidInputError(f"{who}: resource_limit needs a 'resource' name")
            _decimal(p.get("max"), f"{who} max")
        elif self.type == "time_window":
            for key in ("start_hour", "end_hour"):
                if not isinstance(p.get(key), int) or not 0 <= p[key] <= 24:
                    raise InvalidInputError(f"{who}: time_window {key} must be an hour 0–24")
            days = p.get("days", list(DAYS))
            if not isinstance(days, list) or any(d not in DAYS for d in days):
                raise InvalidInputError(f"{who}: time_window days must be among {', '.join(DAYS)}")
            try:
                ZoneInfo(str(p.get("tz", "UTC")))
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise InvalidInputError(f"{who}: unknown time zone {p.get('tz')!r}") from exc
        elif self.type == "protected":
            for key in ("classes", "properties"):
                if not isinstance(p.get(key, []), list):
                    raise InvalidInputError(f"{who}: protected {key} must be a list")

    def in_effect(self, day: date) -> bool:
        if self.effective_from is not None and day < self.effective_from:
            return False
        return not (self.expires is not None and day >= self.expires)


@dataclass(frozen=True)
class Approver:
    """A person acting on a proposal: pseudonym, roles and sector attribute."""

    subject: str
    roles: frozenset[str] = frozenset()
    sector: str | None = None


@dataclass(frozen=True)
class Violation:
    doctrine_id: str
    type: str
    level: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"doctrine_id": self.doctrine_id, "type": self.type, "level": self.level, "message": self.message}


@dataclass(frozen=True)
class PendingApproval:
    """An approval_chain rule not yet satisfied: what is still missing."""

    doctrine_id: str
    level: str
    required: int
    have: int
    missing_sectors: tuple[str, ...]

    def describe(self) -> str:
        parts = [f"{self.have}/{self.required} approvals"]
        if self.missing_sectors:
            parts.append("still needs an approver from " + ", ".join(self.missing_sectors))
        return f"{self.doctrine_id}: " + "; ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {"doctrine_id": self.doctrine_id, "level": self.level, "required": self.required,
                "have": self.have, "missing_sectors": list(self.missing_sectors)}


@dataclass(frozen=True)
class DoctrineContext:
    """What doctrines look at: the proposal's sector and author, its approvals, time and resources."""

    sector: str
    author: str
    approvers: Sequence[Approver] = ()
    now_us: int = 0
    resources: Mapping[str, Decimal] = field(default_factory=dict)
    removed_or_narrowed: frozenset[str] = frozenset()  # local names of classes/properties


@dataclass
class DoctrineOutcome:
    violations: list[Violation] = field(default_factory=list)
    pending: list[PendingApproval] = field(default_factory=list)

    @property
    def blocking(self) -> list[Violation]:
        return [v for v in self.violations if v.level == "mandatory"]

    @property
    def warnings(self) -> list[Violation]:
        return [v for v in self.violations if v.level == "warning"]

    @property
    def advisories(self) -> list[Violation]:
        return [v for v in self.violations if v.level == "advisory"]

    @property
    def needs_approval(self) -> bool:
        return any(p.level == "mandatory" for p in self.pending)


def incompatible_roles(roles: Iterable[str], sets: Iterable[Iterable[str]]) -> list[tuple[str, ...]]:
    """The incompatible sets of which ``roles`` holds two or more."""
    held = set(roles)
    out = []
    for group in sets:
        both = tuple(sorted(held & set(group)))
        if len(both) >= 2:
            out.append(both)
    return out


def qualifying_approvers(ctx: DoctrineContext, doctrines: Sequence[Doctrine]) -> list[Approver]:
    """Distinct approvers who count toward a quorum: never the author, never someone breaking SoD."""
    sod_sets = [s for d in doctrines if d.type == "segregation_of_duties" and d.level == "mandatory"
                for s in d.params["incompatible"]]
    seen: dict[str, Approver] = {}
    for a in ctx.approvers:
        if a.subject == ctx.author or a.subject in seen or incompatible_roles(a.roles, sod_sets):
            continue
        seen[a.subject] = a
    return list(seen.values())


def _local(name: str) -> str:
    for sep in ("#", "/", ":"):
        if sep in name:
            name = name.rsplit(sep, 1)[1]
    return name.rstrip(">")


def evaluate(doctrines: Sequence[Doctrine], ctx: DoctrineContext) -> DoctrineOutcome:
    """Evaluate every in-effect doctrine of ``ctx.sector``; report every violation."""
    now = datetime.fromtimestamp(ctx.now_us / 1_000_000, tz=UTC)
    active = [d for d in doctrines if d.sector == ctx.sector and d.in_effect(now.date())]
    out = DoctrineOutcome()
    for a in ctx.approvers:
        if a.subject == ctx.author:
            out.violations.append(Violation(UNIVERSAL_SOD, "segregation_of_duties", "mandatory",
                                            "the author of a proposal can neither approve nor promote it"))
            break
    counted = qualifying_approvers(ctx, active)
    for d in active:
        p = d.params
        if d.type == "approval_chain":
            sectors = [str(s) for s in p.get("sectors", [])]
            have_sectors = {a.sector for a in counted}
            missing = tuple(s for s in sectors if s not in have_sectors)
            if len(counted) < int(p["required"]) or missing:
                out.pending.append(PendingApproval(d.id, d.level, int(p["required"]), len(counted), missing))
        elif d.type == "segregation_of_duties":
            for a in ctx.approvers:
                for both in incompatible_roles(a.roles, p["incompatible"]):
                    message = f"approver {a.subject} holds incompatible roles {' and '.join(both)}"
                    out.violations.append(Violation(d.id, d.type, d.level, message))
        elif d.type == "resource_limit":
            resource = str(p["resource"])
            limit = _decimal(p["max"], f"doctrine {d.id} max")
            value = ctx.resources.get(resource)
            if value is not None and value > limit:
                out.violations.append(Violation(d.id, d.type, d.level, f"{resource} {value} exceeds the limit {limit}"))
        elif d.type == "time_window":
            local = now.astimezone(ZoneInfo(str(p.get("tz", "UTC"))))
            start, end = int(p["start_hour"]), int(p["end_hour"])
            hour = local.hour
            inside_hours = (start <= hour < end) if start <= end else (hour >= start or hour < end)
            day = DAYS[local.weekday()]
            inside = inside_hours and day in p.get("days", list(DAYS))
            if not inside:
                out.violations.append(Violation(
                    d.id, d.type, d.level,
                    f"{local.strftime('%a %H:%M %Z')} is outside the change window {start:02d}:00–{end:02d}:00 "
                    f"on {', '.join(p.get('days', list(DAYS)))}"))
        elif d.type == "protected":
            names = {str(x) for x in [*p.get("classes", []), *p.get("properties", [])]}
            touched = sorted(n for n in names if n in {_local(x) for x in ctx.removed_or_narrowed})
            for name in touched:
                message = f"protected {name} would be removed or narrowed, or lose its constraints"
                out.violations.append(Violation(d.id, d.type, d.level, message))
    return out
