"""Per-invocation state of the CLI: global options, the lazily opened application, the acting principal.

The CLI acts for the operator at the terminal (:class:`~knhk.app.access.LocalAccess`): each command names its
actor with ``--actor`` / ``--approver`` (default ``user@host``) and goes through :mod:`knhk.app` like every face.
"""

from __future__ import annotations

import getpass
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer
from pydantic import ValidationError

from knhk.app.access import LocalAccess, local_principal
from knhk.app.application import Application
from knhk.config import Settings
from knhk.errors import ConfigurationError
from knhk.identity.rbac import Principal


@dataclass
class CliState:
    data_dir: Path | None = None
    database_url: str | None = None
    application: Application | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def settings(self) -> Settings:
        overrides: dict[str, Any] = {}
        if self.data_dir is not None:
            overrides["data_dir"] = self.data_dir
        if self.database_url is not None:
            overrides["database_url"] = self.database_url
        try:
            return Settings(**overrides)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "settings"
            raise ConfigurationError(f"invalid configuration {where}: {first['msg']}") from exc

    def open(self) -> Application:
        if self.application is None:
            settings = self.settings()
            # one command needs a handful of connections, not the service's pool of 10–50
            small = settings.model_copy(update={"db_pool_min": min(settings.db_pool_min, 1),
                                                "db_pool_max": min(settings.db_pool_max, 4)})
            # a command is one short process: detection windows are filled from the store when a cycle needs them
            self.application = Application.open(small, access=LocalAccess(), subscribe_engine=False)
        return self.application

    def close(self) -> None:
        if self.application is not None:
            self.application.close()
            self.application = None


def state(ctx: typer.Context) -> CliState:
    root = ctx.find_root()
    if root.obj is None:
        root.obj = CliState()
    obj: CliState = root.obj
    return obj


def application(ctx: typer.Context) -> Application:
    """The installation this command works on (opened, and on first use initialised, once per command)."""
    return state(ctx).open()


def default_actor() -> str:
    """Who is at the terminal: ``user@host``."""
    return f"{getpass.getuser()}@{socket.gethostname()}"


def actor(name: str | None = None, roles: Iterable[str] = (), sector: str | None = None) -> Principal:
    """The principal a command acts as: ``name`` (default: who is at the terminal), with the roles and sector
    attribute named on the command line."""
    return local_principal(name or default_actor(), roles, sector)
