"""Fixtures of the identity-and-access tests: a real OpenID provider (Node.js, session-wide) and authenticators
trusting it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from oidc_support import OidcProvider, Ticker, issuer_config

from knhk.identity.oidc import Authenticator


@pytest.fixture(scope="session")
def oidc_provider() -> Iterator[OidcProvider]:
    provider = OidcProvider.start()
    try:
        yield provider
    finally:
        provider.stop()


@pytest.fixture
def authenticator(oidc_provider: OidcProvider) -> Iterator[Authenticator]:
    with Authenticator([issuer_config(oidc_provider)]) as auth:
        yield auth


@pytest.fixture
def ticker() -> Ticker:
    return Ticker()
