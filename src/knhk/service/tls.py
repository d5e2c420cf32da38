"""TLS for the service listener (SPEC §10): TLS 1.3 only (RFC 8446), optional mutual TLS.

``server_ssl_context`` builds the :class:`ssl.SSLContext`: minimum and maximum protocol TLS 1.3 (a TLS 1.2
client is refused during the handshake), the server certificate chain and key from PEM files (the key may be
encrypted; its password comes from ``KNHK_TLS_KEY_PASSWORD`` or a secrets file), and, when a client CA bundle
is configured, client-certificate verification with ``CERT_REQUIRED`` (a client without a certificate, or with
one not issued by that CA, fails the handshake).

``uvicorn_ssl_options`` gives the keyword arguments for ``uvicorn.run``/``uvicorn.Config`` that make uvicorn use
exactly this context (through its ``ssl_context_factory``; the factory is a picklable object, so it also works
with several worker processes).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from knhk.config import Settings
from knhk.errors import ConfigurationError


def _readable(path: Path, what: str) -> Path:
    if not path.is_file():
        raise ConfigurationError(f"the TLS {what} {path} does not exist or is not a file")
    return path


def server_ssl_context(cert_file: Path, key_file: Path, *, key_password: str | None = None,
                       client_ca_file: Path | None = None) -> ssl.SSLContext:
    """A TLS 1.3-only server context; with ``client_ca_file``, clients must present a certificate it issued."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.maximum_version = ssl.TLSVersion.MAXIMUM_SUPPORTED
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    try:
        context.load_cert_chain(_readable(cert_file, "certificate"), _readable(key_file, "private key"),
                                password=key_password)
    except ssl.SSLError as exc:
        raise ConfigurationError(
            f"cannot load the TLS certificate {cert_file} with key {key_file}: {exc.reason or exc} "
            "(a key that does not match the certificate, a wrong key password, or not PEM)") from exc
    if client_ca_file is not None:
        try:
            context.load_verify_locations(cafile=_readable(client_ca_file, "client CA bundle"))
        except ssl.SSLError as exc:
            raise ConfigurationError(f"cannot load the client CA bundle {client_ca_file}: {exc.reason or exc}") \
                from exc
        context.verify_mode = ssl.CERT_REQUIRED
    else:
        context.verify_mode = ssl.CERT_NONE
    return context


def tls_enabled(settings: Settings) -> bool:
    """Whether TLS is configured; half a configuration (only a certificate, or a client CA without one) is an
    error."""
    have_cert, have_key = settings.tls_cert_file is not None, settings.tls_key_file is not None
    if have_cert != have_key:
        raise ConfigurationError("TLS needs both KNHK_TLS_CERT_FILE and KNHK_TLS_KEY_FILE")
    if settings.tls_client_ca_file is not None and not have_cert:
        raise ConfigurationError("mutual TLS (KNHK_TLS_CLIENT_CA_FILE) needs TLS: set KNHK_TLS_CERT_FILE and "
                                 "KNHK_TLS_KEY_FILE")
    return have_cert


@dataclass(frozen=True)
class TlsContextFactory:
    """Builds the listener's context inside each uvicorn process (uvicorn's ``ssl_context_factory``)."""

    cert_file: Path
    key_file: Path
    key_password: str | None = None
    client_ca_file: Path | None = None

    def __call__(self, _config: object = None, _default: object = None) -> ssl.SSLContext:
        return server_ssl_context(self.cert_file, self.key_file, key_password=self.key_password,
                                  client_ca_file=self.client_ca_file)

    @classmethod
    def from_settings(cls, settings: Settings) -> TlsContextFactory | None:
        if not tls_enabled(settings) or settings.tls_cert_file is None or settings.tls_key_file is None:
            return None
        password = settings.tls_key_password.get_secret_value() if settings.tls_key_password else None
        return cls(settings.tls_cert_file, settings.tls_key_file, password, settings.tls_client_ca_file)


def ssl_context_from_settings(settings: Settings) -> ssl.SSLContext | None:
    """The listener context of the settings, or None when TLS is off. Fails early on a bad configuration."""
    factory = TlsContextFactory.from_settings(settings)
    return factory() if factory else None


def uvicorn_ssl_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run``/``uvicorn.Config``: empty when TLS is off. The context is built
    once here first, so a bad certificate or key stops start-up with a clear message."""
    factory = TlsContextFactory.from_settings(settings)
    if factory is None:
        return {}
    factory()  # validate now
    return {"ssl_certfile": str(factory.cert_file), "ssl_keyfile": str(factory.key_file),
            "ssl_context_factory": factory}
