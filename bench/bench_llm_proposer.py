"""Benchmark (SPEC §5, §12): what asking the LLM proposer costs KNHK itself, model time excluded.

For one schema-drift pattern of the bundled finance pack, each timed call builds the prompt context (doctrines,
guards, protected items, event types, the 10 most recent decided proposals, the rule proposer's baseline),
the request and its SHA-256 digest, posts it over a real socket to a local chat-completions stub that answers
at once with a fixed 40-triple ΔΣ, and parses the answer strictly. Each call's context differs (the answer
cache never hits). The baseline in the same run is the rule proposer planning the same pattern.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from knhk.app.runtime import Runtime
from knhk.loop.coordinator import finding_of
from knhk.loop.planner import LlmPlanner
from knhk.ontology.namespaces import KNHK, RDF_TYPE, RDFS, RDFS_CLASS, iri, literal, sector_namespace
from knhk.ops.clock import ManualClock, format_rfc3339, parse_rfc3339
from knhk.proposals.llm import LlmProposer, LlmSettings
from knhk.proposals.prompt import prompt_digest
from synthetic import pct, scratch_settings

START = parse_rfc3339("2026-11-23T10:00:00Z")
CALLS = 300


def answer_body() -> bytes:
    ns = sector_namespace("finance")
    additions: list[list[str]] = []
    for i in range(8):
        cls = iri(f"{ns}Bench{i}")
        additions += [[cls, iri(RDF_TYPE), iri(RDFS_CLASS)], [cls, iri(RDFS + "subClassOf"), iri(KNHK + "Event")],
                      [cls, iri(KNHK + "eventType"), literal(f"bench{i}.done")],
                      [cls, iri(RDFS + "label"), literal(f"bench {i}")], [cls, iri(RDFS + "comment"), literal("x")]]
    content = json.dumps({"rationale": "declare the bench types", "additions": additions, "removals": []})
    return json.dumps({"id": "b", "object": "chat.completion", "model": "bench",
                       "choices": [{"index": 0, "finish_reason": "stop",
                                    "message": {"role": "assistant", "content": content, "refusal": None}}],
                       "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}).encode()


def stub() -> ThreadingHTTPServer:
    body = answer_body()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="knhk-bench-llm-"))
    clock = ManualClock(START)
    httpd = stub()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    with Runtime.open(scratch_settings(folder), clock=clock, loop_clock=clock) as rt:
        rt.ingestor.ingest_batch([{"event_type": "refund.issued", "sector": "finance", "id": f"r{i}",
                                   "timestamp": format_rfc3339(START + i * 1000),
                                   "value": {"account_id": f"a{i}", "transaction_amount": 10 + i, "note": "n"}}
                                  for i in range(50)])
        clock.advance(1)
        schema = rt.registry.current_schema("finance")
        pattern = rt.engine.detect("finance", schema, clock.now_us()).patterns[0]
        finding = finding_of(pattern)
        assert finding is not None
        proposer = LlmProposer(LlmSettings(url, "bench", requests_per_hour=10**6, tokens_per_hour=10**8))
        planner = LlmPlanner(proposer, lambda s: rt.proposals.doctrines_for(s), rt.proposals.decided)
        rule_times: list[float] = []
        llm_times: list[float] = []
        local_times: list[float] = []
        prompt_chars = 0
        for i in range(CALLS):
            t0 = time.perf_counter()
            baseline = rt.coordinator.plan("finance", pattern)
            rule_times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            varied = finding.__class__(**{**finding.__dict__, "observations": 50 + i})  # a new question each time
            ctx = planner.context("finance", schema, pattern, varied, baseline)
            prompt_digest(proposer.request_for(ctx))
            local_times.append(time.perf_counter() - t0)
            planned = planner.plan(ctx)
            llm_times.append(time.perf_counter() - t0)
            assert len(planned.plan.delta.additions) == 40
            prompt_chars = sum(len(m["content"]) for m in proposer.request_for(ctx)["messages"])
        proposer.close()
    httpd.shutdown()
    rule_p50, rule_p95 = pct(rule_times, 0.5) * 1000, pct(rule_times, 0.95) * 1000
    llm_p50, llm_p95 = pct(llm_times, 0.5) * 1000, pct(llm_times, 0.95) * 1000
    local_p95 = pct(local_times, 0.95) * 1000
    print(f"LLM proposer, KNHK side (context, request, digest, local HTTP round trip, strict parse), {CALLS} calls: "
          f"p50 {llm_p50:.2f} ms, p95 {llm_p95:.2f} ms (of which context + request + digest alone: p95 "
          f"{local_p95:.2f} ms); prompt {prompt_chars} characters")
    print(f"baseline, rule proposer on the same pattern: p50 {rule_p50:.3f} ms, p95 {rule_p95:.3f} ms "
          f"→ ratio p95 {llm_p95 / max(rule_p95, 1e-9):.1f}×")


if __name__ == "__main__":
    main()
