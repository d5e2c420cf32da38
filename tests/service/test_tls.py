"""TLS 1.3 and mutual TLS on a real uvicorn listener (RFC 8446), with a CA, server and client certificates
made here with ``cryptography``."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from knhk.config import Settings
from knhk.errors import ConfigurationError
from knhk.service.tls import server_ssl_context, ssl_context_from_settings, uvicorn_ssl_options

NOW = dt.datetime.now(dt.UTC)


@dataclass
class Issued:
    cert: Path
    key: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey,
           password: bytes | None = None) -> Issued:
    cert_path, key_path = path.with_suffix(".crt"), path.with_suffix(".key")
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption())
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           encryption))
    return Issued(cert_path, key_path)


class CA:
    def __init__(self, directory: Path, name: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = _name(name)
        self.cert = (
            x509.CertificateBuilder().subject_name(self.name).issuer_name(self.name)
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.files = _write(directory / name, self.cert, self.key)

    def issue(self, directory: Path, cn: str, *, server: bool, password: bytes | None = None) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(self.name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                                  else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        )
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        return _write(directory / cn, builder.sign(self.key, hashes.SHA256()), key, password)


@dataclass
class Pki:
    ca: CA
    other_ca: CA
    server: Issued
    client: Issued
    foreign_client: Issued


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca, other = CA(d, "knhk-test-ca"), CA(d, "other-ca")
    return Pki(ca, other, ca.issue(d, "server", server=True), ca.issue(d, "client", server=False),
               other.issue(d, "foreign-client", server=False))


async def hello(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hello over TLS"})


@dataclass
class Listener:
    port: int

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/"


def run_server(settings: Settings) -> Iterator[Listener]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(hello, http="h11", loop="asyncio", lifespan="off", log_level="warning",
                            **uvicorn_ssl_options(settings))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    ready = threading.Event()
    for _ in range(200):
        if server.started:
            ready.set()
            break
        ready.wait(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield Listener(sock.getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture(scope="module")
def tls_server(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Listener]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("tls"), tls_cert_file=pki.server.cert,
                        tls_key_file=pki.server.key)
    yield from run_server(settings)


@pytest.fixture(scope="module")
def mtls_server(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Listener]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("mtls"), tls_cert_file=pki.server.cert,
                        tls_key_file=pki.server.key, tls_client_ca_file=pki.ca.files.cert)
    yield from run_server(settings)


def client_context(pki: Pki, *, max_version: ssl.TLSVersion | None = None,
                   cert: Issued | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca.files.cert))
    if max_version is not None:
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.maximum_version = max_version
    if cert is not None:
        context.load_cert_chain(cert.cert, cert.key)
    return context


def handshake(port: int, context: ssl.SSLContext) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        version = tls.version()
        assert version is not None
        return version


def get(listener: Listener, context: ssl.SSLContext) -> httpx.Response:
    with httpx.Client(verify=context, timeout=10) as client:
        return client.get(listener.url)


def test_tls13_handshake_and_request(pki: Pki, tls_server: Listener) -> None:
    assert handshake(tls_server.port, client_context(pki)) == "TLSv1.3"
    response = get(tls_server, client_context(pki))
    assert response.status_code == 200
    assert response.text == "hello over TLS"


def test_tls12_only_client_is_refused(pki: Pki, tls_server: Listener) -> None:
    context = client_context(pki, max_version=ssl.TLSVersion.TLSv1_2)
    with pytest.raises(ssl.SSLError):  # the server ends the handshake (alert or close)
        handshake(tls_server.port, context)
    with pytest.raises(httpx.ConnectError):
        get(tls_server, context)
    # The same client allowed to go up to TLS 1.3 gets in: the protocol version was the only reason.
    assert handshake(tls_server.port, client_context(pki, max_version=ssl.TLSVersion.TLSv1_3)) == "TLSv1.3"


def test_server_certificate_is_checked_by_clients(pki: Pki, tls_server: Listener) -> None:
    # A client trusting only the other CA refuses this server: the listener really serves our certificate.
    context = ssl.create_default_context(cafile=str(pki.other_ca.files.cert))
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(tls_server.port, context)


def test_mtls_refuses_a_client_without_certificate(pki: Pki, mtls_server: Listener) -> None:
    with pytest.raises((httpx.ReadError, httpx.ConnectError, httpx.RemoteProtocolError)):
        get(mtls_server, client_context(pki))


def test_mtls_accepts_a_ca_signed_client_certificate(pki: Pki, mtls_server: Listener) -> None:
    response = get(mtls_server, client_context(pki, cert=pki.client))
    assert response.status_code == 200
    assert response.text == "hello over TLS"


def test_mtls_refuses_a_certificate_from_another_ca(pki: Pki, mtls_server: Listener) -> None:
    with pytest.raises((httpx.ReadError, httpx.ConnectError, httpx.RemoteProtocolError)):
        get(mtls_server, client_context(pki, cert=pki.foreign_client))


def test_context_settings(pki: Pki, tmp_path: Path) -> None:
    context = server_ssl_context(pki.server.cert, pki.server.key)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_3
    assert context.verify_mode == ssl.CERT_NONE
    mutual = server_ssl_context(pki.server.cert, pki.server.key, client_ca_file=pki.ca.files.cert)
    assert mutual.verify_mode == ssl.CERT_REQUIRED
    assert ssl_context_from_settings(Settings(data_dir=tmp_path)) is None
    assert uvicorn_ssl_options(Settings(data_dir=tmp_path)) == {}


def test_encrypted_key_with_password_from_settings(pki: Pki, tmp_path: Path) -> None:
    issued = pki.ca.issue(tmp_path, "locked-server", server=True, password=b"correct horse")
    good = Settings(data_dir=tmp_path, tls_cert_file=issued.cert, tls_key_file=issued.key,
                    tls_key_password="correct horse")  # type: ignore[arg-type]
    assert ssl_context_from_settings(good) is not None
    bad = Settings(data_dir=tmp_path, tls_cert_file=issued.cert, tls_key_file=issued.key,
                   tls_key_password="wrong")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="cannot load the TLS certificate"):
        ssl_context_from_settings(bad)


def test_misconfiguration_is_reported(pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="needs both"):
        ssl_context_from_settings(Settings(data_dir=tmp_path, tls_cert_file=pki.server.cert))
    with pytest.raises(ConfigurationError, match="needs TLS"):
        ssl_context_from_settings(Settings(data_dir=tmp_path, tls_client_ca_file=pki.ca.files.cert))
    with pytest.raises(ConfigurationError, match="does not exist"):
        ssl_context_from_settings(Settings(data_dir=tmp_path, tls_cert_file=pki.server.cert,
                                           tls_key_file=tmp_path / "missing.key"))
    with pytest.raises(ConfigurationError, match="cannot load"):  # a key that is not the certificate's
        ssl_context_from_settings(Settings(data_dir=tmp_path, tls_cert_file=pki.server.cert,
                                           tls_key_file=pki.client.key))
