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
    outbox_drain_interval_s: float = Field(
        default=1.0, gt=0, le=60, description="The service's sequencer drains receipts owed in the outbox (by a "
                                              "process that died before writing them) at least this often.")
    receipt_wait_s: float = Field(
        default=2.0, ge=0, le=60, description="An ingest waits at most this long for its guard receipts; beyond it "
                                              "the ingest succeeds with them pending (they follow from the outbox).")

    db_pool_min: int = Field(default=10, ge=0)
    db_pool_max: int = Field(default=50, ge=1)
    db_statement_timeout_ms: int = Field(default=30_000, ge=0)
    db_connect_timeout_s: float = Field(default=5.0, gt=0, description="PostgreSQL: bound of establishing one "
                                        "connection (libpq counts whole seconds, at least 2).")
    db_pool_timeout_s: float = Field(default=5.0, gt=0, le=300, description="PostgreSQL: a request waits at most "
                                     "this long for a pool connection, then gets 503 pool_exhausted.")
    db_hung_check_s: float = Field(default=0.25, gt=0, le=60, description="PostgreSQL: a call or pool wait longer "
                                   "than this makes the watchdog check that the server still answers.")
    db_liveness_timeout_s: float = Field(default=0.5, gt=0, le=30, description="PostgreSQL: the watchdog's and "
                                         "/health's liveness probe waits this long for the server's answer; "
                                         "none means down or hung (calls in progress aborted, breaker opened).")
    stale_read_entries: int = Field(default=10_000, ge=0, description="Reads remembered per process for the "
                                    "stale fallback during a database outage (X-KNHK-Stale); 0 disables it.")
    migration_lock_timeout_ms: int = Field(
        default=5_000, ge=1, description="PostgreSQL: how long a migration statement may wait for a table lock.")
    migration_statement_timeout_ms: int = Field(
        default=600_000, ge=0, description="PostgreSQL: how long one migration statement may run (0: no limit).")

    # -- resilience (SPEC §11; applied by knhk.app.runtime to knhk.ops.resilience)
    breaker_fail_max: int = Field(default=5, ge=1, description="A dependency's circuit breaker opens after this "
                                                               "many consecutive failures.")
    breaker_open_s: float = Field(default=30.0, gt=0, description="How long an open breaker refuses calls (a "
                                                                  "successful probe of the dependency ends it early).")
    breaker_half_open_trials: int = Field(default=3, ge=1, description="Trial calls a half-open breaker lets "
                                                                       "through; all must succeed to close it.")
    breaker_probe_interval_s: float = Field(default=0.5, gt=0, description="While a breaker is open, its dependency "
                                                                           "is probed this often.")
    retry_attempts: int = Field(default=5, ge=1, description="Attempts of an idempotent operation (first included).")
    retry_base_s: float = Field(default=0.1, gt=0, description="Wait before the first retry; ×2 each retry.")
    retry_cap_s: float = Field(default=30.0, gt=0, description="Longest wait between two attempts.")
    retry_jitter: float = Field(default=0.25, ge=0, lt=1, description="Each wait varies by ± this fraction.")

    subject_hmac_key: SecretStr | None = Field(
        default=None, description="Secret for the blind index of subject identities; generated if absent."
    )
    token: SecretStr | None = Field(
        default=None,
        description=("KNHK_TOKEN: the bearer token the CLI acts with (like --token): from a configured OIDC "
                     "issuer, or in dev mode (no KNHK_OIDC_ISSUERS) the local dev issuer (knhk token mint)."),
    )
    phi_key: SecretStr | None = Field(
        default=None,
        description="Key-encryption key of PHI at rest (64 hex digits); default: the phi-<id>.kek files of"
        " keys_dir, the first generated on first start (docs/disaster-recovery.md).",
    )

    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "text"

    # -- the HTTP service
    host: str = Field(default="127.0.0.1", description="Listen address of `knhk serve`.")
    port: int = Field(default=8080, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    max_body_bytes: int = Field(default=1_048_576, ge=1024, description="Request body limit (413 above).")
    max_batch_body_bytes: int = Field(default=33_554_432, ge=1024, description="Body limit of the batch ingest.")
    http_header_timeout_s: float = Field(default=10.0, gt=0, le=300, description="A connection must deliver a "
                                         "complete request head this long after it opens or its last answer "
                                         "began idling; else it is closed (408 if it had sent part of one).")
    http_body_timeout_s: float = Field(default=30.0, gt=0, le=3600, description="A request body must arrive "
                                       "completely this long after its head; else 408 and the connection closed.")
    http_keep_alive_s: int = Field(default=5, ge=1, le=300, description="An idle keep-alive connection is closed "
                                   "this long after its last answer.")
    http_max_connections: int = Field(default=4096, ge=16, le=1_000_000, description="Open connections per worker "
                                      "process; a request arriving beyond them is answered 503.")
    redis_url: str | None = Field(default=None, description="Optional Redis (redis://…): the L2 cache of derived "
                                  "results and the rate limits shared by every worker and replica.")
    redis_timeout_s: float = Field(default=0.05, gt=0, le=5, description="Connect and socket timeout of each Redis "
                                   "call; a slower Redis counts as a failure of its circuit breaker.")
    rate_limit_per_minute: int = Field(default=100_000, ge=1, description="Requests per principal per minute "
                                       "(a moving window, counted in Redis across workers and replicas).")
    cache_l1_bytes: int = Field(default=10_485_760, ge=0, description="In-process LRU of derived results (L1), "
                                "bounded in bytes; 0 disables it.")
    cache_l2_bytes: int = Field(default=104_857_600, ge=0, description="Bytes of derived results KNHK keeps in "
                                "Redis (L2, least recently used evicted first by KNHK itself); 0 disables it.")
    cache_l2_ttl_s: int = Field(default=3600, ge=1, description="Every L2 entry also expires after this long.")
    cycle_interval_s: float = Field(default=60.0, ge=0, description="Scheduled cycles per sector; 0 disables.")
    verify_interval_s: float = Field(default=300.0, ge=0, description="Periodic full ledger verification; 0 off.")
    lease_ttl_s: float = Field(default=30.0, ge=1, description="Loop leases (cycles, verifier, checkpointer) lapse "
                                                               "this long after their holder stops renewing them.")
    checkpoint_interval_s: float = Field(default=60.0, ge=0, description="Periodic checkpoints; 0 disables.")
    relaxation_max_window_s: int = Field(default=7 * 86400, ge=1, le=30 * 86400,
                                         description="The longest window a guard relaxation may ask for.")
    telemetry_check_interval_s: float = Field(
        default=60.0, ge=0, description="Telemetry self-check against the registry (knhk_telemetry_check_ok); 0 off.")
    phi_sectors: list[str] = Field(default_factory=lambda: ["healthcare"],
                                   description="Sectors whose reads need an X-Access-Justification header.")
    change_classes: dict[str, dict[str, object]] = Field(
        default_factory=dict,
        description=("Per-sector change-class rules as JSON {sector: {setting: value}} over the sector pack's "
                     "classes.json: standard, standard_triples, major_triples, major_approvers, review_window_s, "
                     "emergency_review_s (knhk.validation.classes; docs/change-governance.md)."),
    )
    detector_settings: dict[str, dict[str, object]] = Field(
        default_factory=dict,
        description=("Per-sector detector thresholds as JSON {sector: {setting: value}}, over the sector pack's "
                     "detectors.json (knhk.sectors.detectors; shown by `knhk sectors show S`)."),
    )

    # -- the optional LLM proposer (SPEC §5; read by knhk.app.runtime into knhk.proposals.llm)
    llm_url: str | None = Field(
        default=None, description="Base URL of an OpenAI-compatible chat endpoint (…/v1; KNHK posts to "
                                  "{url}/chat/completions). Unset: the rule proposer only.")
    llm_model: str | None = Field(default=None, description="Model name sent to the endpoint (required with "
                                                            "KNHK_LLM_URL) and recorded in the receipt.")
    llm_key_file: Path | None = Field(default=None, description="File (mode 0600) holding the endpoint's API key "
                                                                "(sent as a bearer token); none: no key.")
    llm_connect_timeout_s: float = Field(default=5.0, gt=0, le=60, description="Connect timeout of an LLM call.")
    llm_timeout_s: float = Field(default=60.0, gt=0, le=600, description="Read timeout of an LLM call.")
    llm_max_tokens: int = Field(default=2048, ge=64, le=65_536, description="max_tokens of one LLM answer.")
    llm_requests_per_hour: int = Field(default=10, ge=1, le=100_000,
                                       description="LLM calls per rolling hour, all processes together (then the "
                                                   "rule proposer).")
    llm_tokens_per_hour: int = Field(default=50_000, ge=100, le=100_000_000,
                                     description="LLM token budget per rolling hour, all processes together "
                                                 "(prompt + answer).")

    @field_validator("llm_url", "llm_model", "llm_key_file", mode="before")
    @classmethod
    def _llm_unset_when_empty(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("llm_url")
    @classmethod
    def _check_llm_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("KNHK_LLM_URL must start with http:// or https://")
        return value

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

    # -- identity and access (SPEC §10; read by knhk.identity and knhk.service.tls)
    oidc_issuers: list[dict[str, object]] = Field(
        default_factory=list,
        description=(
            "Trusted OpenID issuers, as JSON: [{issuer, audience, user_id_claim?, roles_claim?, group_roles?, "
            "sector_claim?, mfa_amr?, mfa_acr?, jwks_uri?, jwks_file?}]. Empty: only the local dev issuer, "
            "loopback only."
        ),
    )
    oidc_leeway_s: int = Field(default=60, ge=0, le=300, description="Clock skew allowed on exp, nbf and iat.")
    oidc_max_token_age_s: int = Field(default=3600, ge=60, description="Reject tokens whose iat is older.")
    oidc_jwks_refetch_interval_s: float = Field(
        default=60.0, ge=0, description="At most one JWKS refetch per issuer in this many seconds (unknown kid)."
    )
    oidc_jwks_max_age_s: float = Field(default=3600.0, gt=0, description="Refresh a cached JWKS after this long.")
    oidc_http_timeout_s: float = Field(default=5.0, gt=0, description="Timeout of discovery and JWKS requests.")
    oidc_token_cache_size: int = Field(default=10_000, ge=0, description="Verified tokens cached; 0 disables.")
    auth_mfa_amr_values: list[str] = Field(default_factory=lambda: ["mfa", "otp", "hwk"],
                                           description="amr values that prove multi-factor authentication.")
    auth_mfa_acr_values: list[str] = Field(default_factory=list,
                                           description="acr values that prove multi-factor authentication.")
    auth_sector_claim: str = Field(default="sector", description="Claim naming the principal's sector.")
    auth_mfa_required_roles: list[str] = Field(
        default_factory=lambda: ["operator", "administrator"],
        description="Mutating actions only these roles may do require MFA.",
    )
    local_issuer_key_file: Path | None = Field(
        default=None, description="Signing key of the local dev issuer; default data_dir/local-issuer/key.pem."
    )
    local_issuer_algorithm: Literal["EdDSA", "RS256"] = "EdDSA"
    tls_cert_file: Path | None = Field(default=None, description="PEM server certificate chain; enables TLS 1.3.")
    tls_key_file: Path | None = Field(default=None, description="PEM private key of the server certificate.")
    tls_key_password: SecretStr | None = Field(default=None, description="Password of an encrypted key file.")
    tls_client_ca_file: Path | None = Field(
        default=None, description="PEM CA bundle; when set, clients must present a certificate it signed (mTLS)."
    )

    # -- the operator console (SPEC §10 /console; read by knhk.console)
    console_session_max_s: int = Field(
        default=3600, ge=1, description="A console session ends this long after sign-in.")
    console_session_idle_s: int = Field(
        default=3600, ge=1, description="A console session ends after this long without a request.")
    console_session_idle_phi_s: int = Field(
        default=900, ge=1, description="Idle timeout of sessions whose principal's sector is a PHI sector (HIPAA).")
    console_session_prefix: str = Field(default="knhk:console:", min_length=1,
                                        description="Prefix of the console's session keys in Redis.")
    console_cookie_secure: bool = Field(default=True, description="Mark console cookies Secure (keep on).")
    console_oidc_issuer: str | None = Field(
        default=None, description="The issuer (of KNHK_OIDC_ISSUERS) people sign in with; default the first.")
    console_oidc_client_id: str | None = Field(default=None, description="The console's OIDC client id.")
    console_oidc_client_secret: SecretStr | None = Field(
        default=None, description="The console's OIDC client secret (none: a public client, PKCE only).")
    console_oidc_scopes: str = Field(default="openid", description="Scopes the console asks for at sign-in.")
    console_public_url: str | None = Field(
        default=None, description="External base URL of the service (for the redirect URI); default: the request's.")

    # -- backups and restores (SPEC §11; read by knhk.backup)
    backup_dir: Path | None = Field(default=None, description="Backups and their manifests; default data_dir/backups.")
    backup_key: SecretStr | None = Field(
        default=None, description="Hex AES-256 key encrypting SQLite and pg_dump backups (overrides the key file).")
    backup_key_file: Path | None = Field(
        default=None, description="File (mode 0600) holding the hex backup key; `knhk backup keygen` writes one.")
    backup_pgbackrest_config: Path | None = Field(
        default=None, description="pgBackRest configuration (repository, cipher, pg1-path) for physical backups.")
    backup_stanza: str = Field(default="knhk", pattern=r"^[A-Za-z0-9._-]+$", description="pgBackRest stanza.")
    backup_pg_data: Path | None = Field(default=None, description="Data directory a physical restore replaces.")
    backup_pg_bin: Path | None = Field(default=None, description="PostgreSQL's bin directory (pg_ctl, pg_dump).")
    backup_os_user: str | None = Field(
        default=None, description="OS user that owns the cluster; pgBackRest and pg_ctl run as this user.")
    backup_scratch_dir: Path | None = Field(default=None, description="Where verify restores into; default /tmp.")

    # -- retention of observations (SPEC §11; read by knhk.observations.retention)
    retention_days: int = Field(default=90, ge=1, le=36500, description="Observations are archived, then dropped, "
                                "per whole month of ingest once the month ended this many days ago.")
    archive_dir: Path | None = Field(default=None, description="Observation archives and their segment manifests; "
                                     "default data_dir/archive.")
    partitions_ahead: int = Field(default=3, ge=1, le=120, description="Monthly observation partitions kept "
                                  "created ahead of the current month (PostgreSQL).")

    @field_validator("backup_key_file", "backup_pgbackrest_config", "backup_pg_data", "backup_pg_bin",
                     "backup_dir", "backup_scratch_dir", "backup_os_user", "archive_dir", mode="before")
    @classmethod
    def _unset_when_empty(cls, value: object) -> object:
        return None if value == "" else value

    @cached_property
    def resolved_backup_dir(self) -> Path:
        return self.backup_dir or self.data_dir / "backups"

    @cached_property
    def resolved_archive_dir(self) -> Path:
        return self.archive_dir or self.data_dir / "archive"

    @cached_property
    def resolved_local_issuer_key_file(self) -> Path:
        return self.local_issuer_key_file or self.data_dir / "local-issuer" / "key.pem"

    @property
    def console_code_file(self) -> Path:
        """The operator console's local sign-in code, next to the local issuer's key."""
        return self.resolved_local_issuer_key_file.with_name("console-code")


def load_settings(**overrides: object) -> Settings:
    """Read the settings from the environment, with explicit overrides (CLI options) on top."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
