"""``knhk preflight``'s TLS and identity-provider checks against real listeners.

TLS: a ``knhk serve`` on TLS 1.3 with a certificate valid 90 days passes (the listener context TLS 1.3 only,
a live handshake accepting TLS 1.3 and refusing TLS 1.2, the smoke test over https); a certificate that
expires in 10 days fails naming the days left. OIDC: an issuer on loopback serving its discovery document and
a JWKS passes; one whose JWKS holds no usable key fails, and so does one that does not answer.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from typer.testing import CliRunner

from knhk.cli.main import app

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from support.serve import KNHK, free_port

RUNNER = CliRunner()


def run(env: dict[str, str], *args: str) -> tuple[int, dict[str, dict[str, str]]]:
    result = RUNNER.invoke(app, ["preflight", "--json", *args], env=env)
    report = json.loads(result.stdout)
    return result.exit_code, {c["id"]: c for c in report["checks"]}


def certificate(directory: Path, days: int) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "knhk.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / f"tls-{days}.crt", directory / f"tls-{days}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_file.chmod(0o600)
    return cert_file, key_file


def test_tls_13_listener_passes_and_an_expiring_certificate_fails(tmp_path: Path) -> None:
    cert, key = certificate(tmp_path, 90)
    env = {"KNHK_DATA_DIR": str(tmp_path / "data"), "KNHK_TLS_CERT_FILE": str(cert), "KNHK_TLS_KEY_FILE": str(key)}
    port = free_port()
    proc = subprocess.Popen([KNHK, "serve", "--port", str(port)], env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"https://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, "knhk serve exited"
            try:
                if httpx.get(f"{url}/health/ready", verify=str(cert), timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "knhk serve did not become ready over TLS"
            time.sleep(0.3)
        code, got = run(env, "--only", "tls,smoke,key-files", "--base-url", url)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert code == 0, got
    assert got["tls"]["status"] == "pass"
    assert "TLS 1.3 accepted, TLS 1.2 refused" in got["tls"]["detail"]
    assert "valid 9" in got["tls"]["detail"] or "valid 8" in got["tls"]["detail"]
    assert got["smoke"]["status"] == "pass"

    soon, soon_key = certificate(tmp_path, 10)
    code, got = run({**env, "KNHK_TLS_CERT_FILE": str(soon), "KNHK_TLS_KEY_FILE": str(soon_key)}, "--only", "tls")
    assert code == 1
    assert got["tls"]["status"] == "fail"
    assert re.search(r"^certificate CN=knhk.test expires in (9\.9|10\.0) days \(limit 30;", got["tls"]["detail"])


class Issuer(BaseHTTPRequestHandler):
    documents: ClassVar[dict[str, Any]] = {}

    def do_GET(self) -> None:
        body = json.dumps(self.documents.get(self.path, {})).encode()
        self.send_response(200 if self.path in self.documents else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def issuer() -> Iterator[tuple[str, dict[str, Any]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Issuer)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(public)) | {"kid": "k1", "alg": "ES256", "use": "sig"}
    Issuer.documents = {"/.well-known/openid-configuration": {"issuer": url, "jwks_uri": f"{url}/jwks"},
                        "/jwks": {"keys": [jwk]}}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield url, Issuer.documents
    server.shutdown()
    server.server_close()


def test_oidc_issuers_with_a_valid_jwks_pass_and_broken_ones_fail(
        tmp_path: Path, issuer: tuple[str, dict[str, Any]]) -> None:
    url, documents = issuer
    base = {"KNHK_DATA_DIR": str(tmp_path / "data")}
    env = {**base, "KNHK_OIDC_ISSUERS": json.dumps([{"issuer": url, "audience": "knhk"}])}
    code, got = run(env, "--only", "oidc")
    assert code == 0, got
    assert got["oidc"] == {"id": "oidc", "title": "OIDC issuers serve a valid JWKS", "status": "pass",
                           "detail": "1 issuer(s): 1 key(s)"}

    documents["/jwks"] = {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}  # a symmetric key: never accepted
    code, got = run(env, "--only", "oidc")
    assert code == 1
    assert got["oidc"]["status"] == "fail"
    assert got["oidc"]["detail"] == f"{url}: its JWKS holds no usable signature-verification key"

    dead = f"http://127.0.0.1:{free_port()}"
    code, got = run({**base, "KNHK_OIDC_ISSUERS": json.dumps([{"issuer": dead, "audience": "knhk"}])},
                    "--only", "oidc")
    assert code == 1
    assert got["oidc"]["detail"].startswith(f"{dead}: ")
