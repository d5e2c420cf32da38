"""``knhk keys …``: generate, rotate and list the ledger's Ed25519 signing keys. Private keys are never
printed; key files are created with mode 0600."""

from __future__ import annotations

import getpass
import socket
from pathlib import Path
from typing import Annotated

import typer

from knhk.cli.context import runtime
from knhk.cli.output import print_json, say, table
from knhk.errors import ConflictError
from knhk.ops.clock import format_rfc3339
from knhk.proof.signing import SigningKey, read_key_file, write_key_file

app = typer.Typer(help="Ledger signing keys (Ed25519).", no_args_is_help=True)


def default_actor() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


@app.command("generate")
def generate(
    ctx: typer.Context,
    out: Annotated[Path | None, typer.Option(help="Write a new private key file here instead (mode 0600).")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Create the first signing key of this installation, or (with --out) a key file for deployment."""
    if out is not None:
        key = SigningKey.generate()
        try:
            write_key_file(out, key)
        except FileExistsError as exc:
            raise ConflictError(f"{out} already exists; refusing to overwrite a key file") from exc
        info = {"key_id": key.key_id, "public_key": key.public_key.hex(), "file": str(out)}
    else:
        rt = runtime(ctx)
        active = rt.keyring.active_key_id()
        keys = rt.keyring.public_keys(refresh=True)
        if active is not None and len(keys) > 1:
            raise ConflictError(f"the keyring already has active key {active}; use 'knhk keys rotate'")
        key_id = rt.keyring.ensure_active()
        info = {"key_id": key_id, "public_key": rt.keyring.public_key(key_id).public_key.hex(),
                "file": str(rt.keyring.keys_dir / f"{key_id}.key")}
    if as_json:
        print_json(info)
    else:
        say(f"signing key {info['key_id']} (public key {info['public_key']}) in {info['file']}")


@app.command("rotate")
def rotate(
    ctx: typer.Context,
    key_file: Annotated[Path | None, typer.Option(help="Activate this key file instead of a new key.")] = None,
    actor: Annotated[str | None, typer.Option(help="Who rotates (audited; default user@host).")] = None,
    reason: Annotated[str | None, typer.Option(help="Why (audited).")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Make a new key active. Old keys stay in the keyring so every old entry keeps verifying."""
    rt = runtime(ctx)
    new = read_key_file(key_file) if key_file else None
    old, public = rt.ledger.rotate_key(new)
    rt.audit.record(actor or default_actor(), "key.rotated", f"key/{public.key_id}",
                    reason=reason, metadata={"previous_key_id": old or "", "key_id": public.key_id})
    if as_json:
        print_json({"previous_key_id": old, "key_id": public.key_id, "public_key": public.public_key.hex()})
    else:
        say(f"rotated: {old} → {public.key_id}; each log was closed with a checkpoint signed by {old}")


@app.command("list")
def list_keys(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List every key of the keyring (public halves only)."""
    rt = runtime(ctx)
    active = rt.keyring.active_key_id()
    keys = list(rt.keyring.public_keys(refresh=True).values())
    rows = [{"key_id": k.key_id, "public_key": k.public_key.hex(), "created": format_rfc3339(k.created_us),
             "retired": format_rfc3339(k.retired_us) if k.retired_us else None, "active": k.key_id == active}
            for k in keys]
    if as_json:
        print_json(rows)
        return
    table("signing keys", ["key id", "public key", "created", "retired", "active"],
          [[r["key_id"], r["public_key"], r["created"], r["retired"] or "", "yes" if r["active"] else ""]
           for r in rows])
