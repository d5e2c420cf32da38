"""``knhk backup create|verify|restore|list|keygen`` (SPEC §11): backups that prove themselves.

``create`` is an operation of the open installation (:meth:`Application.create_backup`); ``list``, ``verify`` and
``restore`` run through :class:`~knhk.app.backup.Recovery`, which opens no installation (the store may be gone,
or about to be replaced). All of them are the local operator's (:mod:`knhk.app.access`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from knhk.app.access import LocalAccess
from knhk.cli.context import actor as acting
from knhk.cli.context import application, state
from knhk.cli.output import print_json, say, table, warn
from knhk.errors import IntegrityError

if TYPE_CHECKING:
    from knhk.app.backup import Recovery
    from knhk.backup.verifier import Verification

app = typer.Typer(help="Backups, verified restores and point-in-time recovery.", no_args_is_help=True)
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
NoLive = Annotated[bool, typer.Option("--no-live", help="Do not check against the running system (e.g. it is "
                                                        "gone); trust only the backup's own keyring.")]
Actor = Annotated[str | None, typer.Option(help="Who does it (audited; default user@host).")]


def _recovery(ctx: typer.Context) -> Recovery:
    from knhk.app.backup import Recovery  # pgBackRest, manifests, Redis: only the commands that need them

    return Recovery(state(ctx).settings(), LocalAccess())


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _describe(v: Verification) -> None:
    logs = ", ".join(f"{log} {d['tree_size']} entries" + (f" (live checkpoint {d['live']['checkpoint_size']}: "
                                                         f"{d['live']['direction']})" if "live" in d else "")
                     for log, d in v.logs.items())
    if v.ok:
        say(f"[green]VERIFIED[/green] backup {v.backup} ({v.kind}): {logs}; "
            f"{(v.restored.tables.get('observations', 0) if v.restored else 0)} observations; live: {v.live}; "
            f"{v.duration_s:.1f} s")
    else:
        say(f"[red]FAILED[/red] backup {v.backup} ({v.kind}):")
        for problem in v.problems:
            say(f"  - {problem}")


@app.command("create")
def create(
    ctx: typer.Context,
    logical: Annotated[bool, typer.Option("--logical", help="PostgreSQL: a pg_dump export instead of a "
                                                            "pgBackRest physical backup.")] = False,
    backup_type: Annotated[str, typer.Option("--type", help="pgBackRest: full, diff or incr (an incr or diff "
                                                            "with no full before it becomes a full).")] = "incr",
    actor: Actor = None,
    as_json: JsonOption = False,
) -> None:
    """Back up the running installation (online; the service keeps writing)."""
    manifest = application(ctx).create_backup(acting(actor), logical=logical, backup_type=backup_type)
    if as_json:
        print_json({"id": manifest.id, "manifest_sha256": manifest.digest(), **manifest.body()})
        return
    size = manifest.pgbackrest.repo_delta if manifest.pgbackrest else sum(f.bytes for f in manifest.files)
    encrypted = manifest.encryption is not None or (manifest.pgbackrest is not None and
                                                    manifest.pgbackrest.cipher != "none")
    trees = ", ".join(f"{log} {s.tree_size} entries" for log, s in manifest.state.logs.items())
    say(f"backup {manifest.id} ({manifest.kind}{', encrypted' if encrypted else ''}, {_size(size)}): {trees}; "
        f"{manifest.state.tables.get('observations', 0)} observations")


@app.command("verify")
def verify(
    ctx: typer.Context,
    backup: Annotated[str, typer.Argument(help="Backup id (see `knhk backup list`), latest (the newest complete "
                                               "one) or directory.")],
    no_live: NoLive = False,
    as_json: JsonOption = False,
) -> None:
    """Restore into scratch, count rows, verify every log and prove consistency; exit 1 on any problem."""
    result = _recovery(ctx).verify_backup(acting(), backup, use_live=not no_live)
    if as_json:
        print_json(result.to_json())
    else:
        _describe(result)
    if not result.ok:
        raise typer.Exit(1)


@app.command("restore")
def restore(
    ctx: typer.Context,
    backup: Annotated[str | None, typer.Argument(help="Backup id or directory (PostgreSQL point-in-time "
                                                      "recovery picks one when omitted).")] = None,
    target_time: Annotated[str | None, typer.Option(help="PostgreSQL: recover to this RFC 3339 time.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a target that holds data (it is kept "
                                                        "beside the restored one).")] = False,
    no_live: NoLive = False,
    actor: Actor = None,
    as_json: JsonOption = False,
) -> None:
    """Restore beside the live store, verify it, then swap it in atomically; stop the service first."""
    try:
        report = _recovery(ctx).restore_backup(acting(actor), backup, force=force, target_time=target_time,
                                               use_live=not no_live)
    except IntegrityError as exc:
        if as_json and "report" in exc.details:
            print_json({"restored": False, "error": exc.message, "verification": exc.details["report"]})
            raise typer.Exit(1) from exc
        raise
    if as_json:
        print_json(report.to_json())
        return
    _describe(report.verification)
    lost = ", ".join(f"{log} {n}" for log, n in report.lost.items() if n)
    say(f"restored backup {report.backup} into {report.target}"
        + (f" at {report.target_time}" if report.target_time else "")
        + (f"; previous store kept as {report.kept_previous}" if report.kept_previous else "")
        + (f"; entries after the recovery point not restored: {lost}" if lost else "")
        + f" ({report.duration_s:.1f} s)")
    for note in report.tidied:
        warn(note)


@app.command("list")
def list_backups(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """The backups in the backup directory, newest first."""
    rows: list[dict[str, Any]] = _recovery(ctx).list_backups(acting())
    if as_json:
        print_json(rows)
        return
    table("backups", ["id", "kind", "created", "size", "encrypted", "receipts", "audit", "observations"],
          [[r["id"], r.get("kind", "unreadable: " + r.get("error", "")), r.get("created"),
            _size(r["bytes"]) if "bytes" in r else "", r.get("encrypted"), r.get("tree_sizes", {}).get("receipts"),
            r.get("tree_sizes", {}).get("audit"), r.get("observations")] for r in rows])


@app.command("keygen")
def keygen(file: Annotated[Path, typer.Argument(help="Where to write the new key (mode 0600; never "
                                                      "overwritten).")]) -> None:
    """Create a backup encryption key; point KNHK_BACKUP_KEY_FILE at it and keep a copy off the backup host."""
    from knhk.backup.cipher import write_key_file

    key_id = write_key_file(file)
    say(f"backup key {key_id} written to {file}")
