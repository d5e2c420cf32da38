"""Test helpers for observations: a finance-like sector schema built from the read-model dataclasses."""

from __future__ import annotations

from decimal import Decimal

from knhk.ontology.schema import (
    XSD_BOOLEAN,
    XSD_DATETIME,
    XSD_DECIMAL,
    XSD_INTEGER,
    XSD_STRING,
    EventTypeSpec,
    FieldSpec,
    GuardSpec,
    SectorSchema,
)

NS = "urn:test:finance#"


def field(name: str, datatype: str, required: bool = False) -> FieldSpec:
    return FieldSpec(name, NS + name, datatype, required=required)


def finance_schema(*, guards: tuple[GuardSpec, ...] | None = None, snapshot_id: str = "snap-1") -> SectorSchema:
    payment = EventTypeSpec("payment.created", NS + "PaymentCreated", fields={
        "transaction_amount": field("transaction_amount", XSD_DECIMAL, required=True),
        "currency": field("currency", XSD_STRING),
        "items": field("items", XSD_INTEGER),
        "approved": field("approved", XSD_BOOLEAN),
        "booked_at": field("booked_at", XSD_DATETIME),
    })
    login = EventTypeSpec("user.login", NS + "UserLogin", fields={"user": field("user", XSD_STRING)})
    if guards is None:
        guards = (GuardSpec("FIN-LIMIT-001", NS + "LimitGuard", "max_value", "payment.created",
                            "transaction_amount", Decimal(1_000_000), ticks=2, criticality="critical"),)
    return SectorSchema("finance", snapshot_id, {"payment.created": payment, "user.login": login}, guards)
