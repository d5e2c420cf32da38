#!/usr/bin/env python3
"""Generate the recorded scenario streams shipped with the sector packs (deterministic, seeded).

Writes ``src/knhk/sectors/scenarios/<sector>.jsonl`` (observations, JSON lines, client ids) and
``<sector>.script.json`` (start time, cycle cadence, the approvers the demo acts with, and what the scenario
is meant to exercise). Re-running produces byte-identical files.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent.parent / "src" / "knhk" / "sectors" / "scenarios"


class Stream:
    def __init__(self, sector: str, start: str, seed: int) -> None:
        self.sector = sector
        self.start = datetime.fromisoformat(start.replace("Z", "+00:00"))
        self.rng = random.Random(seed)
        self.rows: list[tuple[float, dict[str, Any]]] = []

    def add(self, t: float, event_type: str, value: dict[str, Any], metadata: dict[str, str] | None = None) -> None:
        ts = self.start + timedelta(seconds=t)
        row: dict[str, Any] = {"event_type": event_type, "sector": self.sector,
                               "timestamp": ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "value": value}
        if metadata:
            row["metadata"] = metadata
        self.rows.append((t, row))

    def every(self, first: float, last: float, period: float, event_type: str, make: Any, jitter: float = 0.3) -> None:
        t = first
        while t < last:
            self.add(t + self.rng.uniform(0, jitter * period), event_type, make())
            t += period

    def write(self, script: dict[str, Any]) -> int:
        self.rows.sort(key=lambda r: r[0])
        prefix = self.sector[:3]
        with (OUT / f"{self.sector}.jsonl").open("w") as fh:
            for i, (_, row) in enumerate(self.rows):
                fh.write(json.dumps({"id": f"{prefix}-{i:06d}", **row}, sort_keys=True) + "\n")
        (OUT / f"{self.sector}.script.json").write_text(json.dumps(script, indent=2, sort_keys=True) + "\n")
        return len(self.rows)


def finance() -> int:
    s = Stream("finance", "2026-11-23T09:00:00Z", 1)
    acct = lambda: f"ACC-{s.rng.randint(1000, 9999)}"  # noqa: E731
    amount = lambda: round(s.rng.uniform(10, 50_000), 2)  # noqa: E731
    s.every(0, 900, 0.8, "payment.created",
            lambda: {"account_id": acct(), "transaction_amount": amount(), "currency": "EUR", "channel": "card"})
    s.every(0.5, 900, 1.0, "payment.settled", lambda: {"account_id": acct(), "transaction_amount": amount()})
    s.every(5, 900, 60, "account.opened", lambda: {"account_id": acct(), "approval_required": s.rng.random() < 0.2})
    s.add(120.2, "payment.created", {"account_id": "ACC-7001", "transaction_amount": 1_500_000.00, "currency": "EUR"})
    s.add(130.4, "payment.created", {"account_id": "ACC-7002", "transaction_amount": 1_000_000, "currency": "EUR"})
    s.every(300, 600, 3, "refund.issued",
            lambda: {"account_id": acct(), "transaction_amount": amount(), "reason_code": s.rng.choice(["R1", "R2"])})
    s.every(660, 720, 0.45, "payment.created",
            lambda: {"account_id": acct(), "transaction_amount": amount(), "currency": "EUR", "channel": "api"})
    s.every(780, 840, 4, "payment.error", lambda: {"account_id": acct(), "error_code": "E_DECLINED"})
    return s.write({
        "sector": "finance", "start": "2026-11-23T09:00:00Z", "cycle_every_s": 60, "end_s": 900,
        "final_cycle_after_s": 15,
        "approvers": [
            {"name": "alice@bank.example", "sector": "finance", "roles": ["validator"]},
            {"name": "carol@bank.example", "sector": "compliance", "roles": ["validator"]},
        ],
        "exercises": [
            "guard FIN-LIMIT-001: a 1,500,000 payment violates it, exactly 1,000,000 does not",
            "schema drift (new event type refund.issued) accepted after two approvals including compliance",
            "rate anomaly on payment.created (burst at 660-720 s) leading to a rate-limit guard",
            "error spike of payment.error (780-840 s)",
            "silence after 900 s (no_observations, critical)",
        ],
    })


def healthcare() -> int:
    s = Stream("healthcare", "2026-11-24T10:00:00Z", 2)
    pid = lambda: f"P-{s.rng.randint(10000, 99999)}"  # noqa: E731
    s.every(0, 900, 3, "patient.admitted",
            lambda: {"patient_id": pid(), "ward": s.rng.choice(["A", "B", "ICU"]), "priority": s.rng.randint(1, 5)})
    s.every(0.3, 900, 1, "record.accessed",
            lambda: {"record_id": f"MR-{s.rng.randint(1, 9999)}", "accessor_role": "doctor", "justification": "care"})
    s.every(0.7, 420, 1.5, "lab.result",
            lambda: {"patient_id": pid(), "test_code": "HB", "result_value": round(s.rng.uniform(9, 17), 1)})
    s.every(420, 900, 1.5, "lab.result",
            lambda: {"patient_id": pid(), "test_code": "HB", "result_value": round(s.rng.uniform(9, 17), 1),
                     "unit": "g/dL"})
    s.every(300, 600, 4, "patient.discharged",
            lambda: {"patient_id": pid(), "ward": s.rng.choice(["A", "B"]), "discharge_code": "HOME"})
    s.every(700, 760, 3, "system.error", lambda: {"component": "pacs", "error_code": "TIMEOUT"})
    return s.write({
        "sector": "healthcare", "start": "2026-11-24T10:00:00Z", "cycle_every_s": 60, "end_s": 900,
        "final_cycle_after_s": 5,
        "approvers": [
            {"name": "dave@hospital.example", "sector": "healthcare", "roles": ["doctor", "billing"]},
            {"name": "erin@hospital.example", "sector": "healthcare", "roles": ["doctor"]},
        ],
        "exercises": [
            "schema drift (new event type patient.discharged) held for approval; an approver holding both doctor "
            "and billing is refused (HIPAA-SOD-001); a doctor approves",
            "schema drift on lab.result (new field unit) rejected: declaring it required would break more than "
            "1 % of recent observations (Q2)",
            "error spike of system.error (700-760 s)",
        ],
    })


def manufacturing() -> int:
    s = Stream("manufacturing", "2026-11-25T08:00:00Z", 3)
    mid = lambda: s.rng.choice(["M-1", "M-2", "M-3"])  # noqa: E731
    s.every(0, 900, 0.8, "machine.reading",
            lambda: {"machine_id": mid(), "temperature": round(s.rng.uniform(60, 80), 2),
                     "vibration": round(s.rng.uniform(0.1, 0.9), 3)})
    s.every(10, 900, 30, "quality.inspection",
            lambda: {"batch_id": f"B-{s.rng.randint(100, 999)}", "defect_rate": round(s.rng.uniform(0.0001, 0.0009), 5),
                     "inspected_units": 5000})
    s.add(200.5, "quality.inspection", {"batch_id": "B-4242", "defect_rate": 0.0042, "inspected_units": 5000})
    s.every(300, 420, 0.4, "machine.reading",
            lambda: {"machine_id": "M-2", "temperature": round(s.rng.uniform(80, 95), 2)})
    s.every(480, 780, 6, "maintenance.completed",
            lambda: {"machine_id": mid(), "technician": s.rng.choice(["T-1", "T-2"]), "duration_min": s.rng.randint(5, 90)})
    s.every(800, 860, 2.5, "machine.error", lambda: {"machine_id": mid(), "error_code": "OVERHEAT"})
    return s.write({
        "sector": "manufacturing", "start": "2026-11-25T08:00:00Z", "cycle_every_s": 60, "end_s": 900,
        "final_cycle_after_s": 5,
        "approvers": [],
        "exercises": [
            "defect-rate breach: batch B-4242 at 0.0042 violates ISO9001-QUALITY-001 (≤ 0.001)",
            "rate anomaly on machine.reading (300-420 s) leading to a rate-limit guard",
            "schema drift (new event type maintenance.completed) accepted",
            "error spike of machine.error (800-860 s)",
        ],
    })


def logistics() -> int:
    s = Stream("logistics", "2026-11-28T23:00:00Z", 4)
    sid = lambda: f"S-{s.rng.randint(100000, 999999)}"  # noqa: E731
    s.every(0, 900, 2, "shipment.dispatched",
            lambda: {"shipment_id": sid(), "origin": "RTM", "destination": s.rng.choice(["HAM", "ANR", "LEH"]),
                     "weight_kg": round(s.rng.uniform(100, 20_000), 1)})
    s.every(1, 900, 2, "shipment.delivered", lambda: {"shipment_id": sid(), "on_time": s.rng.random() < 0.9})
    s.every(0.5, 900, 0.9, "vehicle.position",
            lambda: {"vehicle_id": f"V-{s.rng.randint(1, 40)}", "lat": round(s.rng.uniform(50, 53), 5),
                     "lon": round(s.rng.uniform(3, 7), 5)})
    s.add(150.2, "shipment.dispatched", {"shipment_id": "S-HEAVY1", "origin": "RTM", "destination": "HAM",
                                         "weight_kg": 42_000.0})
    s.every(300, 600, 5, "customs.cleared",
            lambda: {"shipment_id": sid(), "office": s.rng.choice(["NL-RTM", "BE-ANR"]), "declaration": "EX1"})
    s.every(700, 760, 2, "route.error", lambda: {"route_id": "R-17", "error_code": "BLOCKED"})
    return s.write({
        "sector": "logistics", "start": "2026-11-28T23:00:00Z", "cycle_every_s": 60, "end_s": 900,
        "final_cycle_after_s": 5,
        "approvers": [],
        "exercises": [
            "schema drift (new event type customs.cleared) promoted on a Saturday night: LOG-WINDOW-001 "
            "(06-22 Mon-Fri, warning) warns and the change proceeds",
            "guard LOG-WEIGHT-001: a 42,000 kg shipment violates it",
            "error spike of route.error (700-760 s)",
        ],
    })


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    for make in (finance, healthcare, manufacturing, logistics):
        print(make.__name__, make())
