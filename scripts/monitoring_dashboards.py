"""Writes the Grafana dashboards of deploy/monitoring/dashboards/ (provisioning-file JSON, schemaVersion 39,
timeseries/stat panels on a `datasource` variable). Run it after changing a panel; a test fails when the
committed JSON differs from what this script writes, and the Prometheus-backed test runs every query."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parents[1] / "deploy" / "monitoring" / "dashboards"
DS = {"type": "prometheus", "uid": "${datasource}"}


def panel(title: str, targets: list[tuple[str, str]], *, kind: str = "timeseries", unit: str = "short",
          thresholds: list[tuple[float | None, str]] | None = None, description: str = "",
          maximum: float | None = None) -> dict[str, Any]:
    steps = [{"color": c, "value": v} for v, c in (thresholds or [(None, "green")])]
    defaults: dict[str, Any] = {"unit": unit, "thresholds": {"mode": "absolute", "steps": steps}}
    if maximum is not None:
        defaults["max"] = maximum
    if kind == "timeseries" and thresholds:
        defaults["custom"] = {"thresholdsStyle": {"mode": "line"}}
    return {"type": kind, "title": title, "description": description, "datasource": DS,
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                        "tooltip": {"mode": "multi", "sort": "none"}} if kind == "timeseries" else
            {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}, "colorMode": "background",
             "graphMode": "none", "textMode": "auto"},
            "targets": [{"refId": chr(65 + i), "datasource": DS, "expr": expr, "legendFormat": legend}
                        for i, (expr, legend) in enumerate(targets)]}


def dashboard(uid: str, title: str, panels: list[dict[str, Any]], description: str) -> dict[str, Any]:
    laid = []
    for i, p in enumerate(panels):
        w = 6 if p["type"] == "stat" else 12
        laid.append({"id": i + 1, "gridPos": {"h": 8, "w": w, "x": 0, "y": 0}, **p})
    x = y = 0
    for p in laid:
        w = p["gridPos"]["w"]
        if x + w > 24:
            x, y = 0, y + 8
        p["gridPos"].update({"x": x, "y": y})
        x += w
    return {"uid": uid, "title": title, "description": description, "tags": ["knhk"], "timezone": "utc",
            "editable": False, "graphTooltip": 1, "refresh": "30s", "schemaVersion": 39, "version": 1,
            "time": {"from": "now-6h", "to": "now"},
            "templating": {"list": [{"name": "datasource", "type": "datasource", "query": "prometheus",
                                     "label": "Prometheus", "current": {}, "hide": 0}]},
            "annotations": {"list": []}, "links": [], "panels": laid}


RED = [(None, "green"), (1, "red")]
OK_STAT = [(None, "red"), (1, "green")]

DASHBOARDS = {
    "knhk-overview.json": dashboard("knhk-overview", "KNHK production overview", [
        panel("Request rate by route", [("sum by (route) (rate(knhk_requests_total[5m]))", "{{route}}")], unit="reqps"),
        panel("Server-error ratio (alert > 5 %)", [("knhk:http_error_ratio:rate5m", "5xx share")], unit="percentunit",
              thresholds=[(None, "green"), (0.05, "red")]),
        panel("Availability, 30 days (SLO ≥ 99.9 %)", [("knhk:availability:ratio_rate30d", "availability")],
              kind="stat", unit="percentunit", thresholds=[(None, "red"), (0.999, "green")]),
        panel("Hot path: declared guard ticks (budget 8)", [("max by (sector) (knhk_hot_path_ticks)", "{{sector}}")],
              thresholds=[(None, "green"), (8.5, "red")], maximum=10,
              description="A tick is the abstract cost unit declared in Σ (knhk:ticks), not wall time."),
        panel("Hot path: guard evaluation per observation (budget 1 ms)",
              [("knhk:guard_evaluation_seconds_per_observation:mean5m", "mean per observation")], unit="s",
              thresholds=[(None, "green"), (0.001, "red")]),
        panel("Warm path and validation p95 (alert > 100 ms)",
              [("knhk:warm_path_seconds:p95_5m", "pattern detection (Analyze) p95"),
               ("knhk:validation_seconds:p95_5m", "validation p95")], unit="s",
              thresholds=[(None, "green"), (0.1, "red")]),
        panel("Database pool", [("sum by (state) (knhk_db_pool_connections)", "{{state}}"),
                                ("sum(knhk_db_pool_connections_max)", "maximum")]),
        panel("MAPE-K cycles per second by outcome",
              [("sum by (outcome) (rate(knhk_cycle_duration_seconds_count[5m]))", "{{outcome}}")], unit="ops"),
        panel("Receipt chain integrity", [("min by (log) (knhk_receipt_chain_valid)", "{{log}}")], kind="stat",
              thresholds=OK_STAT),
        panel("Telemetry self-check", [("min(knhk_telemetry_check_ok)", "conforming")], kind="stat",
              thresholds=OK_STAT),
        panel("CPU (cores) and resident memory",
              [("sum(rate(process_cpu_seconds_total{job=\"knhk\"}[5m]))", "CPU cores"),
               ("sum(process_resident_memory_bytes{job=\"knhk\"}) / 1e9", "RSS (GB)")]),
    ], "The seed's production overview: traffic, errors, SLOs, hot and warm path budgets, pool, loop, ledger."),
    "knhk-database.json": dashboard("knhk-database", "KNHK database", [
        panel("Pool connections by state", [("sum by (state) (knhk_db_pool_connections)", "{{state}}")]),
        panel("Pool utilisation (alert > 95 %)", [("knhk:db_pool_utilisation:ratio", "in use / max")],
              unit="percentunit", thresholds=[(None, "green"), (0.95, "red")]),
        panel("Requests waiting for a connection",
              [("sum(knhk_db_pool_connections{state=\"waiting\"})", "waiting")]),
        panel("Database reachable", [("min(knhk_dependency_up{dependency=\"database\"})", "database")], kind="stat",
              thresholds=OK_STAT),
        panel("Ledger group commit p95",
              [("histogram_quantile(0.95, sum by (le) (rate(knhk_ledger_commit_duration_seconds_bucket[5m])))",
                "p95")], unit="s"),
        panel("Entries per ledger commit (p50)",
              [("histogram_quantile(0.5, sum by (le) (rate(knhk_ledger_commit_entries_bucket[5m])))", "p50")]),
        panel("Observations stored per second", [("sum by (sector) (rate(knhk_observations_ingested_total[5m]))",
                                                  "{{sector}}")], unit="ops"),
    ], "PostgreSQL pool, the ledger's group commits and ingest throughput."),
    "knhk-mape-k.json": dashboard("knhk-mape-k", "KNHK MAPE-K loop", [
        panel("Cycles per second by sector and outcome",
              [("sum by (sector, outcome) (rate(knhk_cycle_duration_seconds_count[5m]))", "{{sector}} {{outcome}}")],
              unit="ops"),
        panel("Cycle duration p95 by sector",
              [("histogram_quantile(0.95, sum by (sector, le) (rate(knhk_cycle_duration_seconds_bucket[5m])))",
                "{{sector}}")], unit="s"),
        panel("Phase duration p95",
              [("histogram_quantile(0.95, sum by (phase, le) (rate(knhk_cycle_phase_duration_seconds_bucket[5m])))",
                "{{phase}}")], unit="s"),
        panel("Patterns detected per second by sector",
              [("sum by (sector) (rate(knhk_patterns_detected_total[5m]))", "{{sector}}")], unit="ops"),
        panel("Proposals decided in the last hour by outcome",
              [("sum by (outcome) (increase(knhk_proposals_total[1h]))", "{{outcome}}")]),
        panel("Validation stage p95",
              [("histogram_quantile(0.95, sum by (stage, le) "
                "(rate(knhk_validation_stage_duration_seconds_bucket[5m])))", "{{stage}}")], unit="s"),
        panel("Guard violations per second by sector",
              [("sum by (sector) (rate(knhk_guard_violations_total[5m]))", "{{sector}}")], unit="ops"),
    ], "The loop: cycles and their phases, patterns, proposals, validation stages, guard violations."),
    "knhk-receipt-integrity.json": dashboard("knhk-receipt-integrity", "KNHK receipt integrity", [
        panel("Last verification passed", [("min by (log) (knhk_receipt_chain_valid)", "{{log}}")], kind="stat",
              thresholds=OK_STAT),
        panel("Hours since the last verification (alert > 26 h)",
              [("(time() - max by (log) (knhk_receipt_chain_verified_timestamp_seconds)) / 3600", "{{log}}")],
              unit="h", thresholds=[(None, "green"), (26, "red")]),
        panel("Entries per log (Merkle tree size)", [("max by (log) (knhk_ledger_tree_size)", "{{log}}")]),
        panel("Entries appended per second", [("sum by (log) (rate(knhk_receipts_appended_total[5m]))", "{{log}}")],
              unit="ops"),
        panel("Group commits per second", [("sum(rate(knhk_ledger_commit_duration_seconds_count[5m]))", "commits")],
              unit="ops"),
    ], "The ledger: verification results and freshness, growth, append throughput."),
    "knhk-resources.json": dashboard("knhk-resources", "KNHK resources", [
        panel("CPU cores used", [("sum by (instance) (rate(process_cpu_seconds_total{job=\"knhk\"}[5m]))",
                                  "{{instance}}")]),
        panel("Resident memory", [("sum by (instance) (process_resident_memory_bytes{job=\"knhk\"})", "{{instance}}")],
              unit="bytes"),
        panel("Virtual memory", [("sum by (instance) (process_virtual_memory_bytes{job=\"knhk\"})", "{{instance}}")],
              unit="bytes"),
        panel("Open file descriptors / limit",
              [("max by (instance) (process_open_fds{job=\"knhk\"} / process_max_fds{job=\"knhk\"})", "{{instance}}")],
              unit="percentunit"),
        panel("Garbage collections per second",
              [("sum by (generation) (rate(python_gc_collections_total{job=\"knhk\"}[5m]))", "gen {{generation}}")],
              unit="ops"),
        panel("Running version", [("max by (version) (knhk_build_info)", "{{version}}")], kind="stat"),
    ], "Process resources of each KNHK instance (one worker per process; see docs/observability.md)."),
}


def render() -> dict[str, str]:
    return {name: json.dumps(d, indent=2, ensure_ascii=False) + "\n" for name, d in DASHBOARDS.items()}


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (OUT / name).write_text(text)
        print(f"wrote {OUT / name}", file=sys.stderr)
