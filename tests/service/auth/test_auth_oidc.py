"""OIDC bearer-token validation against a real OpenID provider (oidc-provider v9 on Node.js).

Valid tokens come from the provider's client-credentials grant; the tokens it cannot produce (alg none, HS256
keyed with its public key, foreign iss, tampered payloads) are crafted with PyJWT or by hand, signed with the
provider's own private key where that matters.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from oidc_support import AUDIENCE, OidcProvider, Ticker, b64url, b64url_json, hs256_token, issuer_config

from knhk.errors import AuthenticationError, DependencyUnavailableError, ForbiddenError
from knhk.identity import authorize
from knhk.identity.oidc import AuthenticationFailure, Authenticator, BearerTokenError, IssuerConfig
from knhk.ops.clock import ManualClock

ROLE_CLIENTS = {
    "observer-svc": ({"observer"}, False, "finance"),
    "analyst-svc": ({"analyst"}, False, "healthcare"),
    "proposer-svc": ({"proposer"}, False, None),
    "validator-svc": ({"validator"}, False, None),
    "operator-svc": ({"operator"}, True, "finance"),
    "administrator-svc": ({"administrator"}, True, None),
    "ingestor-svc": ({"ingestor"}, False, "manufacturing"),
}


def bearer(token: str) -> str:
    return f"Bearer {token}"


def reject(auth: Authenticator, token: str, reason: str) -> BearerTokenError:
    with pytest.raises(BearerTokenError) as info:
        auth.authenticate(bearer(token))
    err = info.value
    assert err.reason == reason, err.message
    assert err.http_status == 401
    assert isinstance(err, AuthenticationError)
    assert token not in err.message
    signature = token.split(".")[-1]
    assert len(signature) < 8 or signature not in err.message
    assert err.www_authenticate.startswith('Bearer realm="knhk", error="invalid_token"')
    return err


def clock_at(seconds: float) -> ManualClock:
    return ManualClock(int(seconds * 1_000_000))


def fresh_claims(provider: OidcProvider, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {"iss": provider.issuer, "aud": AUDIENCE, "sub": "crafted", "iat": now,
                              "exp": now + 300, "groups": ["knhk-admins"], "amr": ["mfa"]}
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


# ------------------------------------------------------------------------------------------------ valid tokens


@pytest.mark.parametrize("client", sorted(ROLE_CLIENTS))
def test_valid_token_of_each_role(oidc_provider: OidcProvider, authenticator: Authenticator, client: str) -> None:
    roles, mfa, sector = ROLE_CLIENTS[client]
    token = oidc_provider.token(client)
    claims = oidc_provider.claims(token)
    principal = authenticator.authenticate(bearer(token))
    assert principal.roles == roles
    assert principal.mfa is mfa
    assert principal.sector == sector
    assert principal.issuer == oidc_provider.issuer
    assert principal.subject == client  # the provider's sub of a client-credentials token is the client id
    assert principal.identity == f"{oidc_provider.issuer}#{client}"
    assert principal.token_id == claims["jti"]
    assert principal.expires_at == claims["exp"]
    assert principal.client_id == client
    assert principal.pseudonym is None
    assert principal.with_pseudonym("sub_" + "0" * 32).pseudonym == "sub_" + "0" * 32


def test_acr_value_proves_mfa(oidc_provider: OidcProvider, authenticator: Authenticator) -> None:
    principal = authenticator.authenticate(bearer(oidc_provider.token("operator-acr")))
    assert principal.roles == {"operator"}
    assert principal.mfa is True
    authorize(principal, "snapshots:promote", mutating=True)


def test_azure_style_oid_user_id_and_roles_claim(oidc_provider: OidcProvider) -> None:
    config = issuer_config(oidc_provider, user_id_claim="oid", roles_claim="roles",
                           group_roles={"KNHK.Administrator": "administrator"})
    with Authenticator([config]) as auth:
        principal = auth.authenticate(bearer(oidc_provider.token("azure-style")))
    assert principal.subject == "5f1c9d2e-0000-4000-8000-00000000abcd"
    assert principal.identity == f"{oidc_provider.issuer}#5f1c9d2e-0000-4000-8000-00000000abcd"
    assert principal.roles == {"administrator"}  # KNHK.Unknown is ignored
    assert principal.mfa is True


def test_unmapped_groups_give_no_role_and_403_everywhere(oidc_provider: OidcProvider,
                                                         authenticator: Authenticator) -> None:
    principal = authenticator.authenticate(bearer(oidc_provider.token("unmapped-groups")))
    assert principal.roles == frozenset()
    assert principal.groups == ("marketing", "knhk-everyone")
    for permission, mutating in (("observations:read", False), ("observations:write", True)):
        with pytest.raises(ForbiddenError) as info:
            authorize(principal, permission, mutating=mutating)
        assert info.value.http_status == 403
        assert "no group mapped to a KNHK role" in info.value.message


def test_missing_mfa_on_mutating_operator_action_is_403(oidc_provider: OidcProvider,
                                                        authenticator: Authenticator) -> None:
    principal = authenticator.authenticate(bearer(oidc_provider.token("operator-nomfa")))
    assert principal.roles == {"operator"}
    assert principal.mfa is False
    for permission in ("snapshots:promote", "snapshots:rollback", "cycles:run"):
        with pytest.raises(ForbiddenError) as info:
            authorize(principal, permission, mutating=True)
        assert "this action needs multi-factor authentication" in info.value.message
    authorize(principal, "snapshots:read", mutating=False)  # reads need no MFA
    with_mfa = authenticator.authenticate(bearer(oidc_provider.token("operator-svc")))
    authorize(with_mfa, "snapshots:promote", mutating=True)


def test_verified_tokens_are_cached_until_they_expire(oidc_provider: OidcProvider) -> None:
    token = oidc_provider.token("observer-svc")
    claims = oidc_provider.claims(token)
    clock = clock_at(claims["iat"] + 1)
    with Authenticator([issuer_config(oidc_provider)], clock=clock) as auth:
        first = auth.authenticate(bearer(token))
        assert auth.authenticate(bearer(token)) is first  # served from the cache
        clock.set((claims["exp"] + 61) * 1_000_000)
        reject(auth, token, "expired")  # the cache entry ran out with the token


# ------------------------------------------------------------------------------------------------ time claims


def test_expired_token(oidc_provider: OidcProvider) -> None:
    token = oidc_provider.token("observer-svc")
    exp = oidc_provider.claims(token)["exp"]
    with Authenticator([issuer_config(oidc_provider)], clock=clock_at(exp + 30), token_cache_size=0) as auth:
        auth.authenticate(bearer(token))  # within the 60 s leeway
    with Authenticator([issuer_config(oidc_provider)], clock=clock_at(exp + 61)) as auth:
        err = reject(auth, token, "expired")
    assert "expired" in err.message


def test_not_yet_valid_token(oidc_provider: OidcProvider, authenticator: Authenticator) -> None:
    token = oidc_provider.token("future-nbf")  # the provider sets nbf an hour ahead
    err = reject(authenticator, token, "not_yet_valid")
    assert "not yet valid" in err.message
    soon = oidc_provider.sign(fresh_claims(oidc_provider, nbf=int(time.time()) + 30))
    assert authenticator.authenticate(bearer(soon)).roles == {"administrator"}  # within the 60 s leeway
    future_iat = oidc_provider.sign(fresh_claims(oidc_provider, iat=int(time.time()) + 3600,
                                                 exp=int(time.time()) + 7200))
    reject(authenticator, future_iat, "not_yet_valid")


def test_token_older_than_the_maximum_age(oidc_provider: OidcProvider) -> None:
    token = oidc_provider.token("observer-svc")
    iat = oidc_provider.claims(token)["iat"]
    with Authenticator([issuer_config(oidc_provider)], clock=clock_at(iat + 200), max_token_age_s=120) as auth:
        err = reject(auth, token, "too_old")
    assert "too old" in err.message


def test_missing_exp_or_iat_is_refused(oidc_provider: OidcProvider, authenticator: Authenticator) -> None:
    reject(authenticator, oidc_provider.sign(fresh_claims(oidc_provider, exp=None)), "malformed")
    reject(authenticator, oidc_provider.sign(fresh_claims(oidc_provider, iat=None)), "malformed")
    reject(authenticator, oidc_provider.sign(fresh_claims(oidc_provider, exp="tomorrow")), "malformed")


# ------------------------------------------------------------------------------------------------ iss and aud


def test_wrong_audience(oidc_provider: OidcProvider, authenticator: Authenticator) -> None:
    token = oidc_provider.token("administrator-svc", resource="urn:other:api")
    assert oidc_provider.claims(token)["aud"] == "urn:other:api"
    err = reject(authenticator, token, "wrong_audience")
    assert "wrong audience" in err.message
    listed = oidc_provider.sign(fresh_claims(oidc_provider, aud=["urn:other:api", AUDIENCE]))
    assert authenticator.authenticate(bearer(listed)).roles == {"administrator"}  # aud may be a list
    reject(authenticator, oidc_provider.sign(fresh_claims(oidc_provider, aud=None)), "wrong_audience")


def test_wrong_issuer(oidc_provider: OidcProvider, authenticator: Authenticator) -> None:
    # The exact issuer string matters: a trailing slash is another issuer, even with the provider's own key.
    slash = oidc_provider.sign(fresh_claims(oidc_provider, iss=oidc_provider.issuer + "/"))
    err = reject(authenticator, slash, "wrong_issuer")
    assert "wrong issuer" in err.message
    reject(authenticator, oidc_provider.sign(fresh_claims(oidc_provider, iss="https://evil.example")),
           "wrong_issuer")
    # A real token from a provider this authenticator does not trust.
    other = IssuerConfig.from_mapping({"issuer": "https://idp.example.org", "audience": AUDIENCE})
    with Authenticator([other]) as auth:
        reject(auth, oidc_provider.token("administrator-svc"), "wrong_issuer")
        assert auth.jwks_fetches("https://idp.example.org") == 0  # refused before any key lookup


def test_discovery_document_naming_another_issuer_is_refused(oidc_provider: OidcProvider) -> None:
    alias = oidc_provider.issuer.replace("127.0.0.1", "localhost")
    config = IssuerConfig.from_mapping({"issuer": alias, "audience": AUDIENCE})
    token = oidc_provider.sign(fresh_claims(oidc_provider, iss=alias))
    with Authenticator([config]) as auth, pytest.raises(DependencyUnavailableError) as info:
        auth.authenticate(bearer(token))
    assert "names issuer" in info.value.message


def test_issuer_unreachable_is_503(oidc_provider: OidcProvider) -> None:
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    issuer = f"http://127.0.0.1:{port}"
    token = oidc_provider.sign(fresh_claims(oidc_provider, iss=issuer))
    ticker = Ticker()
    with Authenticator([IssuerConfig.from_mapping({"issuer": issuer, "audience": AUDIENCE})],
                       monotonic=ticker, http_timeout_s=2) as auth:
        with pytest.raises(DependencyUnavailableError) as info:
            auth.authenticate(bearer(token))
        assert info.value.http_status == 503
        assert "unreachable" in info.value.message
        assert token not in info.value.message
        with pytest.raises(DependencyUnavailableError):  # right after a failure: 503 without a new attempt
            auth.authenticate(bearer(token))
        assert auth.jwks_fetches(issuer) == 1
        assert "unreachable" in (auth.prefetch()[issuer] or "")
        assert auth.jwks_fetches(issuer) == 1
        ticker.advance(6)
        with pytest.raises(DependencyUnavailableError):
            auth.authenticate(bearer(token))
        assert auth.jwks_fetches(issuer) == 2


# ------------------------------------------------------------------------------------------------ keys


def test_unknown_kid_then_rotation_at_the_provider(ticker: Ticker) -> None:
    provider = OidcProvider.start()  # its own provider: this test rotates its keys
    try:
        with Authenticator([issuer_config(provider)], monotonic=ticker, jwks_refetch_interval_s=60) as auth:
            old = provider.token("operator-svc")
            assert auth.authenticate(bearer(old)).roles == {"operator"}
            assert auth.jwks_fetches(provider.issuer) == 1
            jwks_requests = provider.stats()["jwks_requests"]

            # A kid nobody published: one refetch is not allowed yet (the first fetch was just now).
            forged = provider.sign(fresh_claims(provider), kid=provider.current_kid, headers={"kid": "no-such-key"})
            err = reject(auth, forged, "unknown_key")
            assert "unknown key" in err.message
            assert auth.jwks_fetches(provider.issuer) == 1

            new_kid = provider.rotate()
            fresh = provider.token("operator-svc")
            assert json.loads(__import__("base64").urlsafe_b64decode(fresh.split(".")[0] + "==")
                              )["kid"] == new_kid
            # Within the rate limit the new key is unknown too, and many attempts cause no fetch at all.
            for _ in range(20):
                reject(auth, fresh, "unknown_key")
            assert auth.jwks_fetches(provider.issuer) == 1
            assert auth.suppressed_refetches(provider.issuer) == 21
            assert provider.stats()["jwks_requests"] == jwks_requests

            ticker.advance(61)  # the limit has passed: one refetch finds the rotated key
            principal = auth.authenticate(bearer(fresh))
            assert principal.roles == {"operator"}
            assert principal.mfa
            assert auth.jwks_fetches(provider.issuer) == 2
            assert provider.stats()["jwks_requests"] == jwks_requests + 1

            # The old key left the provider's JWKS: its tokens are now unknown (and cause no new fetch).
            auth.clear_token_cache()
            reject(auth, old, "unknown_key")
            assert auth.jwks_fetches(provider.issuer) == 2
    finally:
        provider.stop()


def test_prefetch_and_periodic_refresh_of_the_key_set(oidc_provider: OidcProvider, ticker: Ticker) -> None:
    with Authenticator([issuer_config(oidc_provider)], monotonic=ticker, jwks_max_age_s=300) as auth:
        assert auth.prefetch() == {oidc_provider.issuer: None}
        assert auth.jwks_fetches(oidc_provider.issuer) == 1
        auth.authenticate(bearer(oidc_provider.token("observer-svc")))
        assert auth.jwks_fetches(oidc_provider.issuer) == 1  # served from the cached key set
        ticker.advance(301)
        auth.authenticate(bearer(oidc_provider.token("analyst-svc")))
        assert auth.jwks_fetches(oidc_provider.issuer) == 2  # older than jwks_max_age_s: fetched again


def test_token_without_kid_uses_the_only_matching_key(oidc_provider: OidcProvider,
                                                      authenticator: Authenticator) -> None:
    claims = fresh_claims(oidc_provider)
    import jwt

    token = jwt.encode(claims, oidc_provider.private_key, algorithm="RS256")
    assert "kid" not in jwt.get_unverified_header(token)
    # The provider publishes exactly one RS256 key, so a kid-less token can only mean that key.
    assert authenticator.authenticate(bearer(token)).roles == {"administrator"}


# ------------------------------------------------------------------------------------------------ forgeries


def test_alg_none_is_refused(oidc_provider: OidcProvider, authenticator: Authenticator) -> None:
    claims = fresh_claims(oidc_provider)
    for alg in ("none", "None", "NONE"):
        token = f"{b64url_json({'alg': alg, 'typ': 'JWT', 'kid': oidc_provider.current_kid})}.{b64url_json(claims)}."
        err = reject(authenticator, token, "disallowed_algorithm")
        assert "disallowed algorithm" in err.message


def test_hs256_signed_with_the_public_key_is_refused(oidc_provider: OidcProvider,
                                                     authenticator: Authenticator) -> None:
    """Algorithm confusion (RFC 8725 §2.1): the public key used as an HMAC secret."""
    public = oidc_provider.private_key.public_key()
    secrets_tried = [
        public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1),
        RSAAlgorithm.to_jwk(public).encode(),
    ]
    claims = fresh_claims(oidc_provider)
    for alg in ("HS256", "HS384", "HS512"):
        for secret in secrets_tried:
            header = {"alg": alg, "typ": "JWT", "kid": oidc_provider.current_kid}
            token = hs256_token(header, claims, secret)
            err = reject(authenticator, token, "disallowed_algorithm")
            assert alg in err.message


def test_tampered_payload_is_refused(oidc_provider: OidcProvider, authenticator: Authenticator) -> None:
    token = oidc_provider.token("observer-svc")
    header, payload, signature = token.split(".")
    claims = oidc_provider.claims(token)
    claims["groups"] = ["knhk-admins"]  # privilege escalation attempt
    tampered = f"{header}.{b64url_json(claims)}.{signature}"
    err = reject(authenticator, tampered, "bad_signature")
    assert err.message == "bad signature"
    # Flipping one bit of the signature is just as bad.
    raw = bytearray(__import__("base64").urlsafe_b64decode(signature + "=="))
    raw[10] ^= 1
    reject(authenticator, f"{header}.{payload}.{b64url(bytes(raw))}", "bad_signature")
    # The untouched token still verifies.
    assert authenticator.authenticate(bearer(token)).roles == {"observer"}


def test_token_signed_by_another_key_under_the_providers_kid(oidc_provider: OidcProvider,
                                                             authenticator: Authenticator) -> None:
    import jwt

    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(fresh_claims(oidc_provider), attacker, algorithm="RS256",
                       headers={"kid": oidc_provider.current_kid})
    reject(authenticator, token, "bad_signature")


def test_algorithm_must_match_the_keys_type(oidc_provider: OidcProvider, authenticator: Authenticator) -> None:
    import jwt

    ec_key = ec.generate_private_key(ec.SECP256R1())
    token = jwt.encode(fresh_claims(oidc_provider), ec_key, algorithm="ES256",
                       headers={"kid": oidc_provider.current_kid})  # ES256 under the provider's RSA kid
    err = reject(authenticator, token, "disallowed_algorithm")
    assert "RS256" in err.message


@pytest.mark.parametrize("header", [
    None, "", "   ", "Basic dXNlcjpwYXNz", "Bearer", "Bearer   ",
])
def test_missing_bearer_token(authenticator: Authenticator, header: str | None) -> None:
    with pytest.raises(BearerTokenError) as info:
        authenticator.authenticate(header)
    assert info.value.reason == "missing"
    assert info.value.www_authenticate == 'Bearer realm="knhk"'
    assert info.value.http_status == 401


@pytest.mark.parametrize("token", [
    "not-a-jwt", "a.b", "a.b.c.d", "!!!.???.###", f"{b64url(b'[1,2]')}.{b64url(b'{}')}.",
    f"{b64url_json({'alg': 'RS256'})}.{b64url(b'not json')}.sig", "x" * 20_000,
])
def test_malformed_tokens(authenticator: Authenticator, token: str) -> None:
    err = reject(authenticator, token, "malformed")
    assert err.message.startswith("malformed token")


def test_wrong_token_type_is_refused(oidc_provider: OidcProvider, authenticator: Authenticator) -> None:
    token = oidc_provider.sign(fresh_claims(oidc_provider), headers={"typ": "logout+jwt"})
    reject(authenticator, token, "wrong_type")


def test_failure_hook_receives_reason_without_the_token(oidc_provider: OidcProvider) -> None:
    seen: list[AuthenticationFailure] = []

    def hook(failure: AuthenticationFailure) -> None:
        seen.append(failure)
        raise RuntimeError("a broken hook must not change the answer")

    token = oidc_provider.token("observer-svc", resource="urn:other:api")
    with Authenticator([issuer_config(oidc_provider)], on_failure=hook) as auth:
        reject(auth, token, "wrong_audience")
        with pytest.raises(BearerTokenError):
            auth.authenticate(None)
    assert [f.reason for f in seen] == ["wrong_audience", "missing"]
    assert seen[0].issuer == oidc_provider.issuer
    assert seen[0].token_fingerprint is not None
    assert len(seen[0].token_fingerprint) == 16
    assert token not in repr(seen[0])
    assert token.split(".")[2] not in repr(seen[0])


# ------------------------------------------------------------------------------------------------ algorithms


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
def test_each_allowed_algorithm_verifies_from_a_jwks_file(tmp_path: Any, alg: str) -> None:
    import jwt

    key: Any
    if alg == "RS256":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    elif alg == "ES256":
        key = ec.generate_private_key(ec.SECP256R1())
        jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    else:
        key = ed25519.Ed25519PrivateKey.generate()
        jwk = json.loads(OKPAlgorithm.to_jwk(key.public_key()))
    jwk["kid"] = "k1"
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk]}))
    issuer = "urn:example:file-issuer"
    config = IssuerConfig.from_mapping({"issuer": issuer, "audience": AUDIENCE, "jwks_file": str(path),
                                        "roles_claim": "roles", "group_roles": {"admins": "administrator"}})
    now = int(time.time())
    claims = {"iss": issuer, "aud": AUDIENCE, "sub": "u1", "iat": now, "exp": now + 60, "roles": ["admins"]}
    with Authenticator([config]) as auth:
        token = jwt.encode(claims, key, algorithm=alg, headers={"kid": "k1"})
        assert auth.authenticate(bearer(token)).roles == {"administrator"}
        other = {"RS256": "ES256", "ES256": "EdDSA", "EdDSA": "RS256"}[alg]
        bad = f"{b64url_json({'alg': other, 'kid': 'k1'})}.{token.split('.')[1]}.{token.split('.')[2]}"
        reject(auth, bad, "disallowed_algorithm")


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")  # the weak key is the point
def test_jwks_never_loads_symmetric_private_or_weak_keys(tmp_path: Any) -> None:
    import jwt

    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    strong = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    keys = [
        {"kty": "oct", "k": b64url(b"shared-secret-shared-secret-0123"), "kid": "hmac", "alg": "HS256"},
        {**json.loads(RSAAlgorithm.to_jwk(strong)), "kid": "private"},  # includes "d"
        {**json.loads(RSAAlgorithm.to_jwk(weak.public_key())), "kid": "weak"},
        {**json.loads(RSAAlgorithm.to_jwk(strong.public_key())), "kid": "enc", "use": "enc"},
    ]
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": keys}))
    issuer = "urn:example:file-issuer"
    config = IssuerConfig.from_mapping({"issuer": issuer, "audience": AUDIENCE, "jwks_file": str(path)})
    now = int(time.time())
    claims = {"iss": issuer, "aud": AUDIENCE, "sub": "u1", "iat": now, "exp": now + 60}
    with Authenticator([config]) as auth:
        reject(auth, hs256_token({"alg": "HS256", "kid": "hmac"}, claims, b"shared-secret-shared-secret-0123"),
               "disallowed_algorithm")
        for kid, key in (("private", strong), ("weak", weak), ("enc", strong)):
            reject(auth, jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid}), "unknown_key")
