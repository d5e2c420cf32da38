"""The one configuration object of KNHK.

Every setting comes from the environment (``KNHK_*``), a ``.env`` file, or a secrets directory (the
Kubernetes / Vault Agent file pattern, ``KNHK_SECRETS_DIR``). Nothing else in the package reads the
environment. Defaults give a working embedded installation under ``KNHK_DATA_DIR``.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "knhk"


class Settings(BaseSettings):
    """Configuration of one KNHK installation (library, CLI or service process)."""

    model_config = SettingsConfigDict(
        env_prefix="KNHK_", env_file=".env", extra="ignore", secrets_dir=os.environ.get("KNHK_SECRETS_DIR")
    )

    data_dir: Path = Field(default_factory=_default_data_dir, description="Embedded store and key files.")
    database_url: str | None = Field(
        default=None,
        description="sqlite:///path or postgresql://…; default: an embedded SQLite file in data_dir.",
    )
    keys_dir: Path | None = Field(default=None, description="Private signing keys; default data_dir/keys.")
    signing_key: SecretStr | None = Field(
        default=None, description="Hex Ed25519 seed of the active signing key (overrides key files)."
    )
    signing_key_file: Path | None = Field(default=None, description="File holding the hex Ed25519 seed.")

    log_origin_prefix: str = Field(
        default="", description="Prefix of checkpoint origin lines, e.g. 'ledger.example.org/'."
    )
    checkpoint_every_entries: int = Field(default=1000, ge=1)
    checkpoint_every_seconds: float = Field(default=60.0, gt=0)
    sequencer_max_batch: int = Field(default=2000, ge=1, le=100_000)

    db_pool_min: int = Field(default=10, ge=0)
    db_pool_max: int = Field(default=50, ge=1)
    db_statement_timeout_ms: int = Field(default=30_000, ge=0)
    db_connect_timeout_s: float = Field(default=5.0, gt=0)

    subject_hmac_key: SecretStr | None = Field(
        default=None, description="Secret for the blind index of subject identities; generated if absent."
    )

    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "text"

    @field_validator("database_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("sqlite://", "postgresql://", "postgres://")):
            raise ValueError("KNHK_DATABASE_URL must start with sqlite://, postgresql:// or postgres://")
        return value

    @cached_property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'knhk.db'}"

    @cached_property
    def resolved_keys_dir(self) -> Path:
        return self.keys_dir or self.data_dir / "keys"

    @property
    def embedded(self) -> bool:
        return self.resolved_database_url.startswith("sqlite://")


def load_settings(**overrides: object) -> Settings:
    """Read the settings from the environment, with explicit overrides (CLI options) on top."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
