"""``knhk keys …``: generate, rotate and list the ledger's Ed25519 signing keys, and rotate the key-encryption
key of PHI at rest. Private keys are never printed; key files are created with mode 0600."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from knhk.cli.context import actor as acting
from knhk.cli.context import application
from knhk.cli.output import print_json, say, table
from knhk.errors import ConflictError
from knhk.ops.clock import format_rfc3339
from knhk.proof.signing import SigningKey, read_key_file, write_key_file

app = typer.Typer(help="Ledger signing keys (Ed25519).", no_args_is_help=True)


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
        public, file = application(ctx).generate_key(acting())
        info = {"key_id": public.key_id, "public_key": public.public_key.hex(), "file": file}
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
    new = read_key_file(key_file) if key_file else None
    old, public = application(ctx).rotate_key(acting(actor), new, reason=reason)
    if as_json:
        print_json({"previous_key_id": old, "key_id": public.key_id, "public_key": public.public_key.hex()})
    else:
        say(f"rotated: {old} → {public.key_id}; each log was closed with a checkpoint signed by {old}")


@app.command("rotate-phi")
def rotate_phi(
    ctx: typer.Context,
    retire: Annotated[bool, typer.Option(help="Then remove the key files no data key is wrapped by.")] = False,
    actor: Annotated[str | None, typer.Option(help="Who rotates (audited; default user@host).")] = None,
    reason: Annotated[str | None, typer.Option(help="Why (audited).")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """New key-encryption key for PHI at rest: data keys are re-wrapped; no observation or receipt changes."""
    previous, new, rewrapped, retired = application(ctx).rotate_phi_key(acting(actor), retire=retire, reason=reason)
    if as_json:
        print_json({"previous_kek_id": previous, "kek_id": new, "data_keys_rewrapped": rewrapped, "retired": retired})
    else:
        say(f"PHI key rotated: {previous} → {new}; {rewrapped} data key(s) re-wrapped"
            + (f"; retired {', '.join(retired)}" if retired else f"; phi-{previous}.kek kept (use --retire)"))


@app.command("list")
def list_keys(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List every key of the keyring (public halves only)."""
    rows = [{"key_id": k.key.key_id, "public_key": k.key.public_key.hex(), "created": format_rfc3339(k.key.created_us),
             "retired": format_rfc3339(k.key.retired_us) if k.key.retired_us else None, "active": k.active}
            for k in application(ctx).signing_keys(acting())]
    if as_json:
        print_json(rows)
        return
    table("signing keys", ["key id", "public key", "created", "retired", "active"],
          [[r["key_id"], r["public_key"], r["created"], r["retired"] or "", "yes" if r["active"] else ""]
           for r in rows])
