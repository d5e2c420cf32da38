"""Boundary tables for every doctrine rule type, level, effective date and the sector filter (SPEC §6).

These drive :func:`knhk.validation.doctrines.evaluate` with the bundled packs' own rules where they exist
(FIN-APPROVAL-001, HIPAA-SOD-001, FIN-LIMIT-001, ISO9001-QUALITY-001, LOG-WINDOW-001, the protected lists) and
with hand-written rules for the boundaries the packs do not reach (wrap-around windows, time zones, dates).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pytest

from knhk.app.runtime import doctrines_for
from knhk.errors import InvalidInputError
from knhk.ops.clock import parse_rfc3339
from knhk.validation.doctrines import (
    UNIVERSAL_SOD,
    Approver,
    Doctrine,
    DoctrineContext,
    DoctrineOutcome,
    evaluate,
    qualifying_approvers,
)


def rule(rtype: str, params: dict[str, Any], *, level: str = "mandatory", sector: str = "finance",
         rule_id: str = "R-1", effective_from: str | None = None, expires: str | None = None) -> Doctrine:
    return Doctrine.from_json({"id": rule_id, "sector": sector, "type": rtype, "level": level, "params": params,
                               "effective_from": effective_from, "expires": expires})


def at(text: str) -> int:
    return parse_rfc3339(text)


def run(doctrines: Sequence[Doctrine], *, sector: str = "finance", author: str = "sub_author",
        approvers: Sequence[Approver] = (), now: str = "2026-11-23T10:00:00Z",
        resources: dict[str, Decimal] | None = None, removed: Sequence[str] = ()) -> DoctrineOutcome:
    ctx = DoctrineContext(sector=sector, author=author, approvers=approvers, now_us=at(now),
                          resources=resources or {}, removed_or_narrowed=frozenset(removed))
    return evaluate(doctrines, ctx)


def person(name: str, *roles: str, sector: str | None = None) -> Approver:
    return Approver(name, frozenset(roles), sector)


# -- approval_chain: FIN-APPROVAL-001 (2 distinct approvers, one from compliance) ------------------------
FIN = doctrines_for("finance")


def compliance(name: str) -> Approver:
    return person(name, "validator", sector="compliance")


def fin(name: str) -> Approver:
    return person(name, "validator", sector="finance")


@pytest.mark.parametrize(("approvers", "satisfied"), [
    ([], False),
    ([person("a", "validator", sector="compliance")], False),                        # one is not two
    ([person("a", "validator", sector="finance"), person("b", "validator", sector="finance")], False),  # no compliance
    ([compliance("a"), compliance("a")], False),  # the same person twice is not a quorum
    ([fin("a"), compliance("c")], True),
    ([compliance("c"), compliance("d")], True),
    ([compliance("sub_author"), fin("b")], False),  # the author never counts
])
def test_fin_approval_chain_quorum(approvers: list[Approver], satisfied: bool) -> None:
    out = run(FIN, approvers=approvers)
    pending = [p for p in out.pending if p.doctrine_id == "FIN-APPROVAL-001"]
    assert (not pending) is satisfied
    assert out.needs_approval is not satisfied
    if pending:
        distinct = {a.subject for a in approvers if a.subject != "sub_author"}
        assert pending[0].have == len(distinct)
        assert pending[0].required == 2


def test_pending_names_what_is_missing() -> None:
    out = run(FIN, approvers=[person("a", sector="finance"), person("b", sector="finance")])
    (pending,) = out.pending
    assert pending.missing_sectors == ("compliance",)
    assert "2/2 approvals" in pending.describe()
    assert "compliance" in pending.describe()


def test_author_is_never_counted_and_is_reported() -> None:
    author = person("sub_author", "validator", sector="compliance")
    out = run(FIN, approvers=[author, person("b", sector="finance")])
    assert [v.doctrine_id for v in out.blocking] == [UNIVERSAL_SOD]
    ctx = DoctrineContext("finance", "sub_author", [author, person("b", sector="finance")])
    assert [a.subject for a in qualifying_approvers(ctx, FIN)] == ["b"]


# -- segregation_of_duties: HIPAA-SOD-001 ---------------------------------------------------------------
HC = doctrines_for("healthcare")


@pytest.mark.parametrize(("approvers", "violations"), [
    ([person("dave", "doctor")], 0),
    ([person("dave", "doctor"), person("erin", "billing")], 0),                 # two people: fine
    ([person("dave", "doctor", "billing")], 1),                                 # one person, both roles
    ([person("pat", "patient", "administrator")], 1),
    ([person("pat", "patient", "doctor")], 0),                                  # not an incompatible set
    ([person("x", "doctor", "billing", "patient", "administrator")], 2),        # both sets, both reported
])
def test_hipaa_segregation_of_duties(approvers: list[Approver], violations: int) -> None:
    out = run(HC, sector="healthcare", approvers=approvers)
    sod = [v for v in out.violations if v.doctrine_id == "HIPAA-SOD-001"]
    assert len(sod) == violations
    assert all(v.level == "mandatory" for v in sod)
    counted = qualifying_approvers(DoctrineContext("healthcare", "sub_author", approvers), HC)
    assert len(counted) == len([a for a in approvers if not sod or len(a.roles) < 2])


def test_sod_breaker_does_not_count_toward_quorum() -> None:
    out = run(HC, sector="healthcare", approvers=[person("dave", "doctor", "billing", sector="healthcare")])
    (pending,) = [p for p in out.pending if p.doctrine_id == "HC-APPROVAL-001"]
    assert pending.have == 0
    ok = run(HC, sector="healthcare", approvers=[person("erin", "doctor", sector="healthcare")])
    assert not ok.pending
    assert not ok.blocking


# -- resource_limit: strict > --------------------------------------------------------------------------
MFG = doctrines_for("manufacturing")


@pytest.mark.parametrize(("doctrines", "resource", "value", "violates"), [
    (FIN, "transaction_amount", "1000000", False),
    (FIN, "transaction_amount", "1000000.00", False),
    (FIN, "transaction_amount", "1000000.01", True),
    (FIN, "transaction_amount", "1000001", True),
    (FIN, "transaction_amount", None, False),              # absent resource passes
    (MFG, "defect_rate", "0.001", False),
    (MFG, "defect_rate", "0.0010", False),
    (MFG, "defect_rate", "0.0011", True),
    (MFG, "defect_rate", "0.0042", True),
    (MFG, "defect_rate", None, False),
])
def test_resource_limits(doctrines: list[Doctrine], resource: str, value: str | None, violates: bool) -> None:
    sector = doctrines[0].sector
    resources = {} if value is None else {resource: Decimal(value)}
    out = run(doctrines, sector=sector, resources=resources)
    hits = [v for v in out.violations if v.type == "resource_limit"]
    assert bool(hits) is violates
    if violates:
        assert value is not None
        assert value in hits[0].message


# -- time_window: [start, end), wrap-around, days, tz ----------------------------------------------------
LOG = doctrines_for("logistics")  # 06–22 Mon–Fri UTC, warning


@pytest.mark.parametrize(("now", "inside"), [
    ("2026-11-23T05:59:59Z", False),
    ("2026-11-23T06:00:00Z", True),    # start hour inclusive
    ("2026-11-23T21:59:00Z", True),
    ("2026-11-23T21:59:59Z", True),
    ("2026-11-23T22:00:00Z", False),   # end hour exclusive
    ("2026-11-27T12:00:00Z", True),    # Friday
    ("2026-11-28T12:00:00Z", False),   # Saturday
    ("2026-11-29T12:00:00Z", False),   # Sunday
])
def test_business_hours_window(now: str, inside: bool) -> None:
    out = run(LOG, sector="logistics", now=now)
    assert (not out.warnings) is inside
    assert not out.blocking  # a warning never blocks


@pytest.mark.parametrize(("now", "inside"), [
    ("2026-11-23T21:59:00Z", False),
    ("2026-11-23T22:00:00Z", True),
    ("2026-11-23T23:00:00Z", True),
    ("2026-11-24T00:00:00Z", True),
    ("2026-11-24T05:59:00Z", True),
    ("2026-11-24T06:00:00Z", False),
    ("2026-11-24T12:00:00Z", False),
])
def test_window_wrapping_midnight(now: str, inside: bool) -> None:
    night = rule("time_window", {"start_hour": 22, "end_hour": 6})
    out = run([night], now=now)
    assert (not out.blocking) is inside


@pytest.mark.parametrize(("now", "inside"), [
    ("2026-07-01T03:59:00Z", False),   # 05:59 in Berlin (CEST, UTC+2)
    ("2026-07-01T04:00:00Z", True),    # 06:00 in Berlin
    ("2026-07-01T19:59:00Z", True),    # 21:59 in Berlin
    ("2026-07-01T20:00:00Z", False),   # 22:00 in Berlin
    ("2026-01-07T04:59:00Z", False),   # 05:59 in Berlin (CET, UTC+1)
    ("2026-01-07T05:00:00Z", True),
    ("2026-11-27T22:30:00Z", False),   # Friday 23:30 Berlin ... still Friday but after 22
    ("2026-11-29T23:30:00Z", False),   # Sunday 23:30 UTC = Monday 00:30 Berlin: right day, wrong hour
])
def test_window_in_a_time_zone(now: str, inside: bool) -> None:
    berlin = rule("time_window", {"start_hour": 6, "end_hour": 22, "days": ["mon", "tue", "wed", "thu", "fri"],
                                  "tz": "Europe/Berlin"})
    out = run([berlin], now=now)
    assert (not out.blocking) is inside


def test_window_days_are_local_days() -> None:
    # Sunday 23:30 UTC is already Monday 08:30 in Tokyo: inside a Monday-only window there
    tokyo = rule("time_window", {"start_hour": 6, "end_hour": 22, "days": ["mon"], "tz": "Asia/Tokyo"})
    assert not run([tokyo], now="2026-11-29T23:30:00Z").blocking
    utc = rule("time_window", {"start_hour": 6, "end_hour": 22, "days": ["mon"]})
    assert run([utc], now="2026-11-29T23:30:00Z").blocking


# -- protected -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("sector", "removed", "hits"), [
    ("finance", ["<https://knhk.dev/ns/finance#Account>"], ["Account"]),
    ("finance", ["<https://knhk.dev/ns/finance#Transaction>"], ["Transaction"]),
    ("finance", ["<https://knhk.dev/ns/finance#approval_required>"], ["approval_required"]),
    ("finance", ["<https://knhk.dev/ns/finance#currency>"], []),
    ("healthcare", ["<https://knhk.dev/ns/healthcare#encryption_required>",
                    "<https://knhk.dev/ns/healthcare#audit_access>"], ["audit_access", "encryption_required"]),
    ("healthcare", ["<https://knhk.dev/ns/healthcare#Patient>", "<https://knhk.dev/ns/healthcare#ward>"],
     ["Patient"]),
])
def test_protected_items(sector: str, removed: list[str], hits: list[str]) -> None:
    out = run(doctrines_for(sector), sector=sector, removed=removed)
    found = [v for v in out.violations if v.type == "protected"]
    assert [v.message.split()[1] for v in found] == hits  # every violation, in order, not just the first
    assert all(v.level == "mandatory" for v in found)


# -- levels ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("level", "blocking", "warnings", "advisories"), [
    ("mandatory", 1, 0, 0),
    ("warning", 0, 1, 0),
    ("advisory", 0, 0, 1),
])
def test_levels(level: str, blocking: int, warnings: int, advisories: int) -> None:
    limit = rule("resource_limit", {"resource": "transaction_amount", "max": "10"}, level=level)
    out = run([limit], resources={"transaction_amount": Decimal(11)})
    assert (len(out.blocking), len(out.warnings), len(out.advisories)) == (blocking, warnings, advisories)


def test_advisory_approval_chain_never_holds() -> None:
    chain = rule("approval_chain", {"required": 3}, level="advisory")
    out = run([chain])
    assert out.pending
    assert not out.needs_approval


# -- effective dates and sector scope ------------------------------------------------------------------
@pytest.mark.parametrize(("now", "applies"), [
    ("2026-02-28T23:59:59Z", False),   # before effective_from
    ("2026-03-01T00:00:00Z", True),    # effective_from inclusive
    ("2026-05-31T23:59:59Z", True),
    ("2026-06-01T00:00:00Z", False),   # expires exclusive
])
def test_effective_and_expiry_dates(now: str, applies: bool) -> None:
    limit = rule("resource_limit", {"resource": "r", "max": "1"}, effective_from="2026-03-01", expires="2026-06-01")
    out = run([limit], now=now, resources={"r": Decimal(2)})
    assert bool(out.blocking) is applies


def test_only_the_proposals_sector_rules_apply() -> None:
    every = [d for s in ("finance", "healthcare", "manufacturing", "logistics") for d in doctrines_for(s)]
    saturday = "2026-11-28T23:00:00Z"
    rogue = person("dave", "doctor", "billing")
    out = run(every, sector="finance", approvers=[rogue], now=saturday,
              resources={"defect_rate": Decimal("0.5"), "transaction_amount": Decimal(5)})
    assert {v.doctrine_id for v in out.violations} == set()  # no HIPAA, ISO, LOG rule leaks into finance
    assert [p.doctrine_id for p in out.pending] == ["FIN-APPROVAL-001"]
    hc = run(every, sector="healthcare", approvers=[rogue], now=saturday)
    assert {v.doctrine_id for v in hc.violations} == {"HIPAA-SOD-001"}


def test_every_violation_is_reported() -> None:
    rules = [rule("resource_limit", {"resource": "a", "max": "1"}, rule_id="A"),
             rule("resource_limit", {"resource": "b", "max": "1"}, rule_id="B", level="warning"),
             rule("time_window", {"start_hour": 6, "end_hour": 7}, rule_id="C"),
             rule("protected", {"classes": ["Account"], "properties": ["flag"]}, rule_id="D")]
    out = run(rules, resources={"a": Decimal(2), "b": Decimal(2)},
              removed=["<https://knhk.dev/ns/finance#Account>", "<https://knhk.dev/ns/finance#flag>"])
    assert sorted(v.doctrine_id for v in out.violations) == ["A", "B", "C", "D", "D"]
    assert sorted(v.doctrine_id for v in out.blocking) == ["A", "C", "D", "D"]


@pytest.mark.parametrize(("raw", "message"), [
    ({"type": "nope"}, "unknown type"),
    ({"level": "sometimes"}, "level must be"),
    ({"type": "approval_chain", "params": {"required": 0}}, "required"),
    ({"type": "segregation_of_duties", "params": {"incompatible": [["doctor"]]}}, "incompatible"),
    ({"type": "resource_limit", "params": {"resource": "x", "max": "lots"}}, "not a number"),
    ({"type": "time_window", "params": {"start_hour": 25, "end_hour": 3}}, "hour"),
    ({"type": "time_window", "params": {"start_hour": 1, "end_hour": 3, "days": ["someday"]}}, "days"),
    ({"type": "time_window", "params": {"start_hour": 1, "end_hour": 3, "tz": "Mars/Olympus"}}, "time zone"),
    ({"effective_from": "yesterday"}, "YYYY-MM-DD"),
])
def test_malformed_doctrines_are_refused(raw: dict[str, Any], message: str) -> None:
    base: dict[str, Any] = {"id": "X", "sector": "finance", "type": "resource_limit", "level": "mandatory",
                            "params": {"resource": "r", "max": 1}}
    with pytest.raises(InvalidInputError, match=message):
        Doctrine.from_json({**base, **raw})
