"""The built manifests (each overlay, as `kubectl kustomize` renders them) agree with the product they run: every
probe and the ServiceMonitor hit a real route of the FastAPI app on the port `knhk serve` listens on (the
ConfigMap's KNHK_PORT as Settings reads it); every Job and CronJob runs a real `knhk` subcommand (its
`--help` succeeds and its options exist); every ConfigMap key is a real Settings field; and the database
connections all pods and jobs may open fit under Patroni's max_connections."""

from __future__ import annotations

import copy
import functools
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from knhk.config import Settings
from knhk.service.app import create_app
from support.serve import KNHK

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ["staging", "production"]
SECRETS_DIR_ENV = "KNHK_SECRETS_DIR"  # read by config.py itself (the secrets directory of Settings)


def build(overlay: str) -> list[dict[str, Any]]:
    return copy.deepcopy(_build(overlay))


@functools.cache
def _build(overlay: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is not installed"
    done = subprocess.run([kubectl, "kustomize", str(ROOT / "deploy" / "kubernetes" / "overlays" / overlay)],
                          capture_output=True, text=True, timeout=120, check=True)
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    spec = obj.get("spec", {})
    template = spec.get("jobTemplate", {}).get("spec", {}).get("template") or spec.get("template")
    return template["spec"] if template else None


def configmap(objects: list[dict[str, Any]]) -> dict[str, str]:
    (cm,) = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "knhk-config"]
    return dict(cm["data"])


def settings_from(data: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key in [k for k in os.environ if k.startswith("KNHK_")]:
        monkeypatch.delenv(key)
    for key, value in data.items():
        monkeypatch.setenv(key, value)
    return Settings(_env_file=None)  # type: ignore[call-arg]


@pytest.fixture(scope="module")
def routes() -> set[tuple[str, str]]:
    app = create_app(Settings(_env_file=None), background=False)  # type: ignore[call-arg]
    schema = app.openapi()
    return {(method.upper(), path) for path, ops in schema["paths"].items() for method in ops}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_configmap_key_is_a_settings_field(overlay: str, monkeypatch: pytest.MonkeyPatch) -> None:
    data = configmap(build(overlay))
    known = {f"KNHK_{name.upper()}" for name in Settings.model_fields} | {SECRETS_DIR_ENV}
    assert set(data) <= known, f"not a Settings field: {sorted(set(data) - known)}"
    settings = settings_from(data, monkeypatch)  # and each value is valid for its field
    for key, value in data.items():
        if key != SECRETS_DIR_ENV:
            assert getattr(settings, key.removeprefix("KNHK_").lower()) is not None, (key, value)
    for obj in build(overlay):
        pod = pod_spec(obj)
        for c in (pod or {}).get("containers", []):
            for env in c.get("env", []):
                assert env["name"] in known or not env["name"].startswith("KNHK_"), env["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_and_scrapes_hit_real_routes_on_the_serve_port(overlay: str, routes: set[tuple[str, str]],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    objects = build(overlay)
    settings = settings_from(configmap(objects), monkeypatch)
    deployments = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"].startswith("knhk-")]
    assert {d["metadata"]["name"] for d in deployments} == {"knhk-blue", "knhk-green"}
    for dep in deployments:
        pod = pod_spec(dep)
        assert pod
        (c,) = pod["containers"]
        assert c["args"][0] == "serve"
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert ports == {"http": settings.port}, "the container port is the one `knhk serve` listens on"
        assert settings.host == "0.0.0.0"  # reachable from the kubelet and the Service
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            get = c[probe]["httpGet"]
            port = ports.get(get["port"], get["port"])
            assert port == settings.port, (dep["metadata"]["name"], probe)
            assert ("GET", get["path"]) in routes, f"{probe} path {get['path']} is not a route of the app"
        assert c["livenessProbe"]["httpGet"]["path"] == "/health/live"  # never touches a dependency
        assert c["readinessProbe"]["httpGet"]["path"] == "/health/ready"
        startup = c["startupProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 150
    services = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Service"}
    for name in ("knhk", "knhk-blue", "knhk-green"):
        (port,) = services[name]["spec"]["ports"]
        assert port["targetPort"] == "http"
    (monitor,) = [o for o in objects if o["kind"] == "ServiceMonitor"]
    for endpoint in monitor["spec"]["endpoints"]:
        assert ("GET", endpoint["path"]) in routes
        assert endpoint["port"] in {p["name"] for p in services["knhk-blue"]["spec"]["ports"]}
    assert "track" in monitor["spec"]["podTargetLabels"]  # canary.sh selects the colour by it


def test_every_job_runs_a_real_knhk_command() -> None:
    by_overlay: dict[str, dict[str, list[str]]] = {}
    for overlay in OVERLAYS:
        seen = by_overlay.setdefault(overlay, {})
        for obj in build(overlay):
            if obj["kind"] not in {"Job", "CronJob"}:
                continue
            pod = pod_spec(obj)
            assert pod
            for c in pod["containers"]:
                assert c["image"].rsplit("/", 1)[-1].startswith("knhk:"), c["image"]
                assert "command" not in c  # the image's entrypoint is knhk
                seen[obj["metadata"]["name"]] = c["args"]
    seen = by_overlay["staging"]
    assert by_overlay["production"] == seen
    assert seen == {
        "knhk-migrate": ["db", "migrate"],
        "knhk-verify-ledger": ["receipts", "verify", "--log", "all", "--workers", "2"],
        "knhk-backup": ["backup", "create", "--logical", "--actor", "cronjob/knhk-backup"],
        "knhk-verify-backup": ["backup", "verify", "latest"],
        "knhk-archive": ["archive", "run", "--actor", "cronjob/knhk-archive"],
    }
    for name, args in seen.items():
        # the subcommand exists: its words before the first option, less positional values
        words = []
        for a in args:
            if a.startswith("-"):
                break
            words.append(a)
        while words:
            done = subprocess.run([KNHK, *words, "--help"], capture_output=True, text=True, timeout=60)
            if done.returncode == 0 and "Usage: knhk " + " ".join(words) in " ".join(done.stdout.split()):
                break
            words.pop()  # a positional argument (e.g. `latest`)
        assert words, f"{name}: no knhk subcommand in {args}"
        text = " ".join(done.stdout.split())
        for option in (a for a in args if a.startswith("--")):
            assert option in text, f"{name}: knhk {' '.join(words)} has no {option}"


def test_database_connections_fit_under_max_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    objects = build("production")
    settings = settings_from(configmap(objects), monkeypatch)
    hpas = [o for o in objects if o["kind"] == "HorizontalPodAutoscaler"]
    assert len(hpas) == 2
    live_max = max(h["spec"]["maxReplicas"] for h in hpas)
    idle_min = min(h["spec"]["minReplicas"] for h in hpas)
    jobs = sum(1 for o in objects if o["kind"] in {"Job", "CronJob"})
    per_pod = settings.workers * settings.db_pool_max
    (patroni,) = [o for o in objects if o["kind"] == "ConfigMap" and "patroni" in o["metadata"]["name"]]
    text = " ".join(patroni["data"].values())
    max_connections = int(text.split("max_connections:")[1].split()[0])
    worst = (live_max + idle_min) * per_pod + jobs * settings.db_pool_max
    assert worst < max_connections - 3, (worst, max_connections)  # PostgreSQL keeps superuser slots
