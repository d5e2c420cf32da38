"""The LLM proposer end to end through the HTTP API (SPEC §5), on both backends: `POST /cycles` with the
service configured against a scripted chat-completions server; the receipts (`GET /receipts`) show the model
and prompt digest of an LLM proposal, and a failing endpoint gives a `proposer.fallback` receipt and the rule
proposer's proposal."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from service_support import Api

from knhk.errors import DependencyUnavailableError
from knhk.ontology.namespaces import KNHK, OWL_CLASS, RDF_TYPE, RDFS, RDFS_CLASS, iri, literal, sector_namespace
from knhk.ops import resilience
from knhk.proof.canonical import canonical_bytes
from support.chatserver import ChatServer, Reply, chat_server

MODEL = "scripted-model"


@pytest.fixture
def chat() -> Iterator[ChatServer]:
    with chat_server() as server:
        yield server


@pytest.fixture
def llm_api(api_factory: Callable[..., Api], database_url: str, chat: ChatServer, tmp_path: Path) -> Api:
    key = tmp_path / "llm.key"
    key.write_text("sk-scripted")
    key.chmod(0o600)
    return api_factory(database_url, llm_url=chat.url, llm_model=MODEL, llm_key_file=key, llm_timeout_s=2.0)


def new_type(sector: str, local: str, event_type: str) -> list[list[str]]:
    ns = sector_namespace(sector)
    cls = iri(ns + local)
    return [[cls, iri(RDF_TYPE), iri(RDFS_CLASS)], [cls, iri(RDF_TYPE), iri(OWL_CLASS)],
            [cls, iri(RDFS + "subClassOf"), iri(KNHK + "Event")], [cls, iri(KNHK + "eventType"), literal(event_type)],
            [cls, iri(RDFS + "label"), literal(f"{event_type} (declared by the LLM)")]]


def receipts(api: Api, kind: str) -> list[dict[str, Any]]:
    got = api.client.get(f"/api/v1/receipts?kind={kind}&limit=1000", headers=api.token("observer"))
    assert got.status_code == 200, got.text
    items: list[dict[str, Any]] = got.json()["items"]
    return items


def drift(api: Api, event_type: str, sector: str) -> None:
    batch = [{"event_type": event_type, "sector": sector, "value": {"machine_id": f"press-{i}"},
              "id": f"{event_type}-{i}"} for i in range(10)]
    done = api.client.post("/api/v1/observations/batch", json={"observations": batch},
                           headers=api.token("ingestor"))
    assert done.status_code == 201, done.text


def test_a_cycle_through_the_api_uses_the_llm_and_falls_back(llm_api: Api, chat: ChatServer) -> None:
    api = llm_api
    chat.answer(Reply(json.dumps({"rationale": "declare the inspection type",
                                  "additions": new_type("manufacturing", "InspectionDone", "inspection.done"),
                                  "removals": []})))
    drift(api, "inspection.done", "manufacturing")
    ran = api.client.post("/api/v1/cycles", json={"sector": "manufacturing"}, headers=api.token("operator"))
    assert ran.status_code == 201, ran.text
    (planned,) = ran.json()["proposals"]
    shown = api.client.get(f"/api/v1/proposals/{planned['id']}", headers=api.token("observer")).json()
    assert shown["proposer"] == "llm"
    (created,) = receipts(api, "proposal.created")
    assert created["data"]["proposer"] == "llm"
    assert created["data"]["llm"]["model"] == MODEL
    sent = chat.requests[0]
    expected = hashlib.sha256(canonical_bytes({k: sent[k] for k in ("model", "messages", "response_format")}))
    assert created["data"]["llm"]["prompt_digest"] == expected.hexdigest()
    assert chat.headers[0]["authorization"] == "Bearer sk-scripted"
    assert receipts(api, "proposer.fallback") == []
    assert [v["subject"] for v in receipts(api, "proposal.validated")] == [planned["id"]]

    chat.answer(Reply(status=500))
    drift(api, "calibration.done", "manufacturing")
    ran = api.client.post("/api/v1/cycles", json={"sector": "manufacturing"}, headers=api.token("operator"))
    assert ran.status_code == 201, ran.text
    # the LLM declared inspection.done without its field, so the field drifts too: both patterns fall back
    fallbacks = {f["subject"]: f for f in receipts(api, "proposer.fallback")}
    assert set(fallbacks) == {"schema_drift:calibration.done", "schema_drift:inspection.done"}
    fallback = fallbacks["schema_drift:calibration.done"]
    assert fallback["outcome"] == "http_error"
    assert fallback["data"]["status"] == 500
    assert fallback["data"]["model"] == MODEL
    assert ran.json()["outcome"] == "success"
    rule = [c for c in receipts(api, "proposal.created") if c["data"]["proposer"] == "rule"]
    assert {c["data"]["pattern"] for c in rule} == set(fallbacks)  # (one of them rebased: two receipts)
    assert [p["outcome"] for p in ran.json()["proposals"]] == ["promoted", "promoted"]
    assert fallback["data"]["cycle_id"] == ran.json()["id"]

    text = api.client.get("/metrics").text
    assert 'knhk_llm_plans_total{outcome="ok",sector="manufacturing"}' in text
    assert 'knhk_llm_plans_total{outcome="http_error",sector="manufacturing"}' in text

    # /health shows the LLM (its breaker read, nothing called); an open breaker degrades the service
    health = api.client.get("/health").json()
    llm = health["dependencies"]["llm"]
    assert (llm["status"], llm["breaker"], llm["model"]) == ("up", "closed", MODEL)
    assert llm["requests_last_hour"] == len(chat.requests) == 3
    assert llm["tokens_last_hour"] == 1000  # the one answered call's usage.total_tokens (errors report none)
    assert health["status"] == "healthy"
    breaker = resilience.breaker_for("llm")
    for _ in range(5):
        with pytest.raises(DependencyUnavailableError), breaker.guard():
            raise DependencyUnavailableError("endpoint down")
    health = api.client.get("/health").json()
    assert health["dependencies"]["llm"]["breaker"] == "open"
    assert health["dependencies"]["llm"]["status"] == "down"
    assert health["status"] == "degraded"


def test_health_without_an_llm(api: Api) -> None:
    assert api.client.get("/health").json()["dependencies"]["llm"] == {"status": "not_configured"}
