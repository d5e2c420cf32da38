"""The OIDC key fetch is an idempotent read: retried on transient failures, bounded by one HTTP timeout, and
guarded by the issuer's circuit breaker (``oidc:<issuer>``), against real loopback endpoints: an HTTP server
that drops its first connections or answers 503 before it serves its JWK Set, a port nobody listens on, and
a socket that accepts and never answers. The console's sign-in reads the provider's documents the same way."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from knhk.config import Settings
from knhk.console.oidc import OidcLogin
from knhk.errors import CircuitOpenError, DependencyUnavailableError
from knhk.identity.oidc import Authenticator, IssuerConfig
from knhk.ops import resilience
from knhk.ops.resilience import RetryPolicy
from knhk.ops.telemetry.metrics import RETRIES
from support.pgcluster import free_port

# breaker and retry timings of the JWKS fetches: run alone (make test), not beside other tests
pytestmark = pytest.mark.serial

AUDIENCE = "urn:knhk:api"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
JWK: dict[str, Any] = {**json.loads(RSAAlgorithm.to_jwk(KEY.public_key())), "kid": "k1", "alg": "RS256", "use": "sig"}


class Ticker:
    """The authenticator's monotonic clock, moved by hand past its 5 s failure backoff."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FlakyProvider:
    """A real HTTP server on loopback serving ``/jwks``; its first ``drops`` requests get the connection closed
    without an answer, the next ``errors`` get HTTP 503, then it answers."""

    def __init__(self, drops: int = 0, errors: int = 0) -> None:
        self.drops, self.errors, self.requests = drops, errors, 0
        provider = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                provider.requests += 1
                if provider.requests <= provider.drops:
                    self.close_connection = True
                    return
                if provider.requests <= provider.drops + provider.errors:
                    self.send_error(503)
                    return
                document: dict[str, Any] = {"keys": [JWK]}
                if self.path == "/.well-known/openid-configuration":
                    document = {"issuer": provider.issuer, "authorization_endpoint": f"{provider.issuer}/auth",
                                "token_endpoint": f"{provider.issuer}/token", "jwks_uri": f"{provider.issuer}/jwks"}
                body = json.dumps(document).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def config(issuer: str) -> IssuerConfig:
    return IssuerConfig.from_mapping({"issuer": issuer, "audience": AUDIENCE, "jwks_uri": f"{issuer}/jwks"})


def token(issuer: str) -> str:
    now = int(time.time())
    claims = {"iss": issuer, "aud": AUDIENCE, "sub": "svc", "iat": now, "exp": now + 300}
    return "Bearer " + jwt.encode(claims, KEY, algorithm="RS256", headers={"kid": "k1"})


def retries() -> float:
    return float(RETRIES.labels("oidc.fetch")._value.get())


@pytest.fixture
def fast_retries() -> Iterator[None]:
    """The SPEC's retry shape with 1 ms waits, so five failing fetches take milliseconds, not seconds."""
    resilience.configure(retries=RetryPolicy(base_s=0.001))
    try:
        yield
    finally:
        resilience.configure(retries=RetryPolicy())


def test_a_flapping_provider_is_retried_until_it_answers() -> None:
    provider = FlakyProvider(drops=2, errors=1)  # two dropped connections, one 503, then the key set
    before = retries()
    try:
        with Authenticator([config(provider.issuer)]) as auth:
            assert auth.authenticate(token(provider.issuer)).subject == "svc"
            assert auth.jwks_fetches(provider.issuer) == 1  # one fetch, four requests
        assert provider.requests == 4
        assert retries() - before == 3
        assert resilience.state_of(f"oidc:{provider.issuer}") == "closed"
    finally:
        provider.close()


def test_the_console_reads_the_discovery_document_of_a_flapping_provider(tmp_path: Path) -> None:
    provider = FlakyProvider(drops=1, errors=1)
    before = retries()
    try:
        settings = Settings(data_dir=tmp_path, oidc_issuers=[{"issuer": provider.issuer, "audience": AUDIENCE}],
                            console_oidc_client_id="knhk-console")
        with Authenticator([config(provider.issuer)]) as auth:
            login = OidcLogin(settings, auth)
            assert login.metadata().jwks_uri == f"{provider.issuer}/jwks"
        assert provider.requests == 3
        assert retries() - before == 2
    finally:
        provider.close()


def test_a_refusing_provider_is_tried_five_times_then_its_breaker_opens(fast_retries: None) -> None:
    issuer = f"http://127.0.0.1:{free_port()}"  # nobody listens: every connection is refused
    ticker = Ticker()
    before = retries()
    with Authenticator([config(issuer)], monotonic=ticker) as auth:
        for fetch in range(1, 6):
            with pytest.raises(DependencyUnavailableError) as failed:
                auth.authenticate(token(issuer))
            assert not isinstance(failed.value, CircuitOpenError)
            assert "unreachable" in failed.value.message
            assert retries() - before == 4 * fetch  # five attempts per fetch
            ticker.now += 6  # past the authenticator's own 5 s backoff after a failed fetch
        assert resilience.state_of(f"oidc:{issuer}") == "open"
        with pytest.raises(CircuitOpenError) as refused:
            auth.authenticate(token(issuer))
        assert refused.value.http_status == 503
        assert 25 <= refused.value.retry_after <= 30
        assert retries() - before == 20  # refused without an attempt


def test_a_hung_provider_costs_one_timeout_not_five() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])  # and never answer
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept)
    thread.start()
    issuer = f"http://127.0.0.1:{listener.getsockname()[1]}"
    try:
        with Authenticator([config(issuer)], http_timeout_s=0.5) as auth, \
                pytest.raises(DependencyUnavailableError, match="ReadTimeout"):
            auth.authenticate(token(issuer))
        assert len(accepted) == 1  # no retry: its wait would have ended after the 0.5 s deadline
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()
