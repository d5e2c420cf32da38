"""Per-invocation state of the CLI: global options, the lazily opened runtime, error mapping."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer
from pydantic import ValidationError

from knhk.config import Settings
from knhk.errors import ConfigurationError
from knhk.runtime import Runtime


@dataclass
class CliState:
    data_dir: Path | None = None
    database_url: str | None = None
    runtime: Runtime | None = None
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

    def open(self) -> Runtime:
        if self.runtime is None:
            settings = self.settings()
            # one command needs a handful of connections, not the service's pool of 10–50
            small = settings.model_copy(update={"db_pool_min": min(settings.db_pool_min, 1),
                                                "db_pool_max": min(settings.db_pool_max, 4)})
            # a command is one short process: detection windows are filled from the store when a cycle needs them
            self.runtime = Runtime.open(small, subscribe_engine=False)
        return self.runtime

    def close(self) -> None:
        if self.runtime is not None:
            self.runtime.close()
            self.runtime = None


def state(ctx: typer.Context) -> CliState:
    root = ctx.find_root()
    if root.obj is None:
        root.obj = CliState()
    obj: CliState = root.obj
    return obj


def runtime(ctx: typer.Context) -> Runtime:
    return state(ctx).open()
