"""Fixtures for the HTTP service: the real FastAPI app (lifespan and all) over a real database, called
through Starlette's test client, with tokens minted by the local dev issuer the service trusts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from service_support import Api, make_settings

from knhk.identity.local import LocalIssuer
from knhk.service.app import create_app


@pytest.fixture
def api_factory(tmp_path: Path) -> Iterator[Callable[..., Api]]:
    clients: list[TestClient] = []

    def make(database_url: str | None = None, **overrides: object) -> Api:
        url = database_url or f"sqlite:///{tmp_path / 'knhk.db'}"
        settings = make_settings(tmp_path, url, **overrides)
        client = TestClient(create_app(settings, background=False), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return Api(client, settings, LocalIssuer.from_settings(settings))

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def api(api_factory: Callable[..., Api]) -> Api:
    """The service on embedded SQLite."""
    return api_factory()


@pytest.fixture
def api_any(api_factory: Callable[..., Api], database_url: str) -> Api:
    """The service on each backend (SQLite and PostgreSQL)."""
    return api_factory(database_url)
