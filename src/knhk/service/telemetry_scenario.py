"""The live check's scenario: a real service (the FastAPI app over a fresh store) driven through every
instrumented path while in-memory exporters capture its spans, then its ``/metrics`` scraped.

Requests (through the ASGI app, one carrying a W3C ``traceparent``): health, readiness and metrics; single
observations (group commit) and a batch (one transaction); a hot-path guard violation; a schema drift that the
logistics cycle turns into a proposal, validated and decided; a finance cycle; a person's proposal validated
through all seven stages; receipts and proposals read. Then the service's own jobs: full ledger verification,
gauges, the telemetry self-check. Nothing outside a temporary directory is touched unless a scratch PostgreSQL
database is named, and that database must be empty.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from knhk.errors import UsageError
from knhk.ops.telemetry import spans
from knhk.ops.telemetry.capture import families_from_text, span_samples
from knhk.ops.telemetry.conformance import MetricSample, SpanSample

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@dataclass
class Capture:
    spans: list[SpanSample]
    families: list[MetricSample]
    postgresql: bool
    raw_spans: list[Any] = field(default_factory=list)
    exposition: str = ""


def _refuse_non_empty(url: str) -> None:
    from knhk.app.system import schema_version

    if schema_version(url):
        raise UsageError("the scenario database is not empty: name a fresh, empty PostgreSQL database "
                         "(the live check writes observations, proposals and receipts into it)")


def run(database_url: str | None = None, *, extra: Callable[[Any], None] | None = None) -> Capture:
    """Run the scenario; ``extra(client)`` runs inside it (tests use it to emit something the registry lacks)."""
    with warnings.catch_warnings():  # starlette's notice about its httpx-based test client
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from knhk.config import Settings
    from knhk.identity.local import LocalIssuer
    from knhk.ops.telemetry.setup import resource
    from knhk.service import scheduler
    from knhk.service.app import create_app

    if database_url is not None and not database_url.startswith(("postgresql://", "postgres://")):
        raise UsageError("--scenario-database must be a postgresql:// URL (the default is a temporary SQLite file)")
    if database_url is not None:
        _refuse_non_empty(database_url)
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=resource())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    previous = spans.provider()
    spans.install(provider)
    try:
        with tempfile.TemporaryDirectory(prefix="knhk-telemetry-") as tmp:
            settings = Settings(data_dir=Path(tmp), database_url=database_url or f"sqlite:///{tmp}/knhk.db",
                                db_pool_min=1, db_pool_max=4, cycle_interval_s=0, verify_interval_s=0,
                                checkpoint_interval_s=0, telemetry_check_interval_s=0)
            app = create_app(settings, background=False)
            with TestClient(app) as client:
                issuer = LocalIssuer.from_settings(settings)

                def auth(*roles: str, who: str = "telemetry-check@knhk.local",
                         sector: str | None = None) -> dict[str, str]:
                    return {"Authorization": "Bearer " + issuer.mint(roles, subject=who, sector=sector,
                                                                    mfa=True).token}

                _drive(client, auth)
                st = app.state.knhk
                scheduler.verify_ledger(st)
                scheduler.update_gauges(st)
                scheduler.telemetry_check(st)
                if extra is not None:
                    extra(client)
                exposition = client.get("/metrics").text
        provider.force_flush()
        finished = list(exporter.get_finished_spans())
    finally:
        spans.install(previous)
        provider.shutdown()
    return Capture(span_samples(finished), families_from_text(exposition), database_url is not None, finished,
                   exposition)


def _check(response: Any, *codes: int) -> Any:
    if response.status_code not in codes:
        raise RuntimeError(f"scenario step {response.request.method} {response.request.url.path} answered "
                           f"{response.status_code}: {response.text[:300]}")
    return response


def _drive(client: Any, auth: Callable[..., dict[str, str]]) -> None:
    ingestor = auth("ingestor", who="gateway@knhk.local")
    operator = auth("operator", who="ops@knhk.local")
    observer = auth("observer")
    _check(client.get("/health/live"), 200)
    _check(client.get("/health/ready"), 200)
    _check(client.get("/health"), 200)
    payment = {"account_id": "A-1", "transaction_amount": 10, "currency": "EUR"}
    _check(client.post("/api/v1/observations", json={"id": "tc-1", "event_type": "payment.created",
                                                     "sector": "finance", "value": payment},
                       headers=ingestor), 201)
    _check(client.post("/api/v1/observations", json={"id": "tc-2", "event_type": "payment.created",
                                                     "sector": "finance",
                                                     "value": {**payment, "transaction_amount": 5_000_000}},
                       headers=ingestor), 201)
    drift = [{"id": f"tc-ship-{i}", "event_type": "shipment.rerouted", "sector": "logistics",
              "value": {"shipment_id": f"S-{i}", "carrier": "north", "detour_km": i}} for i in range(40)]
    _check(client.post("/api/v1/observations/batch", json={"observations": drift},
                       headers={**ingestor, "traceparent": TRACEPARENT}), 201)
    _check(client.post("/api/v1/cycles", json={"sector": "logistics"}, headers=operator), 201)
    _check(client.post("/api/v1/cycles", json={"sector": "finance"}, headers=operator), 201)
    created = _check(client.post("/api/v1/proposals", headers=auth("proposer", who="paul@bank.example"), json={
        "sector": "finance", "rationale": "document accounts", "additions": [
            ["<https://knhk.dev/ns/finance#Account>", "<http://www.w3.org/2000/01/rdf-schema#comment>",
             '"A customer account."']]}), 201)
    _check(client.post(f"/api/v1/proposals/{created.json()['id']}/validate",
                       headers=auth("validator", who="vera@bank.example")), 200)
    _check(client.get("/api/v1/receipts?limit=5", headers=observer), 200)
    _check(client.get("/api/v1/proposals?sector=logistics", headers=observer), 200)
    _check(client.get("/api/v1/nothing-here", headers=observer), 404)
    _check(client.get("/api/v1/receipts", headers={"Authorization": "Bearer not-a-token"}), 401)
