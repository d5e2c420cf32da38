"""Entry point of the ``knhk`` command: global options, sub-commands and the error → exit-code mapping.

Exit codes (SPEC §13): 0 success, 1 verification/integrity failure or rejected, 2 usage error,
3 dependency unavailable. Errors are one clear line on stderr; no tracebacks unless ``KNHK_DEBUG=1``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from knhk import __version__
from knhk.cli import (
    archive,
    audit,
    backup,
    guards,
    keys,
    loop,
    preflight,
    proposals,
    receipts,
    sectors,
    serve,
    sigma,
    subjects,
    telemetry,
    token,
)
from knhk.cli.context import application, state
from knhk.cli.output import print_json, say
from knhk.errors import KnhkError
from knhk.ops.logs import configure_logging

app = typer.Typer(
    name="knhk",
    help="KNHK: provable, autonomic change control for a knowledge model.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(receipts.app, name="receipts")
app.add_typer(audit.app, name="audit")
app.add_typer(keys.app, name="keys")
app.add_typer(sigma.app, name="sigma")
app.add_typer(proposals.app, name="proposals")
app.add_typer(token.app, name="token")
app.add_typer(subjects.app, name="subjects")
app.add_typer(telemetry.app, name="telemetry")
app.add_typer(sectors.app, name="sectors")
app.add_typer(backup.app, name="backup")
app.add_typer(archive.app, name="archive")
app.add_typer(guards.app, name="guards")
app.command("ingest")(loop.ingest)
app.command("serve")(serve.serve)
app.command("cycle")(loop.cycle)
app.command("preflight")(preflight.preflight)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")


def _version(value: bool) -> None:
    if value:
        print(f"knhk {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    data_dir: Annotated[Path | None, typer.Option(help="Data directory (env KNHK_DATA_DIR).")] = None,
    database_url: Annotated[str | None, typer.Option(help="Database URL (env KNHK_DATABASE_URL).")] = None,
    token: Annotated[str | None, typer.Option(help="Bearer token to act with (env KNHK_TOKEN): from the configured "
                                              "issuer, or in dev mode `knhk token mint`.")] = None,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version.")] = False,
) -> None:
    st = state(ctx)
    st.data_dir = data_dir
    st.database_url = database_url
    st.token = token
    settings = st.settings()
    configure_logging(settings.log_level if os.environ.get("KNHK_LOG_LEVEL") else "WARNING", settings.log_format)
    ctx.call_on_close(st.close)


@app.command("init")
def init(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Initialise the data directory or database explicitly (every command also does it on first use)."""
    info = application(ctx).describe()
    if as_json:
        print_json(info)
    else:
        say(f"initialised {info['database']}; active signing key {info['active_key_id']}")


@db_app.command("migrate")
def migrate(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan (pending migrations and their SQL); "
                                                            "apply nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Apply pending schema migrations (in order, once, however many processes run it at once)."""
    from knhk.app.system import migrate_database, migration_plan

    if dry_run:
        plan = migration_plan(state(ctx).settings())
        if as_json:
            print_json({"applied": [], "schema_version": plan.schema_version,
                        "pending": [{"version": m.version, "name": m.name, "digest": m.digest, "sql": m.sql}
                                    for m in plan.pending]})
            return
        say(f"schema version {plan.schema_version}; {len(plan.pending)} pending migration(s)"
            + (" (nothing to do)" if not plan.pending else ", to be applied in this order:"))
        for m in plan.pending:  # plain print: SQL is not console markup
            print(f"\n-- {m.version:04d}_{m.name} (sha256 {m.digest})\n{m.sql.rstrip()}")
        return
    result = migrate_database(state(ctx).settings())
    if as_json:
        print_json({"applied": result.applied, "schema_version": result.schema_version})
    else:
        say(f"applied {len(result.applied)} migration(s); schema version {result.schema_version}")


@db_app.command("grant-app-role")
def grant_app_role(
    ctx: typer.Context,
    role: Annotated[str, typer.Argument(help="The login role the service will connect as.")] = "knhk_app",
    password_file: Annotated[Path | None, typer.Option(
        help="Set the role's password from this file (its content, surrounding whitespace ignored).",
        exists=True, dir_okay=False, readable=True)] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Create the least-privilege application role (PostgreSQL; run as the schema owner after migrating)."""
    from knhk.app.system import grant_app_role as grant_role

    password = password_file.read_text().strip() if password_file else None
    statements = grant_role(state(ctx).settings(), role, password)
    if as_json:
        print_json({"role": role, "statements": statements})
    else:
        say(f"role {role}: SELECT and INSERT on every table; UPDATE/DELETE only where the product changes rows; "
            "no TRUNCATE anywhere")


@app.command("demo")
def demo(
    ctx: typer.Context,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Where to create the demo store.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Run the main job: a fresh embedded store, walked through end to end, with a report.

    The store goes in --data-dir (this option, else the global one, else KNHK_DATA_DIR, else a new temporary
    directory), which must be empty or absent: the demo never writes into an existing store."""
    from knhk.cli.demo import run_demo

    chosen = data_dir or state(ctx).data_dir
    if chosen is None and os.environ.get("KNHK_DATA_DIR"):
        chosen = Path(os.environ["KNHK_DATA_DIR"])
    code = run_demo(chosen, as_json=as_json)
    raise typer.Exit(code)


def main() -> None:
    debug = os.environ.get("KNHK_DEBUG") == "1"
    try:
        app()  # standalone: usage errors exit 2 with a message; typer.Exit carries the exit code
    except KnhkError as exc:
        if debug:
            raise
        print(f"error: {exc.message}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except Exception as exc:
        if debug:
            raise
        print(f"internal error: {type(exc).__name__}: {exc} (set KNHK_DEBUG=1 for details)", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
