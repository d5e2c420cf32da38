"""`knhk telemetry check`: the shipped registry passes its static rules and the live scenario; a broken registry,
a rogue span, a mistyped attribute, a missing required attribute, an undeclared metric and a declared signal
nobody emits each fail with a message naming them; the capture is written in Weaver's JSON sample format."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY, Counter

from knhk.ops.telemetry import span
from knhk.ops.telemetry.registry import default_registry_dir
from knhk.service import telemetry_check as check
from knhk.service.telemetry_scenario import TRACEPARENT

KNHK = str(Path(sys.executable).with_name("knhk"))
REGISTRY_DIR = default_registry_dir()


def knhk(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KNHK, "telemetry", "check", *args], capture_output=True, text=True, timeout=300)


def test_shipped_registry_passes_live_on_postgresql_and_writes_weaver_samples(pg_url: str, tmp_path: Path) -> None:
    out = tmp_path / "samples.json"
    done = knhk("--scenario-database", pg_url, "--samples", str(out), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["ok"] is True
    assert result["statistics"]["backend"] == "postgresql"
    # everything declared was emitted, except the exception event, the retry, slow-client and stale-read
    # counters (only on faults) and the LLM proposer's counter (the scenario configures no LLM)
    assert result["statistics"]["unseen"] == ["event.exception", "metric.knhk.http.timeouts", "metric.knhk.llm.plans",
                                             "metric.knhk.retries", "metric.knhk.stale.reads"]
    samples = json.loads(out.read_text())
    kinds = {next(iter(s)) for s in samples}
    assert kinds == {"resource", "span", "metric"}
    spans = [s["span"] for s in samples if "span" in s]
    cycle = next(s for s in spans if s["name"] == "knhk.mape_k.cycle")
    assert cycle["kind"] == "internal"
    assert {"name": "knhk.sector", "value": "logistics"} in cycle["attributes"] or \
        {"name": "knhk.sector", "value": "finance"} in cycle["attributes"]
    metrics = {s["metric"]["name"]: s["metric"] for s in samples if "metric" in s}
    requests = metrics["knhk.requests"]
    assert requests["instrument"] == "counter"
    assert requests["unit"] == "{request}"
    assert all({a["name"] for a in p["attributes"]} == {"method", "route", "status"} for p in requests["data_points"])
    duration = metrics["knhk.request.duration"]
    point = duration["data_points"][0]
    assert sum(point["bucket_counts"]) == point["count"] > 0
    assert metrics["knhk.db.pool.connections"]["instrument"] == "gauge"


def test_static_check_of_the_shipped_registry() -> None:
    done = knhk("--static-only")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "static check passed" in done.stdout


def _broken(tmp_path: Path) -> Path:
    target = tmp_path / "registry"
    shutil.copytree(REGISTRY_DIR, target)
    spans = target / "spans.yaml"
    text = spans.read_text()
    text = text.replace("  - id: span.knhk.ingest\n    type: span\n",
                        "  - id: span.knhk.ingest\n    type: span\n    colour: blue\n", 1)
    text = text.replace("      - ref: knhk.ingest.stored\n", "      - ref: knhk.ingest.stord\n", 1)
    spans.write_text(text)
    attrs = target / "attributes.yaml"
    a = attrs.read_text()
    a = a.replace("      - id: knhk.guard.ticks\n        type: int\n",
                  "      - id: knhk.guard.ticks\n        type: integer\n", 1)
    attrs.write_text(a)
    (target / "zz-duplicate.yaml").write_text(
        "groups:\n  - id: span.knhk.ingest\n    type: span\n    span_kind: internal\n    stability: development\n"
        "    brief: a second group with the same id\n    attributes:\n      - ref: knhk.sector\n")
    return target


def test_broken_registry_fails_naming_each_problem(tmp_path: Path) -> None:
    done = knhk("--registry", str(_broken(tmp_path)))
    assert done.returncode == 1
    out = done.stdout
    assert "[unknown_key]" in out
    assert "'colour'" in out
    assert "span.knhk.ingest" in out
    assert "[unresolved_attribute_ref]" in out
    assert "knhk.ingest.stord" in out
    assert "[invalid_attribute_type]" in out
    assert "knhk.guard.ticks" in out
    assert "'integer'" in out
    assert "[duplicate_group_id]" in out
    assert "zz-duplicate.yaml" in out


def test_missing_registry_is_refused(tmp_path: Path) -> None:
    done = knhk("--registry", str(tmp_path / "nowhere"), "--static-only")
    assert done.returncode == 1
    assert "registry_not_found" in done.stdout


def _ids(result: check.Result) -> set[tuple[str, str]]:
    return {(f.id, f.signal_name) for f in result.findings}


def test_rogue_span_mistyped_and_missing_attributes_fail_naming_them() -> None:
    def rogue(client: Any) -> None:
        with span("knhk.rogue", {"knhk.sector": "finance"}):
            pass
        with span("knhk.guard.evaluate", {"knhk.sector": "finance", "knhk.guard.observations": "three",
                                          "knhk.guard.violations": 0, "knhk.guard.ticks": 1}):
            pass
        with span("knhk.ingest", {"knhk.ingest.observations": 1}):
            pass
        with span("knhk.ledger.append", {"knhk.ledger.log": "elsewhere", "knhk.ledger.entries": 1}):
            pass

    result = check.run(REGISTRY_DIR, extra=rogue)
    assert not result.ok
    found = _ids(result)
    assert ("undeclared_span", "knhk.rogue") in found
    assert ("type_mismatch", "knhk.guard.evaluate") in found
    assert ("required_attribute_not_present", "knhk.ingest") in found
    assert ("undefined_enum_variant", "knhk.ledger.append") in found
    messages = " ".join(str(f) for f in result.findings)
    assert "'knhk.rogue'" in messages
    assert "'knhk.guard.observations' is str, declared int" in messages


def test_undeclared_metric_and_unemitted_declared_signal_fail(tmp_path: Path) -> None:
    target = tmp_path / "registry"
    shutil.copytree(REGISTRY_DIR, target)
    with (target / "spans.yaml").open("a") as f:
        f.write("\n  - id: span.knhk.never\n    type: span\n    span_kind: internal\n    stability: development\n"
                "    brief: declared, never emitted\n    annotations: {knhk: {span_name: knhk.never}}\n"
                "    attributes:\n      - ref: knhk.sector\n")
    rogue = Counter("knhk_rogue_events_total", "A metric the registry does not declare.")
    try:
        rogue.inc()
        result = check.run(target)
    finally:
        REGISTRY.unregister(rogue)
    found = _ids(result)
    assert ("missing_metric", "knhk_rogue_events_total") in found
    assert ("missing_expected_signal", "knhk.never") in found


@pytest.mark.parametrize("database", ["sqlite"])
def test_traceparent_is_continued_by_the_request_and_its_work(database: str) -> None:
    from knhk.service import telemetry_scenario as scenario

    capture = scenario.run()
    trace_id = int(TRACEPARENT.split("-")[1], 16)
    traced = [s for s in capture.raw_spans if s.context.trace_id == trace_id]
    server = next(s for s in traced if s.name == "POST /api/v1/observations/batch")
    assert server.parent is not None
    assert server.parent.is_remote
    assert server.parent.span_id == int(TRACEPARENT.split("-")[2], 16)
    names = {s.name for s in traced}
    assert {"knhk.ingest", "knhk.guard.evaluate", "INSERT"} <= names, names
    # the ledger's group commit runs on its own thread and trace, linked to the appends it serves
    linked = {(link.context.trace_id, link.context.span_id) for s in capture.raw_spans
              if s.name == "knhk.ledger.commit" for link in s.links}
    appends = [s for s in capture.raw_spans if s.name == "knhk.ledger.append"]
    assert appends
    assert all((a.context.trace_id, a.context.span_id) in linked for a in appends)
    cycle = next(s for s in capture.raw_spans if s.name == "knhk.mape_k.cycle")
    phases = [s.name for s in sorted(capture.raw_spans, key=lambda s: s.start_time)
              if s.parent is not None and s.parent.span_id == cycle.context.span_id]
    assert [p for p in phases if p.startswith("knhk.mape_k.")] == [
        f"knhk.mape_k.{p}" for p in ("monitor", "analyze", "plan", "execute", "knowledge")]
