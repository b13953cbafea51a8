"""The ``rightsledger`` command line."""

from __future__ import annotations

import logging
import secrets
from typing import Annotated
from uuid import UUID

import typer
from pydantic import SecretStr
from rightsledger.config import Settings
from rightsledger.security.keys import KeyStoreError, Role

app = typer.Typer(help="rightsledger: event-sourced data rights.", no_args_is_help=True)
keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (RIGHTSLEDGER_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (RIGHTSLEDGER_PORT).")] = None,
) -> None:
    """Serve the HTTP API (and the projections) until interrupted."""
    import uvicorn
    from rightsledger.api.app import create_app
    from rightsledger.bootstrap import build

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = Settings()
    if host:
        settings.host = host
    if port:
        settings.port = port
    generated = None
    if settings.admin_key is None and settings.database_url is None:
        generated = "rlk_local_" + secrets.token_urlsafe(24)
        settings.admin_key = SecretStr(generated)
    container = build(settings)
    where = "embedded PostgreSQL under " + str(settings.data_dir.resolve())
    if not container.database.is_embedded:
        where = "the PostgreSQL server in RIGHTSLEDGER_DATABASE_URL"
    typer.echo(f"rightsledger listening on http://{settings.host}:{settings.port} ({where})")
    typer.echo(f"  API docs:  http://{settings.host}:{settings.port}/docs")
    if generated:
        typer.echo(f"  admin key for this run: {generated}")
    typer.echo("  create a key: rightsledger keys create --role intake --name front-desk")
    uvicorn.run(
        create_app(container, own_container=True),
        host=settings.host,
        port=settings.port,
        log_level="warning",
    )


@keys_app.command("create")
def keys_create(
    role: Annotated[Role, typer.Option(help="Role the key carries.")],
    name: Annotated[str, typer.Option(help="Who holds the key.")],
    partner: Annotated[
        str | None, typer.Option(help="Partner id (required for the partner role).")
    ] = None,
) -> None:
    """Create an API key and print it once (only its digest is stored)."""
    from rightsledger.bootstrap import build

    container = build(Settings(run_projections=False))
    try:
        partner_id = UUID(partner) if partner else None
        key_id, token = container.keys.create(role, name, partner_id=partner_id)
    except (KeyStoreError, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    finally:
        container.close()
    typer.echo(f"key id: {key_id}\nrole:   {role.value}\nkey:    {token}")
    typer.echo("Store the key now: it is not shown again.")


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key's id.")]) -> None:
    """Revoke an API key."""
    from rightsledger.bootstrap import build

    container = build(Settings(run_projections=False))
    try:
        changed = container.keys.revoke(UUID(key_id))
    finally:
        container.close()
    typer.echo("revoked" if changed else "no active key with that id")
    if not changed:
        raise typer.Exit(1)


def main() -> None:
    app()
