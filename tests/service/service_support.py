"""Helpers shared by the service tests: the ``Api`` handle (client, settings, token minting)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from knhk.config import Settings
from knhk.identity.local import LocalIssuer


@dataclass
class Api:
    client: TestClient
    settings: Settings
    issuer: LocalIssuer

    def token(self, *roles: str, subject: str = "alice@example.org", sector: str | None = None,
              mfa: bool = True) -> dict[str, str]:
        minted = self.issuer.mint(roles, subject=subject, sector=sector, mfa=mfa)
        return {"Authorization": f"Bearer {minted.token}"}

    @property
    def runtime(self) -> Any:
        return self.client.app.state.knhk.app.runtime  # type: ignore[attr-defined]


def make_settings(tmp: Path, database_url: str, **overrides: object) -> Settings:
    base: dict[str, object] = {
        "data_dir": tmp / "data", "database_url": database_url, "db_pool_min": 1, "db_pool_max": 8,
        "cycle_interval_s": 0, "verify_interval_s": 0, "checkpoint_interval_s": 0,
    }
    base.update(overrides)
    return Settings(**base)  # type: ignore[arg-type]


