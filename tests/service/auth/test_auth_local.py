"""Local mode: the development issuer in the data directory, ``knhk token mint``, and the loopback-only rule."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from knhk.cli.main import app
from knhk.config import Settings
from knhk.errors import ConfigurationError, ForbiddenError
from knhk.identity import authorize
from knhk.identity.authenticator import build_authenticator
from knhk.identity.local import LOCAL_AUDIENCE, LOCAL_ISSUER, LocalIssuer, check_bind_allowed
from knhk.identity.oidc import BearerTokenError
from knhk.ops.clock import ManualClock


def local_settings(tmp_path: Path, **extra: object) -> Settings:
    return Settings(data_dir=tmp_path, **extra)  # type: ignore[arg-type]


@pytest.mark.parametrize("algorithm", ["EdDSA", "RS256"])
def test_mint_then_verify_round_trip(tmp_path: Path, algorithm: str) -> None:
    settings = local_settings(tmp_path, local_issuer_algorithm=algorithm)
    issuer = LocalIssuer.from_settings(settings)
    minted = issuer.mint(["operator"], subject="alice", sector="finance", mfa=True, ttl_s=600)
    assert minted.header["alg"] == algorithm
    assert minted.claims["iss"] == LOCAL_ISSUER
    assert minted.claims["aud"] == LOCAL_AUDIENCE
    with build_authenticator(settings) as auth:
        principal = auth.authenticate(f"Bearer {minted.token}")
    assert principal.identity == "urn:knhk:local#alice"
    assert principal.roles == {"operator"}
    assert principal.mfa is True
    assert principal.sector == "finance"
    assert principal.token_id == minted.claims["jti"]
    authorize(principal, "cycles:run", mutating=True)


def test_key_file_is_private_and_reused(tmp_path: Path) -> None:
    settings = local_settings(tmp_path)
    first = LocalIssuer.from_settings(settings)
    token = first.mint(["observer"], subject="bob").token
    key_file = settings.resolved_local_issuer_key_file
    assert key_file == tmp_path / "local-issuer" / "key.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    jwks = json.loads((key_file.parent / "jwks.json").read_text())
    assert [k["kty"] for k in jwks["keys"]] == ["OKP"]
    assert "d" not in jwks["keys"][0]
    pem = key_file.read_bytes()
    # A second issuer object (another process) uses the same key: the first token still verifies.
    LocalIssuer.from_settings(settings).mint(["observer"], subject="bob")
    assert key_file.read_bytes() == pem
    with build_authenticator(settings) as auth:
        assert auth.authenticate(f"Bearer {token}").roles == {"observer"}


def test_local_tokens_expire_and_mfa_is_explicit(tmp_path: Path) -> None:
    settings = local_settings(tmp_path)
    clock = ManualClock(1_800_000_000_000_000)
    issuer = LocalIssuer(settings.resolved_local_issuer_key_file, clock=clock)
    token = issuer.mint(["administrator"], subject="carol", ttl_s=120).token
    with build_authenticator(settings, clock=clock) as auth:
        principal = auth.authenticate(f"Bearer {token}")
        assert principal.mfa is False
        with pytest.raises(ForbiddenError, match="multi-factor"):
            authorize(principal, "keys:rotate", mutating=True)
        clock.advance(120 + 61)
        auth.clear_token_cache()
        with pytest.raises(BearerTokenError) as info:
            auth.authenticate(f"Bearer {token}")
        assert info.value.reason == "expired"


def test_token_of_another_data_directory_is_refused(tmp_path: Path) -> None:
    mine, theirs = local_settings(tmp_path / "a"), local_settings(tmp_path / "b")
    token = LocalIssuer.from_settings(theirs).mint(["administrator"], subject="mallory", mfa=True).token
    with build_authenticator(mine) as auth, pytest.raises(BearerTokenError) as info:
        auth.authenticate(f"Bearer {token}")
    assert info.value.reason == "unknown_key"


def test_local_tokens_are_refused_when_a_real_issuer_is_configured(tmp_path: Path) -> None:
    settings = local_settings(tmp_path, oidc_issuers=[{"issuer": "https://idp.example.org", "audience": "urn:x"}])
    token = LocalIssuer.from_settings(settings).mint(["administrator"], subject="dave", mfa=True).token
    with build_authenticator(settings) as auth, pytest.raises(BearerTokenError) as info:
        auth.authenticate(f"Bearer {token}")
    assert info.value.reason == "wrong_issuer"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost"])
def test_loopback_binds_are_allowed_without_an_issuer(tmp_path: Path, host: str) -> None:
    check_bind_allowed(host, local_settings(tmp_path))


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "10.1.2.3", "2001:db8::1"])
def test_non_loopback_binds_are_refused_without_an_issuer(tmp_path: Path, host: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        check_bind_allowed(host, local_settings(tmp_path))
    assert "KNHK_OIDC_ISSUERS" in info.value.message
    issuer = [{"issuer": "https://idp.example.org", "audience": "urn:knhk:api"}]
    check_bind_allowed(host, local_settings(tmp_path, oidc_issuers=issuer))  # a real issuer: any address


# ------------------------------------------------------------------------------------------------ the CLI


def test_cli_mint_prints_only_the_token(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["--data-dir", str(tmp_path), "token", "mint", "--role", "validator",
                                 "--role", "ingestor", "--sector", "energy", "--ttl", "900", "--subject", "erin"])
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert token.count(".") == 2
    assert "\n" not in token
    pem = (tmp_path / "local-issuer" / "key.pem").read_text()
    body = "".join(pem.strip().splitlines()[1:-1])
    assert body not in result.output
    with build_authenticator(local_settings(tmp_path)) as auth:
        principal = auth.authenticate(f"Bearer {token}")
    assert principal.roles == {"validator", "ingestor"}
    assert principal.subject == "erin"
    assert principal.sector == "energy"
    assert not principal.mfa
    assert principal.expires_at is not None


def test_cli_mint_json(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["--data-dir", str(tmp_path), "token", "mint", "--role", "operator", "--mfa",
                                      "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["claims"]["roles"] == ["operator"]
    assert out["claims"]["amr"] == ["mfa"]
    assert out["claims"]["exp"] - out["claims"]["iat"] == 3600
    assert out["header"]["alg"] == "EdDSA"
    assert out["header"]["typ"] == "at+jwt"
    with build_authenticator(local_settings(tmp_path)) as auth:
        assert auth.authenticate(f"Bearer {out['token']}").mfa is True


@pytest.mark.parametrize("args", [["--role", "root"], ["--role", "observer", "--ttl", "0"],
                                  ["--role", "observer", "--ttl", "86401"]])
def test_cli_mint_usage_errors(tmp_path: Path, args: list[str]) -> None:
    import sys

    from knhk.cli.main import main
    argv = sys.argv
    sys.argv = ["knhk", "--data-dir", str(tmp_path), "token", "mint", *args]
    try:
        with pytest.raises(SystemExit) as info:
            main()
    finally:
        sys.argv = argv
    assert info.value.code == 2


def test_mfa_required_roles_setting_is_applied_by_the_authenticator(tmp_path: Path) -> None:
    settings = local_settings(tmp_path, auth_mfa_required_roles=["administrator"])
    token = LocalIssuer.from_settings(settings).mint(["operator"], subject="olga").token
    with build_authenticator(settings) as auth:
        operator = auth.authenticate(f"Bearer {token}")
        auth.authorize(operator, "snapshots:promote", mutating=True)  # operators no longer need MFA here
    with pytest.raises(ForbiddenError, match="multi-factor"):
        authorize(operator, "snapshots:promote", mutating=True)  # the default rule still would
    with pytest.raises(ConfigurationError, match="unknown role"):
        build_authenticator(local_settings(tmp_path, auth_mfa_required_roles=["root"]))


@pytest.mark.parametrize(("raw", "message"), [
    ({"issuer": "https://idp.example.org"}, "needs 'issuer' and 'audience'"),
    ({"issuer": "http://idp.example.org", "audience": "a"}, "must be an https:// URL"),
    ({"issuer": "https://idp.example.org", "audience": "a", "jwks_uri": "http://10.0.0.1/jwks"}, "https://"),
    ({"issuer": "https://idp.example.org", "audience": "a", "group_roles": {"g": "root"}}, "unknown role"),
    ({"issuer": "https://idp.example.org", "audience": "a", "algorithms": ["HS256"]}, "subset"),
    ({"issuer": "https://idp.example.org", "audience": "a", "audiance": "typo"}, "unknown OIDC issuer setting"),
])
def test_issuer_configuration_errors(tmp_path: Path, raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        build_authenticator(local_settings(tmp_path, oidc_issuers=[raw]))


def test_async_authentication_matches_sync(tmp_path: Path) -> None:
    import anyio

    settings = local_settings(tmp_path)
    token = LocalIssuer.from_settings(settings).mint(["analyst"], subject="amy").token
    with build_authenticator(settings) as auth:
        first = anyio.run(auth.authenticate_async, f"Bearer {token}")  # verified in a worker thread
        again = anyio.run(auth.authenticate_async, f"Bearer {token}")  # from the cache, inline
        assert first.roles == {"analyst"}
        assert again is first
        with pytest.raises(BearerTokenError):
            anyio.run(auth.authenticate_async, "Bearer not.a.token")
