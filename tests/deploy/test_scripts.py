"""deploy/scripts/ run for real: shellcheck on every script; smoke-test.sh against a live `knhk serve` and a
broken target; blue-green-deploy.sh, canary.sh and rollback.sh against a fake `kubectl` (fake_kubectl.py:
the cluster is the staging overlay's built objects, changed by the real kubectl offline, with any step made
to fail) and canary.sh against a small real HTTP server answering Prometheus' /api/v1/query with scripted
healthy, failing, slow or empty results. Audit entries are read back with `knhk audit list`.

Each `knhk audit append` costs a CLI start (about a second here), so the tests that inject a failure at every
step record audit calls with a small recorder (KNHK_AUDIT_CMD); the others use the real CLI and database."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
import yaml

from support.serve import KNHK, free_port, serve

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "deploy" / "scripts"
NAMESPACE = "knhk-staging"
NEW = "registry.internal/knhk/knhk:0.2.0"
OLD = "registry.internal/knhk/knhk:0.1.0"
REAL_KUBECTL = shutil.which("kubectl")


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("KNHK_", "FAKE_KUBECTL_"))}


@pytest.fixture(scope="module")
def overlay() -> list[dict[str, Any]]:
    assert REAL_KUBECTL, "kubectl is not installed"
    done = subprocess.run([REAL_KUBECTL, "kustomize", str(ROOT / "deploy/kubernetes/overlays/staging")],
                          capture_output=True, text=True, timeout=120, check=True)
    return [d for d in yaml.safe_load_all(done.stdout) if d]


@dataclass
class Live:
    url: str
    token: str


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """A `knhk serve` on SQLite, and a token with the smoke test's roles from its local issuer."""
    data = tmp_path_factory.mktemp("serve") / "knhk"
    env = {**clean_env(), "KNHK_DATA_DIR": str(data), "KNHK_CYCLE_INTERVAL_S": "0"}
    with serve(env) as (url, _proc):
        token = subprocess.run([KNHK, "token", "mint", "--role", "ingestor", "--role", "analyst", "--role",
                                "observer", "--sector", "finance", "--subject", "smoke@example.org"],
                               env=env, capture_output=True, text=True, timeout=60, check=True).stdout.strip()
        yield Live(url, token)


@pytest.fixture(scope="module")
def audit_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An initialised data directory (SQLite store, keys, sector packs), copied by each test that audits for real
    (initialising one takes seconds)."""
    data = tmp_path_factory.mktemp("audit") / "knhk"
    subprocess.run([KNHK, "init"], env={**clean_env(), "KNHK_DATA_DIR": str(data)}, capture_output=True,
                   text=True, timeout=120, check=True)
    return data


@dataclass
class Cluster:
    """The fake cluster, the environment the scripts run in, and what they did."""

    root: Path
    env: dict[str, str]
    recorder: bool = False

    def obj(self, kind: str, name: str) -> dict[str, Any]:
        return json.loads((self.root / "state" / f"{kind}.{name}.json").read_text())  # type: ignore[no-any-return]

    @property
    def track(self) -> str:
        return str(self.obj("Service", "knhk")["spec"]["selector"]["track"])

    def image(self, colour: str) -> str:
        return str(self.obj("Deployment", f"knhk-{colour}")["spec"]["template"]["spec"]["containers"][0]["image"])

    @property
    def weight(self) -> str:
        return str(self.obj("Ingress", "knhk-canary")["metadata"]["annotations"][
            "nginx.ingress.kubernetes.io/canary-weight"])

    def calls(self) -> list[list[str]]:
        rows = [json.loads(line) for line in (self.root / "kubectl.log").read_text().splitlines()]
        assert all(r["namespace"] == NAMESPACE for r in rows)
        return [r["args"] for r in rows]

    def audit(self) -> list[dict[str, Any]]:
        if self.recorder:
            path = self.root / "audit.log"
            return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        done = subprocess.run([KNHK, "audit", "list", "--json", "--limit", "500"], env=self.env,
                              capture_output=True, text=True, timeout=60, check=True)
        return [e for e in json.loads(done.stdout) if e["action"].startswith("deploy.")]

    def forwards_running(self) -> list[int]:
        """The fake `kubectl port-forward` processes a script started and left running."""
        path = self.root / "port-forward.pids"
        pids = [int(p) for p in path.read_text().split()] if path.exists() else []
        running = []
        for pid in pids:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                continue
            running.append(pid)
        return running

    def actions(self) -> list[str]:
        return [e["action"] for e in self.audit()]

    def run(self, script: str, *args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(SCRIPTS / script), *args], env={**self.env, **env}, input=stdin,
                              capture_output=True, text=True, timeout=180)


RECORDER = """#!/usr/bin/env python3
import json, sys
args = sys.argv[1:]
entry = {args[i].lstrip("-"): args[i + 1] for i in range(0, len(args), 2)}
entry["metadata"] = json.loads(entry["metadata"])
with open(sys.argv[0] + ".log", "a") as f:
    f.write(json.dumps(entry) + "\\n")
"""


def make_cluster(tmp_path: Path, overlay: list[dict[str, Any]], live: Live, store: Path | None) -> Cluster:
    recorder = store is None
    if store is not None:
        shutil.copytree(store, tmp_path / "audit-store")
    state = tmp_path / "state"
    state.mkdir()
    for obj in overlay:
        if obj["kind"] == "Deployment":
            n = obj["spec"]["replicas"]
            obj = {**obj, "status": {"replicas": n, "readyReplicas": n, "updatedReplicas": n}}
        (state / f"{obj['kind']}.{obj['metadata']['name']}.json").write_text(json.dumps(obj))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    kubectl = bin_dir / "kubectl"
    kubectl.write_text(f"#!/bin/sh\nexec {sys.executable} {Path(__file__).with_name('fake_kubectl.py')} \"$@\"\n")
    kubectl.chmod(0o755)
    env = {**clean_env(), "PATH": f"{bin_dir}:{Path(KNHK).parent}:{os.environ['PATH']}",
           "REAL_KUBECTL": str(REAL_KUBECTL), "FAKE_KUBECTL_STATE": str(state),
           "FAKE_KUBECTL_LOG": str(tmp_path / "kubectl.log"), "FAKE_KUBECTL_FORWARD_PORT": live.url.rsplit(":", 1)[1],
           "KNHK_DATA_DIR": str(tmp_path / "audit-store"), "KNHK_NAMESPACE": NAMESPACE, "KNHK_POLL_S": "0",
           "KNHK_DEPLOY_ACTOR": "ci@example.org", "KNHK_SMOKE_TOKEN": live.token}
    if recorder:
        audit = tmp_path / "audit"
        audit.write_text(RECORDER)
        audit.chmod(0o755)
        env["KNHK_AUDIT_CMD"] = str(audit)
    (tmp_path / "kubectl.log").touch()
    return Cluster(tmp_path, env, recorder)


@pytest.fixture
def cluster(tmp_path: Path, overlay: list[dict[str, Any]], live: Live, audit_store: Path) -> Cluster:
    """The fake cluster, audited into a real store (`knhk audit append`)."""
    return make_cluster(tmp_path, overlay, live, audit_store)


@pytest.fixture
def quick_cluster(tmp_path: Path, overlay: list[dict[str, Any]], live: Live) -> Cluster:
    """The fake cluster, audit calls recorded by RECORDER."""
    return make_cluster(tmp_path, overlay, live, None)


# --- shellcheck -------------------------------------------------------------------------------------------


def test_every_script_is_shellcheck_clean() -> None:
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is not installed (scripts/test-tools.txt; ./scripts/bootstrap.sh --services)"
    scripts = sorted(SCRIPTS.glob("*.sh"))
    assert {p.name for p in scripts} >= {"blue-green-deploy.sh", "canary.sh", "rollback.sh", "smoke-test.sh"}
    done = subprocess.run([shellcheck, "--external-sources", "--severity=style", *map(str, scripts)],
                          cwd=SCRIPTS, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    for p in scripts:
        text = p.read_text()
        assert "set -euo pipefail" in text or p.name == "lib.sh", p.name
        assert p.name == "lib.sh" or os.access(p, os.X_OK), f"{p.name} is not executable"


# --- smoke-test.sh ----------------------------------------------------------------------------------------


def test_smoke_test_passes_against_a_live_serve(cluster: Cluster, live: Live) -> None:
    done = cluster.run("smoke-test.sh", live.url)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[:2] for line in lines[:8]] == [["PASS", str(i)] for i in range(1, 9)], done.stdout
    assert lines[-1] == f"SUMMARY {live.url}: 8/8 passed"
    (entry,) = cluster.audit()
    assert (entry["action"], entry["resource"], entry["outcome"]) == ("deploy.smoke_test", live.url, "success")
    assert entry["metadata"] == {"passed": "8", "failed": "0"}


def test_smoke_test_fails_with_a_summary_against_a_broken_target(quick_cluster: Cluster, live: Live) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    done = quick_cluster.run("smoke-test.sh", dead)
    assert done.returncode == 1
    assert done.stdout.count("FAIL ") == 8
    assert done.stdout.splitlines()[-1].startswith(f"SUMMARY {dead}: 0/8 passed; failed: 1 health,2 database")
    # the live server without a token: the authenticated checks fail, by name
    done = quick_cluster.run("smoke-test.sh", live.url, KNHK_SMOKE_TOKEN="")
    assert done.returncode == 1
    assert done.stdout.splitlines()[-1] == (f"SUMMARY {live.url}: 5/8 passed; failed: 4 ingestion,5 patterns,"
                                            "7 telemetry+ledger")
    assert "no token" in done.stdout
    assert [(e["outcome"], e["metadata"]["failed"]) for e in quick_cluster.audit()] == [("failure", "8"),
                                                                                 ("failure", "3")]


def test_smoke_test_refuses_bad_usage(quick_cluster: Cluster) -> None:
    for args in ([], ["not-a-url"], ["--max-latency-ms", "x", "http://127.0.0.1:1"]):
        done = quick_cluster.run("smoke-test.sh", *args)
        assert done.returncode == 2, args
        assert "usage:" in done.stderr, args
    assert quick_cluster.audit() == []


# --- blue-green-deploy.sh ---------------------------------------------------------------------------------


def test_blue_green_happy_path_switches_the_selector_and_keeps_blue(quick_cluster: Cluster) -> None:
    assert quick_cluster.track == "blue"
    done = quick_cluster.run("blue-green-deploy.sh", "--image", NEW)
    assert done.returncode == 0, done.stdout + done.stderr
    assert quick_cluster.track == "green"
    assert quick_cluster.image("green") == NEW
    assert quick_cluster.image("blue") == OLD  # the old colour keeps running for rollback
    calls = quick_cluster.calls()
    job = next(c[2] for c in calls if c[0] == "create")
    verbs = [" ".join(c[:3]) for c in calls if c[0] != "get"]
    assert verbs == ["set image cronjob/knhk-migrate", f"create job {job}", "set image deployment/knhk-green",
                     "rollout status deployment/knhk-green", "port-forward service/knhk-green :8080",
                     "patch service knhk"]
    assert quick_cluster.obj("Job", job)["spec"]["template"]["spec"]["containers"][0]["image"] == NEW
    assert quick_cluster.actions() == ["deploy.blue_green.started", "deploy.blue_green.migrated",
                                 "deploy.blue_green.rolled_out", "deploy.smoke_test", "deploy.blue_green.completed"]
    assert (quick_cluster.root / "port-forward.pids").exists()
    assert quick_cluster.forwards_running() == []  # the port-forward is stopped after the smoke test
    completed = quick_cluster.audit()[-1]
    assert completed["metadata"] == {"image": NEW, "from": "blue", "to": "green"}
    assert completed["resource"] == f"namespace/{NAMESPACE}/service/knhk"


def test_blue_green_smoke_failure_keeps_the_old_colour(quick_cluster: Cluster) -> None:
    done = quick_cluster.run("blue-green-deploy.sh", "--image", NEW, FAKE_KUBECTL_FORWARD_PORT=str(free_port()))
    assert done.returncode == 1
    assert "smoke failed" in done.stderr
    assert "still selects blue" in done.stderr
    assert quick_cluster.track == "blue"
    assert not any(c[:2] == ["patch", "service"] for c in quick_cluster.calls())
    assert quick_cluster.forwards_running() == []
    assert quick_cluster.actions()[-2:] == ["deploy.smoke_test", "deploy.blue_green.failed"]
    failed = quick_cluster.audit()[-1]
    assert failed["outcome"] == "failure"
    assert failed["reason"].startswith("smoke:")


@pytest.mark.parametrize(("env", "step"), [
    ({"FAKE_KUBECTL_FAIL": "get service knhk"}, None),
    ({"FAKE_KUBECTL_FAIL": "set image cronjob"}, "migrate"),
    ({"FAKE_KUBECTL_FAIL": "create job"}, "migrate"),
    ({"FAKE_KUBECTL_JOB": "fail"}, "migrate"),
    ({"FAKE_KUBECTL_FAIL": "set image deployment"}, "rollout"),
    ({"FAKE_KUBECTL_UNREADY": "knhk-green"}, "rollout"),
    ({"FAKE_KUBECTL_FAIL": "port-forward"}, "smoke"),
    ({"FAKE_KUBECTL_FAIL": "patch service"}, "switch"),
])
def test_blue_green_failure_at_any_step_keeps_the_old_colour(quick_cluster: Cluster, env: dict[str, str],
                                                             step: str | None) -> None:
    done = quick_cluster.run("blue-green-deploy.sh", "--image", NEW, **env)
    assert done.returncode == 1, done.stderr
    assert quick_cluster.track == "blue"
    actions = quick_cluster.actions()
    if step is None:  # the live colour is unknown: nothing is done at all
        assert actions == []
        assert [c[0] for c in quick_cluster.calls()] == ["get"]
        return
    assert actions[0] == "deploy.blue_green.started"
    assert actions[-1] == "deploy.blue_green.failed"
    assert quick_cluster.audit()[-1]["reason"].startswith(f"{step}:")
    assert "deploy.blue_green.completed" not in actions


def test_blue_green_refuses_an_unpinned_image_and_a_failing_audit(quick_cluster: Cluster) -> None:
    for image in ("registry.internal/knhk/knhk", "registry.internal/knhk/knhk:latest"):
        done = quick_cluster.run("blue-green-deploy.sh", "--image", image)
        assert done.returncode == 2
        assert "pinned" in done.stderr
    done = quick_cluster.run("blue-green-deploy.sh", "--image", NEW, KNHK_AUDIT_CMD="false")
    assert done.returncode == 1
    assert "audit" in done.stderr
    assert not any(c[0] != "get" for c in quick_cluster.calls())  # no audit trail, no action


@pytest.mark.parametrize(("scenarios", "analyses", "track", "last"), [
    (["healthy"], 1, "green", "deploy.blue_green.completed"),
    (["failing"], 1, "blue", "deploy.blue_green.rolled_back"),
    (["nodata", "slow"], 2, "blue", "deploy.blue_green.rolled_back"),
    (["nodata"], 2, "blue", "deploy.blue_green.rolled_back"),  # one more watch allowed, then back
])
def test_blue_green_watch_switches_back_on_bad_metrics(quick_cluster: Cluster, prometheus: FakePrometheus,
                                                       scenarios: list[str], analyses: int, track: str,
                                                       last: str) -> None:
    prometheus.scenarios = scenarios
    done = quick_cluster.run("blue-green-deploy.sh", "--image", NEW, "--prometheus", prometheus.url, "--watch", "0",
                             "--max-inconclusive", "1")
    assert done.returncode == (0 if track == "green" else 1), done.stderr
    assert quick_cluster.track == track
    assert quick_cluster.actions()[-1] == last
    assert all('track="green"' in q for q in prometheus.queries)  # the new colour is the one analysed
    assert len(prometheus.queries) == 2 * analyses


# --- rollback.sh ------------------------------------------------------------------------------------------


def test_rollback_refuses_without_the_typed_confirmation(quick_cluster: Cluster) -> None:
    for answer in ("", "rollback\n", "yes\n"):
        done = quick_cluster.run("rollback.sh", stdin=answer)
        assert done.returncode == 1
        assert "Type ROLLBACK" in done.stderr
        assert "nothing changed" in done.stderr
        assert quick_cluster.track == "blue"
    assert not any(c[0] in {"patch", "annotate"} for c in quick_cluster.calls())
    assert [(e["action"], e["outcome"]) for e in quick_cluster.audit()] == [("deploy.rollback.aborted", "denied")] * 3


def test_rollback_proceeds_when_typed(quick_cluster: Cluster) -> None:
    done = quick_cluster.run("rollback.sh", stdin="ROLLBACK\n")
    assert done.returncode == 0, done.stderr
    assert quick_cluster.track == "green"
    assert quick_cluster.weight == "0"
    entries = quick_cluster.audit()
    assert [e["action"] for e in entries] == ["deploy.rollback.started", "deploy.rollback.completed"]
    assert entries[0]["metadata"] == {"from": "blue", "to": "green", "confirmed": "typed"}


def test_rollback_proceeds_with_yes_and_is_audited_in_the_store(cluster: Cluster) -> None:
    done = cluster.run("rollback.sh", "--yes", "--reason", "error budget burn")
    assert done.returncode == 0, done.stderr
    assert cluster.track == "green"
    assert cluster.weight == "0"
    entries = cluster.audit()  # read back from the audit log by `knhk audit list`
    assert [(e["action"], e["outcome"]) for e in entries] == [("deploy.rollback.started", "success"),
                                                              ("deploy.rollback.completed", "success")]
    assert entries[0]["metadata"] == {"from": "blue", "to": "green", "confirmed": "--yes"}
    assert entries[1]["reason"] == "error budget burn"
    assert entries[1]["resource"] == f"namespace/{NAMESPACE}/service/knhk"
    assert entries[1]["actor"].startswith("sub_")  # stored as a pseudonym
    verified = subprocess.run([KNHK, "audit", "verify"], env=cluster.env, capture_output=True, text=True,
                              timeout=60)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_rollback_refuses_a_colour_without_ready_pods(quick_cluster: Cluster) -> None:
    done = quick_cluster.run("rollback.sh", "--yes", FAKE_KUBECTL_UNREADY="knhk-green")
    assert done.returncode == 1
    assert "no ready pods" in done.stderr
    assert quick_cluster.track == "blue"
    assert quick_cluster.actions() == ["deploy.rollback.refused"]
    done = quick_cluster.run("rollback.sh", "--yes", FAKE_KUBECTL_FAIL="patch service")
    assert done.returncode == 1
    assert quick_cluster.track == "blue"
    assert quick_cluster.actions()[-1] == "deploy.rollback.failed"


# --- canary.sh --------------------------------------------------------------------------------------------

SCENARIOS = {"healthy": ("0.001", "0.02"), "failing": ("0.2", "0.02"), "slow": ("0", "0.5"),
             "nodata": (None, None), "nan": ("NaN", "NaN")}


@dataclass
class FakePrometheus:
    """Answers /api/v1/query: the n-th analysis (an error-ratio query, then a p95 query) gets the n-th
    scenario (the last one repeats)."""

    scenarios: list[str]
    queries: list[str] = field(default_factory=list)
    url: str = ""

    def answer(self, query: str) -> dict[str, Any]:
        self.queries.append(query)
        n = (len(self.queries) - 1) // 2
        err, p95 = SCENARIOS[self.scenarios[min(n, len(self.scenarios) - 1)]]
        value = p95 if query.startswith("histogram_quantile") else err
        result = [] if value is None else [{"metric": {}, "value": [1796280000.0, value]}]
        return {"status": "success", "data": {"resultType": "vector", "result": result}}


@pytest.fixture
def prometheus() -> Iterator[FakePrometheus]:
    fake = FakePrometheus(["healthy"])

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parsed = urlparse(self.path)
            queries = parse_qs(parsed.query).get("query")
            if parsed.path != "/api/v1/query" or not queries:
                self.send_error(404)
                return
            body = json.dumps(fake.answer(queries[0])).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


def canary(c: Cluster, prom: FakePrometheus, live: Live, *args: str,
           **env: str) -> subprocess.CompletedProcess[str]:
    return c.run("canary.sh", "--image", NEW, "--prometheus", prom.url, "--stage-wait", "0",
                 "--smoke-url", live.url, *args, **env)


def weights(c: Cluster) -> list[str]:
    return [a[-1].rsplit("=", 1)[1] for a in c.calls() if a[:2] == ["annotate", "ingress"]]


def test_canary_promotes_through_every_stage_on_good_metrics(quick_cluster: Cluster, prometheus: FakePrometheus,
                                                             live: Live, tmp_path: Path) -> None:
    done = canary(quick_cluster, prometheus, live)
    assert done.returncode == 0, done.stdout + done.stderr
    assert weights(quick_cluster) == ["1", "10", "50", "100", "0"]
    assert quick_cluster.track == "green"
    assert quick_cluster.image("green") == NEW
    assert quick_cluster.image("blue") == OLD
    backend = quick_cluster.obj("Ingress", "knhk-canary")["spec"]["rules"][0]["http"]["paths"][0]["backend"]
    assert backend["service"]["name"] == "knhk-green"
    assert len(prometheus.queries) == 8
    for q in prometheus.queries:
        assert f'namespace="{NAMESPACE}"' in q
        assert 'track="green"' in q
        assert 'job="knhk"' in q
    assert "knhk_requests_total{" in prometheus.queries[0]
    assert "knhk_request_duration_seconds_bucket{" in prometheus.queries[1]
    # the queries are valid PromQL (promtool parses them as recording rules) ...
    rules = {"groups": [{"name": "canary", "rules": [{"record": f"canary:q{i}", "expr": q}
                                                     for i, q in enumerate(prometheus.queries[:2])]}]}
    (tmp_path / "canary.yml").write_text(yaml.safe_dump(rules))
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed"
    checked = subprocess.run([promtool, "check", "rules", str(tmp_path / "canary.yml")], capture_output=True,
                             text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # ... on series the service really exposes
    metrics = subprocess.run(["curl", "-sS", f"{live.url}/metrics"], capture_output=True, text=True,
                             timeout=30, check=True).stdout
    assert "knhk_requests_total{" in metrics
    assert "knhk_request_duration_seconds_bucket{" in metrics
    actions = quick_cluster.actions()
    assert actions[0] == "deploy.canary.started"
    assert actions[-1] == "deploy.canary.completed"
    stages = [e["metadata"]["weight"] for e in quick_cluster.audit() if e["action"] == "deploy.canary.analysis"]
    assert stages == ["1", "10", "50", "100"]


@pytest.mark.parametrize("bad", ["failing", "slow"])
def test_canary_rolls_back_on_bad_metrics(quick_cluster: Cluster, prometheus: FakePrometheus, live: Live,
                                          bad: str) -> None:
    prometheus.scenarios = ["healthy", bad]
    done = canary(quick_cluster, prometheus, live)
    assert done.returncode == 1
    assert weights(quick_cluster) == ["1", "10", "0"]
    assert quick_cluster.track == "blue"
    assert quick_cluster.image("green") == NEW  # deployed, but given no traffic
    rolled = quick_cluster.audit()[-1]
    assert rolled["action"] == "deploy.canary.rolled_back"
    assert rolled["outcome"] == "failure"
    assert rolled["reason"].startswith("stage 10: analysis failed")


def test_canary_pauses_on_inconclusive_analysis_then_continues(quick_cluster: Cluster,
                                                               prometheus: FakePrometheus, live: Live) -> None:
    prometheus.scenarios = ["nodata", "nan", "healthy", "healthy", "nodata", "healthy", "healthy"]
    done = canary(quick_cluster, prometheus, live, "--max-inconclusive", "2")
    assert done.returncode == 0, done.stderr
    assert weights(quick_cluster) == ["1", "10", "50", "100", "0"]
    assert quick_cluster.track == "green"
    paused = [(e["metadata"]["weight"], e["metadata"]["inconclusive"]) for e in quick_cluster.audit()
              if e["action"] == "deploy.canary.paused"]
    assert paused == [("1", "1"), ("1", "2"), ("50", "1")]
    assert len(prometheus.queries) == 14


def test_canary_rolls_back_when_analysis_stays_inconclusive(quick_cluster: Cluster,
                                                            prometheus: FakePrometheus, live: Live) -> None:
    prometheus.scenarios = ["healthy", "nodata"]
    done = canary(quick_cluster, prometheus, live, "--max-inconclusive", "3")
    assert done.returncode == 1
    assert weights(quick_cluster) == ["1", "10", "0"]
    assert quick_cluster.track == "blue"
    assert len(prometheus.queries) == 2 + 2 * 4  # stage 1, then four inconclusive analyses at stage 10
    assert quick_cluster.audit()[-1]["reason"] == "stage 10: analysis inconclusive 4 times (no data)"


def test_canary_treats_an_unreachable_prometheus_as_inconclusive(quick_cluster: Cluster, live: Live) -> None:
    dead = FakePrometheus(["healthy"], url=f"http://127.0.0.1:{free_port()}")
    done = canary(quick_cluster, dead, live, "--max-inconclusive", "1")
    assert done.returncode == 1
    assert quick_cluster.track == "blue"
    assert weights(quick_cluster) == ["1", "0"]
    assert quick_cluster.actions()[-2:] == ["deploy.canary.paused", "deploy.canary.rolled_back"]


@pytest.mark.parametrize(("env", "step"), [
    ({"FAKE_KUBECTL_JOB": "fail"}, "migrate"),
    ({"FAKE_KUBECTL_UNREADY": "knhk-green"}, "rollout"),
    ({"FAKE_KUBECTL_FAIL": "patch ingress"}, "route"),
    ({"FAKE_KUBECTL_FAIL": "canary-weight=10"}, "stage 10"),
])
def test_canary_failure_at_any_step_keeps_the_stable_colour(quick_cluster: Cluster, prometheus: FakePrometheus,
                                                            live: Live, env: dict[str, str], step: str) -> None:
    done = canary(quick_cluster, prometheus, live, **env)
    assert done.returncode == 1
    assert quick_cluster.track == "blue"
    assert quick_cluster.audit()[-1]["reason"].startswith(f"{step}:")


def test_canary_refuses_bad_usage(quick_cluster: Cluster) -> None:
    for args in (["--image", NEW], ["--image", NEW, "--prometheus", "http://p", "--stages", "1 10 50"],
                 ["--image", NEW, "--prometheus", "http://p", "--stages", "0 100"]):
        done = quick_cluster.run("canary.sh", *args)
        assert done.returncode == 2, args
        assert "usage:" in done.stderr, args
    assert quick_cluster.calls() == []


@pytest.fixture
def real_prometheus(tmp_path: Path, live: Live) -> Iterator[str]:
    """Debian's Prometheus scraping the live `knhk serve` every second as the ServiceMonitor would label a
    green pod in the staging namespace (job, namespace, track)."""
    binary = shutil.which("prometheus")
    assert binary, "prometheus is not installed (scripts/test-tools.txt; ./scripts/bootstrap.sh --services)"
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
              "scrape_configs": [{"job_name": "knhk", "scrape_interval": "1s", "scrape_timeout": "1s",
                                  "static_configs": [{"targets": [live.url.removeprefix("http://")],
                                                      "labels": {"namespace": NAMESPACE, "track": "green"}}]}]}
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    proc = subprocess.Popen([binary, f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_canary_analysis_reads_real_series_from_a_real_prometheus(quick_cluster: Cluster, real_prometheus: str,
                                                                  live: Live) -> None:
    """The analysis queries return data on what `knhk serve` really exposes, scraped by a real Prometheus:
    within limits the canary is promoted; with an impossible p95 limit the same data fails it. (The limits are
    far from any latency this shared machine produces: the test is about the data, not the speed.)"""
    headers = {"Authorization": f"Bearer {live.token}"}
    query = 'count_over_time(knhk_request_duration_seconds_count{job="knhk",track="green"}[1m])'
    deadline = time.monotonic() + 90
    while True:  # traffic on an API route until Prometheus holds several scrapes of it
        assert httpx.get(f"{live.url}/api/v1/receipts/checkpoint", headers=headers, timeout=10).status_code == 200
        try:
            result = httpx.get(f"{real_prometheus}/api/v1/query", params={"query": query},
                               timeout=5).json()["data"]["result"]
        except (httpx.HTTPError, KeyError, ValueError):
            result = []
        if result and max(float(r["value"][1]) for r in result) >= 5:
            break
        assert time.monotonic() < deadline, "Prometheus did not scrape knhk serve"
        time.sleep(0.5)
    args = ["--image", NEW, "--prometheus", real_prometheus, "--stages", "100", "--stage-wait", "0",
            "--window", "1m", "--smoke-url", live.url, "--max-inconclusive", "0"]
    done = quick_cluster.run("canary.sh", *args, "--max-p95", "30")
    assert done.returncode == 0, done.stderr
    (analysis,) = [e for e in quick_cluster.audit() if e["action"] == "deploy.canary.analysis"]
    assert float(analysis["metadata"]["error_ratio"]) == 0
    assert 0 < float(analysis["metadata"]["p95_s"]) < 30
    assert quick_cluster.track == "green"
    done = quick_cluster.run("rollback.sh", "--yes")  # blue live again; the same data against a 1 µs p95 limit
    assert done.returncode == 0, done.stderr
    done = quick_cluster.run("canary.sh", *args, "--max-p95", "0.000001")
    assert done.returncode == 1
    assert quick_cluster.track == "blue"
    assert quick_cluster.audit()[-1]["reason"].startswith("stage 100: analysis failed")
