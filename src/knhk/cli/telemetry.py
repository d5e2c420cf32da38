"""``knhk telemetry check``: is every signal KNHK emits declared in the registry, with the declared types,
and is every declared signal emitted? Exit 0 when so, 1 on any violation (each printed with the signal it
names), 2 on bad usage."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from knhk.cli.output import print_json, say

app = typer.Typer(help="Telemetry: the semantic-convention registry and its checks.", no_args_is_help=True)


@app.command("check")
def check(
    registry: Annotated[Path | None, typer.Option(help="Registry directory (default: the one shipped).")] = None,
    static_only: Annotated[bool, typer.Option("--static-only", help="Only the registry's own rules.")] = False,
    scenario_database: Annotated[str | None, typer.Option(
        help="An empty scratch PostgreSQL database for the live scenario (default: a temporary SQLite file).")] = None,
    samples: Annotated[Path | None, typer.Option(
        help="Write the captured telemetry here as Weaver live-check JSON samples.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Check the registry (unknown keys, bad types, dangling refs, duplicate ids), then run a scenario with
    in-memory exporters and compare its spans and /metrics with it."""
    import os

    os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http")
    from knhk.ops.telemetry.registry import default_registry_dir
    from knhk.service import telemetry_check as checker

    result = checker.run(registry or default_registry_dir(), live=not static_only,
                         scenario_database=scenario_database, samples=samples)
    if as_json:
        print_json(result.to_json())
    else:
        for finding in result.findings:
            say(escape(str(finding)))
        where = result.registry.path if result.registry is not None else (registry or default_registry_dir())
        stats = result.statistics
        if result.ok and static_only:
            say(f"registry {where}: {stats.get('registry_signals', 0)} signals, "
                f"{stats.get('registry_attributes', 0)} attributes; static check passed")
        elif result.ok:
            say(f"registry {where}: live check passed on {stats.get('backend')}: {stats.get('spans')} spans, "
                f"{stats.get('metric_families')} metric families, {stats.get('registry_signals_seen')} of "
                f"{stats.get('registry_signals')} declared signals seen")
        else:
            n = sum(1 for f in result.findings if f.level == "violation")
            say(escape(f"registry {where}: {n} violation(s)"))
        if samples is not None and result.registry is not None and not static_only:
            say(f"samples written to {samples}")
    raise typer.Exit(0 if result.ok else 1)
