"""A real OpenID provider for the authentication tests: panva/oidc-provider v9 on Node.js (tests/service/oidc/).

``ensure_node_modules()`` runs ``npm ci`` from the committed lockfile the first time (and again whenever the
lockfile changes); ``OidcProvider.start()`` runs ``provider.mjs`` on a free loopback port with RSA keys made
here, so tests can also sign tokens the provider could never produce (alg none, HS256 with the public key, a
foreign iss) with the provider's own private key. Node.js and npm are required: without them the tests fail
with a message saying so; they are never skipped.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from knhk.identity.oidc import IssuerConfig
from support.locks import exclusive

OIDC_DIR = Path(__file__).resolve().parent.parent / "oidc"
AUDIENCE = "urn:knhk:api"
CLIENT_SECRET = "s3cret-" + "x" * 32

#: client id → extra claims of its access tokens. One client per role, plus the odd ones.
CLIENTS: dict[str, dict[str, Any]] = {
    "observer-svc": {"claims": {"groups": ["knhk-observers"], "sector": "finance"}},
    "analyst-svc": {"claims": {"groups": ["knhk-analysts", "some-unrelated-group"], "sector": "healthcare"}},
    "proposer-svc": {"claims": {"groups": ["knhk-proposers"]}},
    "validator-svc": {"claims": {"groups": ["knhk-validators"], "amr": ["pwd"]}},
    "operator-svc": {"claims": {"groups": ["knhk-operators"], "amr": ["pwd", "otp"], "sector": "finance"}},
    "administrator-svc": {"claims": {"groups": ["knhk-admins"], "amr": ["hwk"]}},
    "ingestor-svc": {"claims": {"groups": ["knhk-ingestors"], "sector": "manufacturing"}},
    "operator-nomfa": {"claims": {"groups": ["knhk-operators"], "amr": ["pwd"]}},
    "operator-acr": {"claims": {"groups": ["knhk-deployers"], "acr": "urn:knhk:loa:mfa"}},
    "unmapped-groups": {"claims": {"groups": ["marketing", "knhk-everyone"], "amr": ["mfa"]}},
    "azure-style": {"claims": {"oid": "5f1c9d2e-0000-4000-8000-00000000abcd",
                               "roles": ["KNHK.Administrator", "KNHK.Unknown"], "amr": ["mfa"]}},
    "future-nbf": {"claims": {"groups": ["knhk-observers"]}, "nbf_offset": 3600},
}

ISSUER_GROUP_ROLES = {
    "knhk-observers": ["observer"], "knhk-analysts": ["analyst"], "knhk-proposers": ["proposer"],
    "knhk-validators": ["validator"], "knhk-operators": ["operator"], "knhk-deployers": ["operator"],
    "knhk-admins": ["administrator"], "knhk-ingestors": ["ingestor"],
}


def require_node() -> tuple[str, str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("Node.js and npm are required for the OpenID provider of the authentication tests "
                    f"(found node={node}, npm={npm}); install Node.js 20+ with npm (Debian: apt-get install "
                    "nodejs npm)", pytrace=False)
    return node, npm


def ensure_node_modules() -> None:
    """``npm ci`` from the committed lockfile unless node_modules already matches it."""
    _, npm = require_node()
    lock = OIDC_DIR / "package-lock.json"
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()
    stamp = OIDC_DIR / "node_modules" / ".knhk-lock-sha256"
    with exclusive(OIDC_DIR / ".npm-ci.lock"):  # parallel test workers: one runs npm ci, the others wait
        if stamp.exists() and stamp.read_text().strip() == digest:
            return
        result = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=OIDC_DIR,
                                capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            pytest.fail(f"npm ci in {OIDC_DIR} failed (exit {result.returncode}):\n{result.stdout}\n"
                        f"{result.stderr}", pytrace=False)
        stamp.write_text(digest + "\n")


def new_rsa_key(kid: str) -> tuple[rsa.RSAPrivateKey, dict[str, Any]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(key))
    jwk.pop("key_ops", None)  # PyJWT marks a private JWK "sign"; the provider would publish that as is
    jwk.update(kid=kid, alg="RS256", use="sig")
    return key, jwk


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_json(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def hs256_token(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    """An HS256 JWS built by hand (PyJWT refuses to use a public key as an HMAC secret, attackers do not)."""
    signing_input = f"{b64url_json(header)}.{b64url_json(claims)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


@dataclass
class OidcProvider:
    """One running provider process."""

    process: subprocess.Popen[str]
    issuer: str
    admin_secret: str
    workdir: Path
    keys: dict[str, rsa.RSAPrivateKey] = field(default_factory=dict)
    current_kid: str = ""
    _stderr: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, *, access_token_ttl: int = 600, code_clients: list[dict[str, Any]] | None = None,
              accounts: dict[str, dict[str, Any]] | None = None) -> OidcProvider:
        node, _ = require_node()
        ensure_node_modules()
        workdir = Path(tempfile.mkdtemp(prefix="knhk-oidc-"))
        kid = "key-" + secrets.token_hex(4)
        key, jwk = new_rsa_key(kid)
        admin_secret = secrets.token_hex(16)
        config = {"jwks": {"keys": [jwk]}, "admin_secret": admin_secret, "access_token_ttl": access_token_ttl,
                  "clients": [{"client_id": cid, "client_secret": CLIENT_SECRET, **spec}
                              for cid, spec in CLIENTS.items()],
                  "code_clients": code_clients or [], "accounts": accounts or {}}
        config_path = workdir / "config.json"
        fd = os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(config, handle)
        process = subprocess.Popen([node, str(OIDC_DIR / "provider.mjs"), str(config_path)], cwd=OIDC_DIR,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        stderr: list[str] = []
        threading.Thread(target=lambda: stderr.extend(process.stderr or []), daemon=True).start()
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(process.stdout.readline() if process.stdout else ""),
                                  daemon=True)
        reader.start()
        reader.join(timeout=60)
        if not line or not line[0].strip():
            process.kill()
            process.wait()
            pytest.fail(f"the OpenID provider did not start (exit {process.returncode}): {''.join(stderr)}",
                        pytrace=False)
        issuer = json.loads(line[0])["issuer"]
        return cls(process, issuer, admin_secret, workdir, {kid: key}, kid, stderr)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def private_key(self) -> rsa.RSAPrivateKey:
        return self.keys[self.current_kid]

    def token(self, client_id: str, *, resource: str | None = None) -> str:
        """An access token from the client-credentials grant (RFC 8707 resource indicator → aud)."""
        data = {"grant_type": "client_credentials"}
        if resource is not None:
            data["resource"] = resource
        response = httpx.post(f"{self.issuer}/token", data=data, auth=(client_id, CLIENT_SECRET), timeout=10)
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token

    def claims(self, token: str) -> dict[str, Any]:
        out: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
        return out

    def sign(self, claims: dict[str, Any], *, kid: str | None = None, alg: str = "RS256",
             headers: dict[str, Any] | None = None) -> str:
        """A token signed with the provider's own (current) private key: what only the provider could make."""
        kid = kid or self.current_kid
        return jwt.encode(claims, self.keys[kid], algorithm=alg, headers={"kid": kid, **(headers or {})})

    def rotate(self) -> str:
        """Key rotation at the provider: a new RSA key replaces the old one in its JWKS; returns the new kid."""
        kid = "key-" + secrets.token_hex(4)
        key, jwk = new_rsa_key(kid)
        response = httpx.post(f"{self.issuer}/__admin/rotate", json={"keys": [jwk]},
                              headers={"x-admin-secret": self.admin_secret}, timeout=10)
        assert response.status_code == 200, response.text
        self.keys[kid] = key
        self.current_kid = kid
        return kid

    def stats(self) -> dict[str, int]:
        response = httpx.get(f"{self.issuer}/__admin/stats", headers={"x-admin-secret": self.admin_secret},
                             timeout=10)
        assert response.status_code == 200, response.text
        out: dict[str, int] = response.json()
        return out


class Ticker:
    """A monotonic clock moved by hand (for the JWKS refetch rate limit)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def issuer_config(provider: OidcProvider, **overrides: object) -> IssuerConfig:
    raw: dict[str, object] = {"issuer": provider.issuer, "audience": AUDIENCE, "group_roles": ISSUER_GROUP_ROLES,
                              "mfa_acr": ["urn:knhk:loa:mfa"]}
    raw.update(overrides)
    return IssuerConfig.from_mapping(raw)
