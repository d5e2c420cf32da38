"""The load-test tool (``python -m bench.load``) against a live ``knhk serve``: a short run writes its JSON
summary and latency PNG and passes its thresholds; an impossible threshold makes it exit 1."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from knhk.config import Settings
from knhk.identity.local import LocalIssuer
from support.serve import serve

# a load generator that takes the whole machine: run alone (make test), not beside other tests
pytestmark = pytest.mark.serial

ROOT = Path(__file__).resolve().parents[2]


def _loadtest(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bench.load", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=240, check=False)


def test_short_run_starts_the_service_and_writes_summary_and_plot(tmp_path: Path) -> None:
    out = tmp_path / "run"
    # thresholds loose enough for a shared, loaded CI box; the next test shows they bind
    done = _loadtest("--profile", "smoke", "--rate", "20", "--duration", "6", "--workers", "1", "--clients", "2",
                     "--batch-size", "20", "--p95-ms", "3000", "--p99-ms", "5000", "--min-rate-ratio", "0.5",
                     "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["passed"] is True
    assert summary["breaches"] == []
    assert summary["server"]["started_by_tool"] is True
    assert summary["requests"] >= 60
    assert summary["errors"] == 0
    assert set(summary["by_endpoint"]) <= {"ingest", "ingest_batch", "snapshot_current", "receipt_proof"}
    assert "ingest" in summary["by_endpoint"]
    assert summary["by_endpoint"]["ingest"]["status_codes"] == {"201": summary["by_endpoint"]["ingest"]["requests"]}
    lat = summary["latency_ms"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert len(summary["timeline"]["t"]) >= 4
    # where the machine's CPU went: the service and PostgreSQL both worked, and the machine was not idle
    assert summary["server"]["cpu_share"] > 0
    assert summary["database_cpu_share"] > 0
    assert 0 < summary["machine_busy_share"] <= 1
    assert (out / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_breached_threshold_exits_non_zero_against_a_given_url(pg_url: str, tmp_path: Path) -> None:
    env = {"KNHK_DATABASE_URL": pg_url, "KNHK_DATA_DIR": str(tmp_path / "data")}
    with serve(env) as (url, _proc):
        token = LocalIssuer.from_settings(Settings(data_dir=tmp_path / "data")).mint(
            ["ingestor", "observer"], subject="load").token
        out = tmp_path / "run"
        done = _loadtest("--url", url, "--token", token, "--rate", "10", "--duration", "4", "--mix",
                         "single=1,snapshot=1,proof=1", "--p95-ms", "0.001", "--out", str(out))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "THRESHOLD BREACHED: p95" in done.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["passed"] is False
    assert summary["server"]["started_by_tool"] is False
    assert any(b.startswith("p95") for b in summary["breaches"])
    assert summary["errors"] == 0
    assert summary["by_endpoint"]["receipt_proof"]["requests"] > 0
    assert (out / "latency.png").exists()


def test_usage_errors_exit_2() -> None:
    assert _loadtest("--url", "http://127.0.0.1:9").returncode == 2  # no --token
    assert _loadtest("--mix", "single=1,bogus=2").returncode == 2
