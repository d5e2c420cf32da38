"""The four bundled sector packs: they load, are well-formed, declare what the contract lists, and their
SHACL shapes accept a valid observation of every event type and reject a wrong one."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from knhk.errors import NotFoundError
from knhk.ontology.core import core_triples
from knhk.ontology.extract import extract_schema
from knhk.ontology.schema import XSD_BOOLEAN, XSD_DECIMAL, XSD_INTEGER, XSD_STRING, SectorSchema
from knhk.ontology.shacl import check_sigma_wellformed, validate_observations
from knhk.sectors import available_sectors, load_pack

S, D, N, B = XSD_STRING, XSD_DECIMAL, XSD_INTEGER, XSD_BOOLEAN
# event type → {field: (datatype, required)} as the contract lists them
CONTRACT: dict[str, dict[str, dict[str, tuple[str, bool]]]] = {
    "finance": {
        "payment.created": {"account_id": (S, True), "transaction_amount": (D, True), "currency": (S, True),
                            "channel": (S, False)},
        "payment.settled": {"account_id": (S, True), "transaction_amount": (D, True)},
        "payment.error": {"account_id": (S, False), "error_code": (S, True)},
        "account.opened": {"account_id": (S, True), "approval_required": (B, False)},
    },
    "healthcare": {
        "patient.admitted": {"patient_id": (S, True), "ward": (S, True), "priority": (N, False)},
        "record.accessed": {"record_id": (S, True), "accessor_role": (S, True), "justification": (S, False)},
        "lab.result": {"patient_id": (S, True), "test_code": (S, True), "result_value": (D, True)},
        "system.error": {"component": (S, True), "error_code": (S, False)},
    },
    "manufacturing": {
        "machine.reading": {"machine_id": (S, True), "temperature": (D, True), "vibration": (D, False)},
        "quality.inspection": {"batch_id": (S, True), "defect_rate": (D, True), "inspected_units": (N, True)},
        "machine.error": {"machine_id": (S, True), "error_code": (S, True)},
    },
    "logistics": {
        "shipment.dispatched": {"shipment_id": (S, True), "origin": (S, True), "destination": (S, True),
                                "weight_kg": (D, False)},
        "shipment.delivered": {"shipment_id": (S, True), "on_time": (B, True)},
        "vehicle.position": {"vehicle_id": (S, True), "lat": (D, True), "lon": (D, True)},
        "route.error": {"route_id": (S, True), "error_code": (S, False)},
    },
}
GUARDS = {
    "finance": ("FIN-LIMIT-001", "payment.created", "transaction_amount", Decimal("1000000"), 2, "critical", True),
    "healthcare": ("HC-LAB-001", "lab.result", "result_value", Decimal("100000"), 1, "high", False),
    "manufacturing": ("ISO9001-QUALITY-001", "quality.inspection", "defect_rate", Decimal("0.001"), 2, "critical",
                      False),
    "logistics": ("LOG-WEIGHT-001", "shipment.dispatched", "weight_kg", Decimal("40000"), 1, "medium", False),
}
DOCTRINES = {
    "finance": {"FIN-APPROVAL-001": "approval_chain", "FIN-LIMIT-001": "resource_limit",
                "FIN-PROTECTED-001": "protected"},
    "healthcare": {"HIPAA-SOD-001": "segregation_of_duties", "HC-APPROVAL-001": "approval_chain",
                   "HC-PROTECTED-001": "protected"},
    "manufacturing": {"ISO9001-QUALITY-001": "resource_limit"},
    "logistics": {"LOG-WINDOW-001": "time_window"},
}
SAMPLE = {S: "X-1", D: 12.5, N: 3, B: True}
WRONG = {S: 7, D: "12.5", N: 2.5, B: "yes"}


def schema_of(sector: str) -> SectorSchema:
    return extract_schema(sector, "s" * 64, load_pack(sector).sigma)


def test_available_sectors() -> None:
    assert available_sectors() == ["finance", "healthcare", "logistics", "manufacturing"]
    with pytest.raises(NotFoundError, match="no sector pack named 'retail'"):
        load_pack("retail")
    with pytest.raises(NotFoundError):
        load_pack("../etc")


@pytest.mark.parametrize("sector", sorted(CONTRACT))
def test_pack_is_wellformed_and_namespaced(sector: str) -> None:
    pack = load_pack(sector)
    assert pack.namespace == f"https://knhk.dev/ns/{sector}#"
    assert check_sigma_wellformed(pack.sigma, context=core_triples()) == []
    assert sector in pack.description


@pytest.mark.parametrize("sector", sorted(CONTRACT))
def test_pack_declares_the_contracted_event_types(sector: str) -> None:
    schema = schema_of(sector)
    declared = {et: {n: (f.datatype, f.required) for n, f in spec.fields.items()}
                for et, spec in schema.event_types.items()}
    assert declared == CONTRACT[sector]
    for spec in schema.event_types.values():
        assert spec.class_iri.startswith(f"https://knhk.dev/ns/{sector}#")


@pytest.mark.parametrize("sector", sorted(CONTRACT))
def test_pack_guard(sector: str) -> None:
    (guard,) = schema_of(sector).guards
    assert (guard.guard_id, guard.event_type, guard.field, guard.limit, guard.ticks, guard.criticality,
            guard.immutable) == GUARDS[sector]
    assert guard.kind == "max_value"
    assert guard.hot_path


def test_guard_profiles() -> None:
    fin, hc = schema_of("finance"), schema_of("healthcare")
    assert {i.rsplit("#", 1)[1] for i in fin.protected_classes} == {"Account", "Transaction"}
    assert {i.rsplit("#", 1)[1] for i in fin.protected_properties} == {"approval_required"}
    assert {i.rsplit("#", 1)[1] for i in hc.protected_classes} == {"Patient", "MedicalRecord"}
    assert {i.rsplit("#", 1)[1] for i in hc.protected_properties} == {"encryption_required", "audit_access"}
    assert not schema_of("logistics").protected_classes


@pytest.mark.parametrize("sector", sorted(CONTRACT))
def test_doctrines(sector: str) -> None:
    doctrines = load_pack(sector).doctrines
    assert {d["id"]: d["type"] for d in doctrines} == DOCTRINES[sector]
    for rule in doctrines:
        assert rule["sector"] == sector
        assert rule["level"] in ("mandatory", "warning")
    by_id = {d["id"]: d for d in doctrines}
    if sector == "finance":
        assert by_id["FIN-APPROVAL-001"]["params"] == {"required": 2, "sectors": ["compliance"]}
        assert by_id["FIN-LIMIT-001"]["params"] == {"resource": "transaction_amount", "max": "1000000"}
    if sector == "logistics":
        assert by_id["LOG-WINDOW-001"]["level"] == "warning"
        assert by_id["LOG-WINDOW-001"]["params"]["days"] == ["mon", "tue", "wed", "thu", "fri"]


def valid(fields: dict[str, tuple[str, bool]]) -> dict[str, Any]:
    return {name: SAMPLE[datatype] for name, (datatype, _) in fields.items()}


@pytest.mark.parametrize("sector", sorted(CONTRACT))
def test_shapes_accept_valid_and_reject_wrong_observations(sector: str) -> None:
    pack, schema = load_pack(sector), schema_of(sector)
    observations: list[tuple[str, str, dict[str, Any]]] = []
    expected_bad: set[str] = set()
    for event_type, fields in CONTRACT[sector].items():
        good = valid(fields)
        observations.append((f"{event_type}-ok", event_type, good))
        minimal = {n: v for n, v in good.items() if fields[n][1]}
        observations.append((f"{event_type}-minimal", event_type, minimal))
        for name, (datatype, required) in fields.items():
            observations.append((f"{event_type}-{name}-type", event_type, {**good, name: WRONG[datatype]}))
            expected_bad.add(f"urn:knhk:obs:{event_type}-{name}-type")
            if required:
                missing = {k: v for k, v in good.items() if k != name}
                observations.append((f"{event_type}-{name}-missing", event_type, missing))
                expected_bad.add(f"urn:knhk:obs:{event_type}-{name}-missing")
        observations.append((f"{event_type}-extra", event_type, {**good, "undeclared_key": "x"}))
        expected_bad.add(f"urn:knhk:obs:{event_type}-extra")
    report = validate_observations(pack.sigma, observations, schema)
    assert report.violating_nodes == expected_bad
