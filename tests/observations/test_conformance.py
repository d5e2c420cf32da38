"""Ingest-time conformance (SPEC §2): measured against the sector's current schema, never blocking."""

from __future__ import annotations

from typing import Any

import pytest
from obs_support import NS, finance_schema

from knhk.observations.conformance import conformance_issues, matches_datatype
from knhk.ontology.schema import (
    XSD,
    XSD_BOOLEAN,
    XSD_DATETIME,
    XSD_DECIMAL,
    XSD_INTEGER,
    XSD_STRING,
    EventTypeSpec,
    FieldSpec,
    SectorSchema,
)

SCHEMA = finance_schema()
OK = {"transaction_amount": 10, "currency": "EUR"}


@pytest.mark.parametrize(("datatype", "value", "fits"), [
    (XSD_STRING, "EUR", True), (XSD_STRING, 1, False), (XSD_STRING, True, False),
    (XSD_INTEGER, 3, True), (XSD_INTEGER, True, False), (XSD_INTEGER, 3.0, False), (XSD_INTEGER, "3", False),
    (XSD_DECIMAL, 3, True), (XSD_DECIMAL, 3.5, True), (XSD_DECIMAL, False, False), (XSD_DECIMAL, "3.5", False),
    (XSD_BOOLEAN, True, True), (XSD_BOOLEAN, 1, False), (XSD_BOOLEAN, "true", False),
    (XSD_DATETIME, "2024-05-01T12:00:00Z", True), (XSD_DATETIME, "2024-05-01T12:00:00.5+02:00", True),
    (XSD_DATETIME, "2024-05-01T12:00:00", False), (XSD_DATETIME, "2024-02-30T12:00:00Z", False),
    (XSD_DATETIME, 1714564800, False),
    (XSD + "date", "2024-05-01", True), (XSD + "date", "2024-13-01", False),
    (XSD + "long", 5, True), (XSD + "double", 5.5, True), (XSD + "anyURI", "urn:x", True),
    ("urn:unknown:datatype", {"any": "thing"}, True),
])
def test_datatype_table(datatype: str, value: Any, fits: bool) -> None:
    assert matches_datatype(datatype, value) is fits


def test_conforming_observation_has_no_issues() -> None:
    assert conformance_issues("payment.created", OK, SCHEMA) == ()


def test_unknown_event_type_is_one_issue() -> None:
    assert conformance_issues("refund.created", {"anything": 1}, SCHEMA) == ("unknown_event_type",)


def test_a_sector_without_a_snapshot_declares_nothing() -> None:
    assert conformance_issues("payment.created", OK, None) == ("unknown_event_type",)


def test_every_issue_is_reported_in_a_stable_order() -> None:
    value = {"zeta": 1, "currency": 3, "approved": "yes", "alpha": True}
    assert conformance_issues("payment.created", value, SCHEMA) == (
        "undeclared_field:alpha", "wrong_datatype:approved", "wrong_datatype:currency",
        "undeclared_field:zeta", "missing_required:transaction_amount")


def test_null_for_a_declared_field_counts_as_absent() -> None:
    assert conformance_issues("payment.created", {"transaction_amount": 1, "currency": None}, SCHEMA) == ()
    assert conformance_issues("payment.created", {"transaction_amount": None}, SCHEMA) == (
        "missing_required:transaction_amount",)


def test_conformance_follows_the_schema_it_is_given() -> None:
    wider = SectorSchema("finance", "snap-2", {**SCHEMA.event_types, "refund.created": EventTypeSpec(
        "refund.created", NS + "Refund", {"reason": FieldSpec("reason", NS + "reason", XSD_STRING)})})
    assert conformance_issues("refund.created", {"reason": "dup"}, SCHEMA) == ("unknown_event_type",)
    assert conformance_issues("refund.created", {"reason": "dup"}, wider) == ()
