"""Local mode: a development token issuer that lives in the data directory, and the loopback-only rule.

With no OIDC issuer configured (SPEC §10) the service trusts only the local issuer ``urn:knhk:local`` (tokens
for audience ``urn:knhk:api``) and refuses to listen on anything but a loopback address. Its signing key is an
Ed25519 (EdDSA, RFC 8037) or RSA-2048 (RS256) key in ``<data_dir>/local-issuer/key.pem``, created with mode 0600
on first use and never printed; its public half is published as a JWK Set file next to it (``jwks.json``),
which the ordinary validator (:mod:`.oidc`) reads: local tokens go through exactly the same checks as tokens
from a real identity provider. Tokens are RFC 7519 JWTs typed ``at+jwt`` (RFC 9068) with a ``roles`` claim
naming KNHK roles directly, and ``amr: ["mfa"]`` when minted with ``--mfa``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import ipaddress
import json
import os
import secrets
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from knhk.config import Settings
from knhk.errors import ConfigurationError, InvalidInputError
from knhk.identity.rbac import ROLES
from knhk.ops.clock import SYSTEM_CLOCK, Clock

if TYPE_CHECKING:
    from knhk.identity.oidc import IssuerConfig

LOCAL_ISSUER = "urn:knhk:local"
LOCAL_AUDIENCE = "urn:knhk:api"

PrivateKey = ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _uint(n: int) -> bytes:
    return n.to_bytes((n.bit_length() + 7) // 8 or 1, "big")


def public_jwk(key: PrivateKey) -> dict[str, str]:
    """The public JWK of a key (RFC 7517/8037), with ``kid`` = its RFC 7638 thumbprint and its ``alg``."""
    members: dict[str, str]
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        members, alg = {"crv": "Ed25519", "kty": "OKP", "x": _b64url(raw)}, "EdDSA"
    else:
        numbers = key.public_key().public_numbers()
        members, alg = {"e": _b64url(_uint(numbers.e)), "kty": "RSA", "n": _b64url(_uint(numbers.n))}, "RS256"
    thumbprint = hashlib.sha256(json.dumps(members, sort_keys=True, separators=(",", ":")).encode()).digest()
    return {**members, "kid": _b64url(thumbprint), "alg": alg, "use": "sig"}


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@dataclass(frozen=True)
class MintedToken:
    token: str
    header: dict[str, Any]
    claims: dict[str, Any]


class LocalIssuer:
    """The development issuer: its key file, its public JWK Set file, and minting."""

    def __init__(self, key_file: Path, algorithm: str = "EdDSA", *, clock: Clock = SYSTEM_CLOCK) -> None:
        if algorithm not in ("EdDSA", "RS256"):
            raise ConfigurationError(f"the local issuer signs with EdDSA or RS256, not {algorithm!r}")
        self.key_file = key_file
        self.jwks_file = key_file.with_name("jwks.json")
        self.algorithm = algorithm
        self.clock = clock
        self._key: PrivateKey | None = None

    @classmethod
    def from_settings(cls, settings: Settings, *, clock: Clock = SYSTEM_CLOCK) -> LocalIssuer:
        return cls(settings.resolved_local_issuer_key_file, settings.local_issuer_algorithm, clock=clock)

    def key(self) -> PrivateKey:
        """The signing key, created (0600, never overwritten) on first use; its JWK Set file kept current."""
        if self._key is not None:
            return self._key
        if not self.key_file.exists():
            new: PrivateKey = (ed25519.Ed25519PrivateKey.generate() if self.algorithm == "EdDSA"
                               else rsa.generate_private_key(public_exponent=65537, key_size=2048))
            pem = new.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
            with contextlib.suppress(FileExistsError):  # another process created it first: use theirs
                _write_private(self.key_file, pem)
        try:
            loaded = serialization.load_pem_private_key(self.key_file.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigurationError(f"cannot read the local issuer key {self.key_file}: {exc}") from exc
        if not isinstance(loaded, ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey):
            raise ConfigurationError(f"the local issuer key {self.key_file} is neither Ed25519 nor RSA")
        self._key = loaded
        jwks = json.dumps({"keys": [public_jwk(loaded)]}, indent=2) + "\n"
        if not self.jwks_file.exists() or self.jwks_file.read_text() != jwks:
            _write_atomic(self.jwks_file, jwks)
        return loaded

    @property
    def signing_algorithm(self) -> str:
        return "EdDSA" if isinstance(self.key(), ed25519.Ed25519PrivateKey) else "RS256"

    def issuer_config(self, settings: Settings | None = None) -> IssuerConfig:
        """The trusted-issuer entry of the local issuer: a file JWK Set, roles named directly."""
        from knhk.identity.oidc import IssuerConfig  # the verifier (httpx, breakers): not needed to mint a token

        self.key()
        return IssuerConfig(
            issuer=LOCAL_ISSUER, audience=LOCAL_AUDIENCE, user_id_claim="sub", roles_claim="roles",
            group_roles={role: frozenset({role}) for role in ROLES},
            sector_claim=settings.auth_sector_claim if settings else "sector",
            jwks_file=self.jwks_file, algorithms=(self.signing_algorithm,),
        )

    def mint(self, roles: Iterable[str], *, subject: str, sector: str | None = None, mfa: bool = False,
             ttl_s: int = 3600, extra: dict[str, Any] | None = None) -> MintedToken:
        """Sign an access token for the local issuer."""
        role_list = sorted(set(roles))
        unknown = [r for r in role_list if r not in ROLES]
        if not role_list or unknown:
            raise InvalidInputError(f"unknown role(s) {', '.join(unknown) or '(none given)'}; "
                                    f"roles: {', '.join(ROLES)}")
        if not subject:
            raise InvalidInputError("the token subject must not be empty")
        if ttl_s < 1:
            raise InvalidInputError("the token lifetime must be at least 1 second")
        key = self.key()
        now = self.clock.now_us() // 1_000_000
        claims: dict[str, Any] = {
            "iss": LOCAL_ISSUER, "aud": LOCAL_AUDIENCE, "sub": subject, "iat": now, "nbf": now,
            "exp": now + ttl_s, "jti": secrets.token_urlsafe(16), "roles": role_list,
            "amr": ["mfa"] if mfa else ["pwd"],
        }
        if sector is not None:
            claims["sector"] = sector
        claims.update(extra or {})
        header = {"kid": public_jwk(key)["kid"], "typ": "at+jwt"}
        token = jwt.encode(claims, key, algorithm=self.signing_algorithm, headers=header)
        return MintedToken(token, {"alg": self.signing_algorithm, **header}, claims)


# --------------------------------------------------------------------------------------------------- binding


def _is_loopback_host(host: str) -> bool:
    name = host.strip().strip("[]")
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(name, None)
    except OSError:
        return False
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(ipaddress.ip_address(str(a).split("%")[0]).is_loopback for a in addresses)


def check_bind_allowed(host: str, settings: Settings) -> None:
    """Refuse (ConfigurationError) to listen on a non-loopback address while only the local issuer is trusted."""
    if settings.oidc_issuers:
        return
    if not _is_loopback_host(host):
        raise ConfigurationError(
            f"refusing to listen on {host}: no OIDC issuer is configured, so only local development tokens "
            "would be accepted; bind a loopback address (127.0.0.1, ::1) or configure KNHK_OIDC_ISSUERS"
        )
