"""The console over HTTP (Starlette's test client on the real service): local sign-in, sessions (fixation,
idle and absolute timeouts, sign-out server-side, Redis), CSRF on every POST, and the approval flow with
segregation of duties exactly as the API enforces it."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from knhk.config import Settings
from knhk.console import local_sign_in_code
from knhk.console.sessions import MemoryStore, RedisStore, Sessions
from knhk.identity.local import LocalIssuer
from knhk.identity.rbac import Principal
from knhk.service.app import create_app
from support.pgcluster import free_port

COMMENT = "<http://www.w3.org/2000/01/rdf-schema#comment>"


def _settings(tmp_path: Path, **extra: object) -> Settings:
    return Settings(data_dir=tmp_path / "data", db_pool_min=1, db_pool_max=4, cycle_interval_s=0,  # type: ignore[arg-type]
                    verify_interval_s=0, checkpoint_interval_s=0, **extra)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[TestClient]:
    client = TestClient(create_app(_settings(tmp_path), background=False), base_url="https://127.0.0.1")
    with client:
        yield client


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, html[:2000]
    return match.group(1)


def sign_in(client: TestClient, name: str, *roles: str, sector: str = "", mfa: bool = False,
            code: str | None = None) -> str:
    page = client.get("/console/login")
    assert page.status_code == 200
    settings: Settings = client.app.state.knhk.settings  # type: ignore[attr-defined]
    form: dict[str, object] = {"csrf": _csrf(page.text), "code": code or local_sign_in_code(settings),
                               "name": name, "roles": list(roles), "sector": sector}
    if mfa:
        form["mfa"] = "1"
    done = client.post("/console/login/local", data=form, follow_redirects=False)
    assert done.status_code == 303, done.text
    return str(client.cookies.get("knhk_console"))


def held_proposal(client: TestClient, author: str = "paul@bank.example") -> str:
    issuer = LocalIssuer.from_settings(client.app.state.knhk.settings)  # type: ignore[attr-defined]

    def bearer(*roles: str, subject: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {issuer.mint(roles, subject=subject, mfa=True).token}"}

    body = {"sector": "finance", "rationale": "document accounts", "additions": [
        ["<https://knhk.dev/ns/finance#Account>", COMMENT, f'"A customer account ({time.time_ns()})."']]}
    created = client.post("/api/v1/proposals", json=body, headers=bearer("proposer", subject=author))
    assert created.status_code == 201, created.text
    pid = str(created.json()["id"])
    validated = client.post(f"/api/v1/proposals/{pid}/validate", headers=bearer("validator", subject="v@b.ex"))
    assert validated.json()["outcome"] == "held"
    return pid


def test_pages_need_a_session_and_local_sign_in_starts_one(service: TestClient) -> None:
    first = service.get("/console/", follow_redirects=False)
    assert first.status_code == 303
    assert "/console/login?next=" in first.headers["location"]
    cookie = sign_in(service, "olga@bank.example", "observer", sector="finance")
    page = service.get("/console/")
    assert page.status_code == 200
    assert "finance" in page.text
    assert "olga@bank.example" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
    set_cookie = [h for k, h in page.request.headers.items() if k == "cookie"]
    assert set_cookie
    assert cookie


def test_session_cookie_flags_and_fixation(service: TestClient) -> None:
    page = service.get("/console/login")
    planted = "attacker-chosen-session-id"
    service.cookies.set("knhk_console", planted, domain="127.0.0.1", path="/console")
    settings: Settings = service.app.state.knhk.settings  # type: ignore[attr-defined]
    done = service.post("/console/login/local", follow_redirects=False, data={
        "csrf": _csrf(page.text), "code": local_sign_in_code(settings), "name": "fiona@bank.example",
        "roles": ["validator"], "sector": "finance"})
    header = "; ".join(v for k, v in done.headers.multi_items() if k == "set-cookie" and "knhk_console=" in v)
    assert "HttpOnly" in header
    assert "Secure" in header
    assert "SameSite=lax" in header.replace("Lax", "lax")
    assert planted not in header
    assert service.cookies.get("knhk_console") != planted


def test_wrong_code_and_stale_form_are_refused_and_audited(service: TestClient) -> None:
    page = service.get("/console/login")
    bad = service.post("/console/login/local", data={"csrf": _csrf(page.text), "code": "guess", "name": "eve",
                                                     "roles": ["administrator"]})
    assert bad.status_code == 401
    assert "wrong sign-in code" in bad.text
    assert service.get("/console/", follow_redirects=False).status_code == 303
    stale = service.post("/console/login/local", data={"csrf": "forged", "code": "x", "name": "eve",
                                                       "roles": ["observer"]})
    assert stale.status_code == 403
    runtime = service.app.state.knhk.app.runtime  # type: ignore[attr-defined]
    service.app.state.knhk.app.auth_audit.flush(everything=True)  # type: ignore[attr-defined]
    failures = [e for e in runtime.audit.events(limit=1000) if e.resource == "console/login"]
    assert [(e.action, e.outcome, e.metadata["reason"]) for e in failures] == [("auth.failed", "denied", "local_code")]


def test_every_post_needs_the_csrf_token(service: TestClient) -> None:
    pid = held_proposal(service)
    sign_in(service, "fiona@bank.example", "validator", sector="finance")
    forged = service.post(f"/console/proposals/{pid}/decision", data={"decision": "approve", "csrf": "nope"})
    assert forged.status_code == 403
    assert "CSRF" in forged.text
    missing = service.post("/console/logout", data={})
    assert missing.status_code == 422
    json_body = service.post("/console/logout", json={"csrf": "x"})
    assert json_body.status_code == 415
    details = service.get(f"/api/v1/proposals/{pid}", headers={"Authorization": "Bearer " + LocalIssuer.from_settings(
        service.app.state.knhk.settings).mint(["observer"], subject="o").token})  # type: ignore[attr-defined]
    assert details.json()["approvals"] == []


def test_approval_flow_with_separation_of_duties(service: TestClient) -> None:
    pid = held_proposal(service, author="paul@bank.example")
    # the author, even as a validator, is refused by the application — the console shows it
    sign_in(service, "paul@bank.example", "validator", "proposer", sector="compliance")
    page = service.get(f"/console/proposals/{pid}")
    refused = service.post(f"/console/proposals/{pid}/decision", data={"decision": "approve", "csrf": _csrf(page.text)})
    assert refused.status_code == 403
    assert 'id="refused"' in refused.text
    sign_in(service, "fiona@bank.example", "validator", sector="finance")
    page = service.get(f"/console/proposals/{pid}")
    assert "FIN-APPROVAL-001" in page.text
    assert "rdf-schema#comment" in page.text
    first = service.post(f"/console/proposals/{pid}/decision", data={"decision": "approve", "csrf": _csrf(page.text)})
    assert first.status_code == 200
    assert "Outcome: <strong>held</strong>" in first.text
    reject_without_reason = service.post(f"/console/proposals/{pid}/decision",
                                         data={"decision": "reject", "csrf": _csrf(first.text)})
    assert reject_without_reason.status_code == 422
    assert "say why" in reject_without_reason.text
    sign_in(service, "carl@bank.example", "validator", sector="compliance")
    page = service.get(f"/console/proposals/{pid}")
    done = service.post(f"/console/proposals/{pid}/decision",
                        data={"decision": "approve", "reason": "checked", "csrf": _csrf(page.text)})
    assert "Outcome: <strong>promoted</strong>" in done.text
    assert 'id="status">promoted' in done.text
    # an observer may read but not decide (RBAC, audited as a denial by the application)
    sign_in(service, "olga@bank.example", "observer")
    assert service.get("/console/audit").status_code == 403
    assert service.get("/console/receipts?kind=proposal.held").status_code == 200


def test_sign_out_ends_the_session_server_side(service: TestClient) -> None:
    cookie = sign_in(service, "olga@bank.example", "observer")
    page = service.get("/console/")
    out = service.post("/console/logout", data={"csrf": _csrf(page.text)}, follow_redirects=False)
    assert out.status_code == 303
    service.cookies.set("knhk_console", cookie, domain="127.0.0.1", path="/console")  # a copied cookie
    assert service.get("/console/", follow_redirects=False).status_code == 303


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _principal(sector: str | None) -> Principal:
    return Principal(identity="x#y", issuer="x", subject="y", roles=frozenset({"observer"}), sector=sector)


def test_idle_and_absolute_timeouts(tmp_path: Path) -> None:
    clock = Clock()
    settings = _settings(tmp_path, console_session_idle_s=3600, console_session_idle_phi_s=900,
                         console_session_max_s=3600)
    sessions = Sessions(settings, MemoryStore(clock), clock)
    nurse = sessions.begin(_principal("healthcare"), how="local")
    banker = sessions.begin(_principal("finance"), how="local")
    clock.now += 899
    assert sessions.touch(nurse.id) is not None
    clock.now += 899
    assert sessions.touch(nurse.id) is not None  # each request restarts the idle clock
    clock.now += 901
    assert sessions.touch(nurse.id) is None  # 15 minutes idle in healthcare
    assert sessions.touch(banker.id) is not None  # 60 minutes idle elsewhere
    clock.now += 1000
    assert sessions.touch(banker.id) is None  # absolute: 60 minutes after sign-in, however active


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    server = shutil.which("redis-server")
    assert server, "redis-server is needed (Debian: redis-server)"
    proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + 10
        while True:
            try:
                RedisStore(url).get("probe")
                break
            except Exception:
                assert time.monotonic() < deadline, "private redis-server did not start"
                time.sleep(0.05)
        yield url
        proc.terminate()
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sessions_in_redis_expire_there_and_fail_closed_when_it_is_down(tmp_path: Path, private_redis: str) -> None:
    import redis

    settings = _settings(tmp_path, redis_url=private_redis, console_session_idle_s=2, console_session_max_s=60)
    sessions = Sessions(settings)
    session = sessions.begin(_principal("finance"), how="local")
    client = redis.Redis.from_url(private_redis)
    keys = [k.decode() for k in client.keys("knhk:console:session:*")]
    assert len(keys) == 1
    assert session.id not in keys[0]
    assert 0 < client.ttl(keys[0]) <= 3
    assert sessions.touch(session.id) is not None
    time.sleep(2.2)
    assert sessions.touch(session.id) is None
    dead = Sessions(_settings(tmp_path, redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    from knhk.errors import DependencyUnavailableError

    with pytest.raises(DependencyUnavailableError, match="console sessions are unavailable"):
        dead.touch("whatever")


def test_audit_and_erasure_for_administrators(service: TestClient) -> None:
    sign_in(service, "olga@bank.example", "observer")
    sign_in(service, "ada@bank.example", "administrator")
    audit = service.get("/console/audit?action=session.started")
    assert audit.status_code == 200
    assert audit.text.count("session.started") >= 2
    page = service.get("/console/erasure")
    refused = service.post("/console/erasure", data={"csrf": _csrf(page.text), "subject": "olga@bank.example"})
    assert refused.status_code == 403
    assert "multi-factor" in refused.text
    sign_in(service, "ada@bank.example", "administrator", mfa=True)
    page = service.get("/console/erasure")
    erased = service.post("/console/erasure",
                          data={"csrf": _csrf(page.text), "subject": "urn:knhk:local#olga@bank.example"})
    assert erased.status_code == 200
    assert 'id="erased"' in erased.text
    assert "subject/sub_" in service.get("/console/erasure").text


def test_receipts_explorer_searches_by_kind_sector_subject_and_time(service: TestClient) -> None:
    pid = held_proposal(service)
    sign_in(service, "olga@bank.example", "observer")
    held = service.get(f"/console/receipts?kind=proposal.validated&sector=finance&subject={pid}")
    assert held.text.count("<td>proposal.validated</td>") == 1
    assert service.get(f"/console/receipts?kind=proposal.validated&sector=healthcare&subject={pid}").text.count(
        "<td>proposal.validated</td>") == 0
    future = service.get("/console/receipts?kind=proposal.held&since=2999-01-01T00:00")
    assert "No receipts match." in future.text
    assert service.get("/console/receipts?since=yesterday").status_code == 422
