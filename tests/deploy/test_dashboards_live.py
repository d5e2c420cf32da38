"""A real Prometheus (Debian's) scraping a real `knhk serve` on PostgreSQL under a short load: every recording
rule, every alert expression and every dashboard panel query parses and returns data, and no panel names a
metric the service does not expose. The overview dashboard is rendered to a PNG as an operator would see it
(KNHK_DASHBOARD_PNG=path writes it there, e.g. docs/observability-overview.png)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from knhk.config import Settings
from knhk.identity.local import LocalIssuer
from support.serve import free_port, serve

ROOT = Path(__file__).resolve().parents[2]
MON = ROOT / "deploy" / "monitoring"
METRIC = re.compile(r"\b((?:knhk|process|python)_[a-z0-9_]+)\b")


def as_bool(expr: str) -> str:
    """An alert expression with each comparison against a number turned into ``bool`` form (returns 0/1 series
    whether or not the alert would fire)."""
    return re.sub(r"(==|!=|>=|<=|>|<)\s*(?=[\d(])", r"\1 bool ", expr)


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    binary = shutil.which("prometheus")
    assert binary, "prometheus is not installed (scripts/test-tools.txt; ./scripts/bootstrap.sh --services)"
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    for f in (MON / "rules").glob("*.yml"):  # the shipped rules, evaluated every second for the test
        doc = yaml.safe_load(f.read_text())
        for g in doc["groups"]:
            g["interval"] = "1s"
        (rules_dir / f.name).write_text(yaml.safe_dump(doc))
    port = free_port()
    return f"http://127.0.0.1:{port}", rules_dir


def test_every_rule_alert_and_panel_returns_data_from_a_real_prometheus(
        prometheus: tuple[str, Path], pg_url: str, tmp_path: Path) -> None:
    prom_url, rules_dir = prometheus
    data = tmp_path / "knhk"
    env = {"KNHK_DATABASE_URL": pg_url, "KNHK_DATA_DIR": str(data), "KNHK_DB_POOL_MIN": "1",
           "KNHK_DB_POOL_MAX": "8", "KNHK_CYCLE_INTERVAL_S": "0", "KNHK_TELEMETRY_CHECK_INTERVAL_S": "2"}
    with serve(env) as (url, _):
        target = url.removeprefix("http://")
        config = yaml.safe_load((MON / "prometheus.yml").read_text())
        config["global"].update({"scrape_interval": "1s", "evaluation_interval": "1s"})
        config["rule_files"] = [str(p) for p in sorted(rules_dir.glob("*.yml"))]
        config.pop("alerting")
        config["scrape_configs"][0].update({"scrape_interval": "1s", "scrape_timeout": "1s",
                                            "static_configs": [{"targets": [target]}]})
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        proc = subprocess.Popen([shutil.which("prometheus") or "prometheus",
                                 f"--config.file={tmp_path / 'prometheus.yml'}",
                                 f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                 f"--web.listen-address={prom_url.removeprefix('http://')}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            started = time.time()
            _load(url, Settings(data_dir=data, database_url=pg_url), seconds=20)
            exposed = {s for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines()
                       if line and not line.startswith("#") for s in [line.split("{")[0].split(" ")[0]]}
            _wait_for(prom_url, 'count_over_time(up{job="knhk"}[5m]) >= 15')
            problems = []
            for kind, expr in _queries():
                query = as_bool(expr) if kind == "alert" else expr
                result = _query(prom_url, query)
                if result is None or not result:
                    problems.append(f"{kind}: {query!r} returned {result!r}")
                if kind == "panel":
                    for name in METRIC.findall(expr):
                        if name not in exposed:
                            problems.append(f"panel query {expr!r} names {name}, which /metrics does not expose")
            assert not problems, "\n".join(problems)
            png = Path(os.environ.get("KNHK_DASHBOARD_PNG") or tmp_path / "overview.png")
            _render(prom_url, started, time.time(), png)
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert png.stat().st_size > 20_000
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def _queries() -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for f in sorted((MON / "rules").glob("*.yml")):
        for g in yaml.safe_load(f.read_text())["groups"]:
            for r in g["rules"]:
                out.append(("alert", r["expr"]) if "alert" in r else ("record", r["record"]))
                if "record" in r:
                    out.append(("record", r["expr"]))
    for f in sorted((MON / "dashboards").glob("*.json")):
        out += [("panel", t["expr"]) for p in json.loads(f.read_text())["panels"] for t in p["targets"]]
    return out


def _query(prom_url: str, expr: str) -> list[Any] | None:
    r = httpx.get(f"{prom_url}/api/v1/query", params={"query": expr}, timeout=10)
    body = r.json()
    if body.get("status") != "success":
        raise AssertionError(f"Prometheus refused {expr!r}: {body.get('error')}")
    result: list[Any] = body["data"]["result"]
    return result


def _wait_for(prom_url: str, expr: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if _query(prom_url, expr):
                return
        except (httpx.HTTPError, AssertionError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"Prometheus never satisfied {expr}")


def _load(url: str, settings: Settings, *, seconds: float) -> None:
    """A short, bounded load on loopback: single and batch ingest, a guard violation, a schema drift and cycles,
    reads, a 404; four threads for ``seconds``."""
    issuer = LocalIssuer.from_settings(settings)

    def auth(*roles: str, who: str) -> dict[str, str]:
        return {"Authorization": "Bearer " + issuer.mint(roles, subject=who, mfa=True).token}

    ingestor, operator = auth("ingestor", who="gw@x"), auth("operator", who="ops@x")
    observer = auth("observer", who="o@x")
    stop = time.monotonic() + seconds
    errors: list[str] = []

    def ingest(worker: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as c:
            i = 0
            while time.monotonic() < stop:
                i += 1
                amount = 5_000_000 if i % 25 == 0 else 10
                r = c.post("/api/v1/observations", headers=ingestor, json={
                    "id": f"w{worker}-{i}", "event_type": "payment.created", "sector": "finance",
                    "value": {"account_id": "A-1", "transaction_amount": amount, "currency": "EUR"}})
                if r.status_code != 201:
                    errors.append(r.text)
                c.get("/api/v1/receipts?limit=5", headers=observer)

    def loop() -> None:
        with httpx.Client(base_url=url, timeout=60) as c:
            n = 0
            while time.monotonic() < stop:
                n += 1
                drift = [{"id": f"s{n}-{i}", "event_type": f"shipment.rerouted{n % 3}", "sector": "logistics",
                          "value": {"shipment_id": f"S-{i}", "carrier": "north"}} for i in range(30)]
                c.post("/api/v1/observations/batch", headers=ingestor, json={"observations": drift})
                for sector in ("logistics", "finance"):
                    r = c.post("/api/v1/cycles", headers=operator, json={"sector": sector})
                    if r.status_code not in (201, 409):
                        errors.append(r.text)
                c.get("/api/v1/nowhere", headers=observer)
                time.sleep(0.5)

    threads = [threading.Thread(target=ingest, args=(w,)) for w in range(3)] + [threading.Thread(target=loop)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]


def _render(prom_url: str, start: float, end: float, out: Path) -> None:
    """Every panel of the overview dashboard, drawn from Prometheus's range queries."""
    os.environ.setdefault("MPLCONFIGDIR", tempfile.mkdtemp(prefix="mpl-"))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    board = json.loads((MON / "dashboards" / "knhk-overview.json").read_text())
    panels = board["panels"]
    fig, axes = plt.subplots(4, 3, figsize=(18, 16))
    for ax, p in zip(axes.flat, panels, strict=False):
        ax.set_title(p["title"], fontsize=10)
        for t in p["targets"]:
            r = httpx.get(f"{prom_url}/api/v1/query_range",
                          params={"query": t["expr"], "start": start, "end": end + 5, "step": 1}, timeout=10).json()
            for series in r["data"]["result"]:
                xs = [float(v[0]) - start for v in series["values"]]
                ys = [float(v[1]) for v in series["values"]]
                labels = series["metric"]
                label = re.sub(r"\{\{(\w+)\}\}", lambda m, labels=labels: labels.get(m.group(1), ""), t["legendFormat"])
                if p["type"] == "stat":
                    ax.text(0.5, 0.5 - 0.2 * len(ax.texts), f"{label}: {ys[-1]:g}", ha="center", va="center",
                            fontsize=16, transform=ax.transAxes,
                            color="green" if ys[-1] >= (p["fieldConfig"]["defaults"]["thresholds"]["steps"][-1]
                                                        ["value"] or 0) else "red")
                    ax.set_xticks([])
                    ax.set_yticks([])
                else:
                    ax.plot(xs, ys, label=label[:40])
        for step in p["fieldConfig"]["defaults"]["thresholds"]["steps"][1:]:
            if p["type"] == "timeseries":
                ax.axhline(step["value"], color="red", linestyle="--", linewidth=0.8)
        if p["type"] == "timeseries":
            ax.set_xlabel("seconds into the test", fontsize=8)
            ax.legend(fontsize=7, loc="upper left")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(f"{board['title']} — a real Prometheus scraping knhk serve under a {end - start:.0f} s load",
                 fontsize=14)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=70)
    plt.close(fig)
