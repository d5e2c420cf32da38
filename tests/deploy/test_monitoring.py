"""The monitoring artefacts of deploy/monitoring/ as real tools see them: promtool checks the scrape config and
rules and runs the alert unit tests, amtool checks the Alertmanager config, the dashboards are what the
generator writes, and every metric any rule or panel names is declared in the registry."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from knhk.ops.telemetry.conformance import prometheus_name
from knhk.ops.telemetry.registry import default_registry_dir, load_registry

ROOT = Path(__file__).resolve().parents[2]
MON = ROOT / "deploy" / "monitoring"
ALERTS = {"KnhkServiceDown": ("P0", "service-down.md"), "KnhkHighErrorRate": ("P0", "high-error-rate.md"),
          "KnhkDatabasePoolExhausted": ("P1", "database-pool-exhausted.md"),
          "KnhkHotPathOverBudget": ("P1", "hot-path-over-budget.md"),
          "KnhkWarmPathSlow": ("P2", "warm-path-slow.md"),
          "KnhkReceiptChainBroken": ("P0", "receipt-chain-integrity.md"),
          "KnhkTelemetryCheckFailed": ("P2", "telemetry-check-failed.md"),
          "KnhkReceiptChainVerificationStale": ("P1", "receipt-chain-integrity.md")}
METRIC = re.compile(r"\b((?:knhk|process|python)_[a-z0-9_]+)\b")


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed (scripts/test-tools.txt; run ./scripts/bootstrap.sh --services)"
    return path


def run(*args: str, cwd: Path = MON) -> str:
    done = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_promtool_checks_config_and_rules_and_the_alert_unit_tests_pass() -> None:
    promtool = tool("promtool")
    assert "SUCCESS" in run(promtool, "check", "config", "prometheus.yml")
    assert "SUCCESS" in run(promtool, "check", "rules", "rules/knhk-recording.yml", "rules/knhk-alerts.yml")
    assert "SUCCESS" in run(promtool, "test", "rules", "tests/knhk-alerts.test.yml")


def test_alertmanager_config_routes_on_the_one_severity_scheme() -> None:
    assert "SUCCESS" in run(tool("amtool"), "check-config", "alertmanager/alertmanager.yml")
    config = yaml.safe_load((MON / "alertmanager" / "alertmanager.yml").read_text())
    routed = {m for r in config["route"]["routes"] for m in r["matchers"]}
    assert routed == {f'severity="P{i}"' for i in range(4)}


def rules() -> list[dict[str, object]]:
    out = []
    for f in ("knhk-recording.yml", "knhk-alerts.yml"):
        out += [r for g in yaml.safe_load((MON / "rules" / f).read_text())["groups"] for r in g["rules"]]
    return out


def test_the_seven_alerts_exist_with_severity_and_runbook() -> None:
    alerts = {r["alert"]: r for r in rules() if "alert" in r}
    assert set(alerts) == set(ALERTS)
    for name, (severity, runbook) in ALERTS.items():
        rule = alerts[name]
        assert rule["labels"] == {"severity": severity}, name  # type: ignore[comparison-overlap]
        annotations = rule["annotations"]
        assert isinstance(annotations, dict)
        assert annotations["runbook_url"] == f"docs/runbooks/{runbook}"
        assert annotations["summary"]
        assert annotations["description"]
        # no latching "counter > 0": a counter only ever appears inside increase() or rate()
        for counter in re.findall(r"\b(knhk_[a-z0-9_]+_total)\b", str(rule["expr"])):
            assert re.search(rf"(increase|rate)\({counter}", str(rule["expr"])), (name, counter)


def test_dashboards_are_current_provisioning_files() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import monitoring_dashboards
    finally:
        sys.path.pop(0)
    for name, text in monitoring_dashboards.render().items():
        committed = (MON / "dashboards" / name).read_text()
        assert committed == text, f"{name} is stale: run scripts/monitoring_dashboards.py"
        board = json.loads(committed)
        assert "dashboard" not in board
        assert board["uid"]
        assert board["schemaVersion"] >= 36
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids))
        assert {p["type"] for p in board["panels"]} <= {"timeseries", "stat"}
    overview = json.loads((MON / "dashboards" / "knhk-overview.json").read_text())
    assert len(overview["panels"]) == 11
    assert len(list((MON / "dashboards").glob("*.json"))) == 5


def queries() -> list[str]:
    out = [str(r["expr"]) for r in rules()]
    for f in sorted((MON / "dashboards").glob("*.json")):
        out += [t["expr"] for p in json.loads(f.read_text())["panels"] for t in p["targets"]]
    return out


def test_every_metric_named_by_rules_and_panels_is_declared_in_the_registry() -> None:
    registry = load_registry(default_registry_dir())
    declared = {prometheus_name(s) for s in registry.of_type("metric")}
    histograms = {prometheus_name(s) for s in registry.of_type("metric") if s.instrument == "histogram"}
    for expr in queries():
        for name in METRIC.findall(expr):
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            assert name in declared or base in histograms, f"{name} (in {expr!r}) is not declared in registry/"
