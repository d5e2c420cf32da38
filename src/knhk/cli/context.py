"""Per-invocation state of the CLI: global options, the lazily opened application, the acting principal.

The CLI runs with :class:`~knhk.app.access.TerminalAccess`. With ``--token`` / ``KNHK_TOKEN`` it acts as the
token's subject, verified like the service verifies it (the configured OIDC issuers, or in dev mode the local
dev issuer) and authorized by the same matrix, MFA included. Without one, and only in dev mode (no
``KNHK_OIDC_ISSUERS``), a command may name its actor with ``--actor`` / ``--approver`` (default ``user@host``);
outside dev mode typed identities are refused. Forced and emergency promotions always need a token.
"""

from __future__ import annotations

import getpass
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from pydantic import ValidationError

from knhk.app.access import TerminalAccess, local_principal
from knhk.config import Settings
from knhk.errors import ConfigurationError, UsageError
from knhk.identity.rbac import Principal

if TYPE_CHECKING:
    from knhk.app.application import Application


@dataclass
class CliState:
    data_dir: Path | None = None
    database_url: str | None = None
    token: str | None = None
    application: Application | None = None
    principal: Principal | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: the settings read for these global options (reading the environment and .env costs ~30 ms a time)
    _settings: tuple[tuple[Path | None, str | None], Settings] | None = field(default=None, repr=False)

    def settings(self) -> Settings:
        key = (self.data_dir, self.database_url)
        if self._settings is not None and self._settings[0] == key:
            return self._settings[1]
        overrides: dict[str, Any] = {}
        if self.data_dir is not None:
            overrides["data_dir"] = self.data_dir
        if self.database_url is not None:
            overrides["database_url"] = self.database_url
        try:
            self._settings = key, Settings(**overrides)
            return self._settings[1]
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "settings"
            raise ConfigurationError(f"invalid configuration {where}: {first['msg']}") from exc

    def open(self) -> Application:
        if self.application is None:
            from knhk.app.application import Application  # the wiring: only a command that works on the store

            settings = self.settings()
            # one command needs a handful of connections, not the service's pool of 10–50
            small = settings.model_copy(update={"db_pool_min": min(settings.db_pool_min, 1),
                                                "db_pool_max": min(settings.db_pool_max, 4)})
            # a command is one short process: detection windows are filled from the store when a cycle needs them
            access = TerminalAccess(dev_mode=dev_mode(settings), mfa_required_roles=settings.auth_mfa_required_roles)
            self.application = Application.open(small, access=access, subscribe_engine=False)
        return self.application

    def authenticated(self) -> Principal | None:
        """The subject of ``--token`` / ``KNHK_TOKEN`` (verified once per command), or None without a token."""
        if self.principal is None:
            settings = self.settings()
            token = self.token or (settings.token.get_secret_value() if settings.token is not None else None)
            if not token:
                return None
            from knhk.identity.authenticator import build_authenticator  # JWT/JWKS: only with a token

            app = self.open()
            principal = build_authenticator(settings).authenticate(f"Bearer {token.strip()}")
            self.principal = app.pseudonymised(principal)
        return self.principal

    def close(self) -> None:
        if self.application is not None:
            self.application.close()
            self.application = None


#: the state of the command being run (one per process: the CLI runs one command)
_current: list[CliState] = [CliState()]


def state(ctx: typer.Context) -> CliState:
    root = ctx.find_root()
    if root.obj is None:
        root.obj = CliState()
    obj: CliState = root.obj
    _current[0] = obj
    return obj


def application(ctx: typer.Context) -> Application:
    """The installation this command works on (opened, and on first use initialised, once per command)."""
    return state(ctx).open()


def default_actor() -> str:
    """Who is at the terminal: ``user@host``."""
    return f"{getpass.getuser()}@{socket.gethostname()}"


def dev_mode(settings: Settings) -> bool:
    """Dev mode: the installation trusts no identity provider, only the local dev issuer (as the service then
    does, on loopback only)."""
    return not settings.oidc_issuers


def actor(name: str | None = None, roles: Iterable[str] = (), sector: str | None = None) -> Principal:
    """The principal a command acts as: the token's subject when there is a token; otherwise ``name`` (default:
    who is at the terminal) with the roles and sector attribute named on the command line — typed identities
    only in dev mode."""
    st = _current[0]
    roles = tuple(roles)
    typed = name is not None or bool(roles) or sector is not None
    principal = st.authenticated()
    if principal is not None:
        if typed:
            raise UsageError("--token acts as the token's subject: drop the typed identity (--actor, --approver, "
                             "--approver-role, --approver-sector, --operator)")
        return principal
    if typed and not dev_mode(st.settings()):
        raise UsageError("typed identities are refused: this installation trusts an identity provider "
                         "(KNHK_OIDC_ISSUERS); act with --token or KNHK_TOKEN")
    return local_principal(name or default_actor(), roles, sector)
