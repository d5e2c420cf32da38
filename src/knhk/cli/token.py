"""``knhk token mint``: a bearer token from the local development issuer (SPEC §10, §13).

The token (an RFC 7519 JWT signed with the key in ``<data_dir>/local-issuer/``, created 0600 on first use) is
accepted by a service that has no OIDC issuer configured, which then listens on loopback only. Standard output
is the token alone, so ``TOKEN=$(knhk token mint --role operator --mfa)`` works; ``--json`` prints the token
with its header and claims. The private key is never printed.
"""

from __future__ import annotations

import getpass
from typing import Annotated

import typer

from knhk.cli.context import state
from knhk.cli.output import print_json, warn
from knhk.errors import UsageError
from knhk.identity.rbac import ROLES

app = typer.Typer(help="Bearer tokens of the local development issuer.", no_args_is_help=True)


@app.command("mint")
def mint(
    ctx: typer.Context,
    role: Annotated[list[str], typer.Option("--role", help=f"Role to grant (repeatable): {', '.join(ROLES)}.")],
    sector: Annotated[str | None, typer.Option(help="Sector attribute of the token.")] = None,
    mfa: Annotated[bool, typer.Option("--mfa", help="Mark the token as multi-factor authenticated.")] = False,
    ttl: Annotated[int, typer.Option("--ttl", help="Lifetime in seconds.")] = 3600,
    subject: Annotated[str | None, typer.Option(help="Subject (user id) of the token; default: your user name.")]
    = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the header and claims too.")] = False,
) -> None:
    """Mint a token for the local issuer (urn:knhk:local, audience urn:knhk:api)."""
    from knhk.identity.local import LocalIssuer  # JWT signing: only when a token is minted

    settings = state(ctx).settings()
    unknown = [r for r in role if r not in ROLES]
    if unknown:
        raise UsageError(f"unknown role(s) {', '.join(unknown)}; roles: {', '.join(ROLES)}")
    if ttl < 1 or ttl > settings.oidc_max_token_age_s:
        raise UsageError(f"--ttl must be between 1 and {settings.oidc_max_token_age_s} seconds "
                         "(KNHK_OIDC_MAX_TOKEN_AGE_S: older tokens are refused)")
    if settings.oidc_issuers:
        warn("note: KNHK_OIDC_ISSUERS is set, so a service with this configuration does not accept local tokens")
    issuer = LocalIssuer.from_settings(settings)
    minted = issuer.mint(role, subject=subject or getpass.getuser(), sector=sector, mfa=mfa, ttl_s=ttl)
    if as_json:
        print_json({"token": minted.token, "header": minted.header, "claims": minted.claims})
    else:
        typer.echo(minted.token)
