"""The pre-deployment checklist (``knhk preflight``): its result model, the seed's 28 items with what checks
each, and the checks that need nothing of KNHK but a path, a URL or a tool — key file modes, the TLS
certificate's validity and a live TLS 1.3 handshake, Redis, a smoke test of a running service, the alert rules
under ``promtool``. The checks that read the installation are in :mod:`knhk.app.preflight`.

Every check fails closed: one that cannot decide (a tool missing, a time-out, an unreadable file) fails and
says why. ``not_applicable`` is only for a part the deployment does not configure (no Redis, TLS terminated in
front of KNHK, no base URL to smoke-test).
"""

from __future__ import annotations

import shutil
import socket
import ssl
import stat
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

Status = Literal["pass", "fail", "not_applicable"]


@dataclass(frozen=True)
class Check:
    """One machine check: its id, what it checks, the outcome and why."""

    id: str
    title: str
    status: Status
    detail: str

    def to_json(self) -> dict[str, str]:
        return {"id": self.id, "title": self.title, "status": self.status, "detail": self.detail}


def passed(id: str, title: str, detail: str) -> Check:
    return Check(id, title, "pass", detail)


def failed(id: str, title: str, detail: str) -> Check:
    return Check(id, title, "fail", detail)


def not_applicable(id: str, title: str, detail: str) -> Check:
    return Check(id, title, "not_applicable", detail)


@dataclass(frozen=True)
class Item:
    """One item of the seed's pre-deployment checklist: automated by ``checks`` or, without any, manual."""

    section: str
    text: str
    checks: tuple[str, ...] = ()
    manual: str = ""  # who or what decides it, when no machine check does


#: the seed's pre-deployment checklist (SPARC phase 9 §9.1), 7 items in each of 4 sections
CHECKLIST: tuple[Item, ...] = (
    Item("code quality", "All tests pass", manual="CI: `make test` on the release commit"),
    Item("code quality", "Linters report zero warnings", manual="CI: ruff, mypy --strict, lint-imports"),
    Item("code quality", "Code formatted", manual="CI: ruff"),
    Item("code quality", "No unhandled errors in production paths", manual="code review; the suite's no-500 tests"),
    Item("code quality", "Async traits removed (a Rust item of the seed)", manual="not applicable to this product"),
    Item("code quality", "Telemetry validation passes", checks=("telemetry",)),
    Item("code quality", "Load tests meet SLA",
         manual="bench/bench_http_ingest.py against the target (docs/benchmarks.md)"),
    Item("security", "OIDC configured", checks=("oidc",)),
    Item("security", "mTLS certificates generated", checks=("tls",)),
    Item("security", "Secrets configured", checks=("keys", "key-files")),
    Item("security", "SHACL validation enabled", checks=("sector-packs",)),
    Item("security", "Audit logging enabled", checks=("ledger",)),
    Item("security", "TLS 1.3 enforced", checks=("tls",)),
    Item("security", "Security scan passed", manual="the security team's image scan"),
    Item("infrastructure", "Kubernetes cluster provisioned",
         manual="the platform team (kubectl kustomize deploy/kubernetes)"),
    Item("infrastructure", "PostgreSQL HA configured", checks=("database", "schema", "app-role"),
         manual="replication and failover: the platform team (docs/disaster-recovery.md)"),
    Item("infrastructure", "Redis deployed", checks=("redis",)),
    Item("infrastructure", "Vault initialized", checks=("keys",), manual="Vault itself: the platform team"),
    Item("infrastructure", "OTEL Collector deployed", manual="the platform team"),
    Item("infrastructure", "Prometheus configured", checks=("alert-rules",)),
    Item("infrastructure", "Grafana configured", manual="dashboards in deploy/monitoring/dashboards loaded"),
    Item("operational", "Runbooks written", manual="docs/runbooks/ reviewed by the on-call team"),
    Item("operational", "On-call rotation configured", manual="the on-call manager"),
    Item("operational", "Backup procedures tested", checks=("backup",)),
    Item("operational", "DR plan documented", manual="docs/disaster-recovery.md reviewed by operations"),
    Item("operational", "Rollback procedure tested", manual="a rehearsed rollback in staging (docs/deployment.md)"),
    Item("operational", "Smoke tests passing", checks=("smoke",)),
    Item("operational", "Monitoring dashboards created", manual="the operations lead"),
)


@dataclass(frozen=True)
class Report:
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(c.status != "fail" for c in self.checks)

    def manual_items(self) -> list[Item]:
        """Items a person decides, wholly or in part (``manual`` says who)."""
        return [i for i in CHECKLIST if i.manual]

    def item_status(self, item: Item) -> str:
        if not item.checks:
            return "manual"
        statuses = {c.status for c in self.checks if c.id in item.checks}
        if not statuses:
            return "not_run"  # excluded with --only; the report's ok covers only the checks that ran
        return "fail" if "fail" in statuses else ("pass" if "pass" in statuses else "not_applicable")

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checks": [c.to_json() for c in self.checks],
            "checklist": [{"section": i.section, "item": i.text, "status": self.item_status(i),
                           **({"checks": list(i.checks)} if i.checks else {}),
                           **({"who": i.manual} if i.manual else {})} for i in CHECKLIST],
        }


# -- key files --------------------------------------------------------------------------------------------
def key_file_problems(paths: Iterable[Path]) -> list[str]:
    """Why each private key file is unusable: missing, not a regular file, or readable by group or others."""
    problems = []
    for path in paths:
        try:
            st = path.stat()
        except OSError as exc:
            problems.append(f"{path}: {exc.strerror or exc}")
            continue
        if not stat.S_ISREG(st.st_mode):
            problems.append(f"{path}: not a regular file")
        elif st.st_mode & 0o077:
            problems.append(f"{path} has mode {stat.S_IMODE(st.st_mode):04o}; must be 0600 (chmod 600 {path})")
    return problems


# -- TLS --------------------------------------------------------------------------------------------------
def certificate_days_left(cert_file: Path, now: datetime | None = None) -> tuple[float, str]:
    """Days until the first certificate of a PEM chain expires, and its subject."""
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    left = cert.not_valid_after_utc - (now or datetime.now(UTC))
    return left.total_seconds() / 86400, cert.subject.rfc4514_string()


def tls_handshake(host: str, port: int, version: ssl.TLSVersion, timeout_s: float) -> str | None:
    """Try a handshake limited to exactly ``version`` (no certificate checks: only the protocol is probed);
    return the negotiated protocol, or None when the server refused it."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = context.maximum_version = version
    with socket.create_connection((host, port), timeout=timeout_s) as raw:
        try:
            with context.wrap_socket(raw, server_hostname=host) as tls:
                return tls.version()
        except ssl.SSLError:
            return None


def probe_tls13_only(url: str, timeout_s: float = 5.0) -> str | None:
    """None when ``url``'s server completes a TLS 1.3 handshake and refuses TLS 1.2; else what is wrong."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 443
    try:
        if tls_handshake(host, port, ssl.TLSVersion.TLSv1_3, timeout_s) != "TLSv1.3":
            return f"{host}:{port} refused a TLS 1.3 handshake"
        if tls_handshake(host, port, ssl.TLSVersion.TLSv1_2, timeout_s) is not None:
            return f"{host}:{port} accepted TLS 1.2"
    except OSError as exc:
        return f"cannot reach {host}:{port}: {exc}"
    return None


# -- Redis, smoke test, alert rules -----------------------------------------------------------------------
def redis_problem(url: str, timeout_s: float) -> str | None:
    """None when Redis at ``url`` answers PING, else why not."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        return None if client.ping() else "PING got no PONG"
    except redis.RedisError as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        client.close()


def smoke_problems(base_url: str, timeout_s: float = 10.0, verify: bool | str = True) -> list[str]:
    """The unauthenticated part of the smoke test against a running service: ready, not unhealthy, metrics
    exposed, OpenAPI served. Empty when every step passed."""
    import httpx

    problems: list[str] = []
    try:
        with httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout_s, verify=verify) as client:
            ready = client.get("/health/ready")
            if ready.status_code != 200:
                problems.append(f"GET /health/ready answered {ready.status_code}: {ready.text[:200]}")
            health = client.get("/health")
            status = health.json().get("status") if health.headers.get("content-type", "").startswith(
                "application/json") else None
            if health.status_code != 200 or status not in ("healthy", "degraded"):
                problems.append(f"GET /health answered {health.status_code} {status!r}")
            metrics = client.get("/metrics")
            if metrics.status_code != 200 or "knhk_requests_total" not in metrics.text:
                problems.append(f"GET /metrics answered {metrics.status_code} without knhk_requests_total")
            openapi = client.get("/openapi.json")
            if openapi.status_code != 200 or "/api/v1/observations" not in openapi.text:
                problems.append(f"GET /openapi.json answered {openapi.status_code} without the API")
    except (httpx.HTTPError, ValueError) as exc:
        problems.append(f"{base_url}: {type(exc).__name__}: {exc}")
    return problems


def promtool_problem(rules_dir: Path) -> tuple[str | None, str]:
    """Run ``promtool check rules`` on every ``*.yml`` of ``rules_dir``: (problem or None, what was checked)."""
    files = sorted(rules_dir.glob("*.yml")) + sorted(rules_dir.glob("*.yaml"))
    if not files:
        return f"no rule files in {rules_dir}", ""
    promtool = shutil.which("promtool")
    if promtool is None:
        return "promtool is not installed: the rules cannot be checked", ""
    try:
        done = subprocess.run([promtool, "check", "rules", *map(str, files)], capture_output=True, text=True,
                              timeout=60)
    except subprocess.TimeoutExpired:
        return "promtool check rules timed out", ""
    if done.returncode != 0:
        return " ".join((done.stderr or done.stdout).split())[:500], ""
    return None, f"{len(files)} rule file(s) in {rules_dir}"
