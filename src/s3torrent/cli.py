"""Command line: serve, user, torrent."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import click

from s3torrent.config import Settings, load_settings


def _settings(ctx: click.Context) -> Settings:
    obj: dict[str, Any] = ctx.obj
    return load_settings(obj.get("config"), **obj.get("flags", {}))


@click.group()
@click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="TOML settings file (environment and flags override it).",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Data directory (default ./s3torrent-data).",
)
@click.pass_context
def cli(ctx: click.Context, config: Path | None, data_dir: Path | None) -> None:
    """s3torrent: S3-compatible object storage that publishes public objects by BitTorrent."""
    ctx.obj = {"config": config, "flags": {"data_dir": data_dir}}


@cli.command()
@click.option(
    "--listen", default=None, help="HTTP listen address HOST:PORT (default 127.0.0.1:9000)."
)
@click.option(
    "--peer-listen", default=None, help="BitTorrent peer listen address (default 0.0.0.0:6881)."
)
@click.option("--public-url", default=None, help="Base URL clients use to reach this server.")
@click.option("--region", default=None, help="S3 region name (default us-east-1).")
@click.option("--domain", default=None, help="Base domain for virtual-hosted-style requests.")
@click.option(
    "--data-dir",
    "data_dir_local",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Data directory (default ./s3torrent-data).",
)
@click.option("--log-level", default="INFO", show_default=True)
@click.pass_context
def serve(
    ctx: click.Context,
    listen: str | None,
    peer_listen: str | None,
    public_url: str | None,
    region: str | None,
    domain: str | None,
    data_dir_local: Path | None,
    log_level: str,
) -> None:
    """Run the server (S3 API, torrents, tracker, seeder) until SIGTERM or SIGINT."""
    from s3torrent.app import serve as run_server

    flags = ctx.obj["flags"]
    if data_dir_local is not None:
        flags["data_dir"] = data_dir_local
    flags.update(
        listen=listen, peer_listen=peer_listen, public_url=public_url, region=region, domain=domain
    )
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = _settings(ctx)
    asyncio.run(run_server(settings))


@cli.group()
def user() -> None:
    """Manage users and their access keys."""


def _users(ctx: click.Context) -> Any:
    from s3torrent.store.database import Database
    from s3torrent.store.users import UserDirectory

    settings = _settings(ctx)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url)
    users = UserDirectory(db)
    users.load()
    return db, users


@user.command("add")
@click.argument("name")
@click.pass_context
def user_add(ctx: click.Context, name: str) -> None:
    """Create a user with new keys (printed once)."""
    from s3torrent.store.users import UserError

    db, users = _users(ctx)
    try:
        u = users.add(name)
    except UserError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        db.close()
    click.echo(
        f"name={u.name}\ncanonical_id={u.canonical_id}\naccess_key={u.access_key}\n"
        f"secret_key={u.secret_key}"
    )


@user.command("list")
@click.pass_context
def user_list(ctx: click.Context) -> None:
    """List users (without secrets)."""
    db, users = _users(ctx)
    try:
        for u in users.all():
            click.echo(
                f"{u.name}\t{u.access_key}\t{u.canonical_id}\t{'root' if u.is_root else 'user'}"
            )
    finally:
        db.close()


@user.command("remove")
@click.argument("name")
@click.pass_context
def user_remove(ctx: click.Context, name: str) -> None:
    """Remove a user; their keys stop working."""
    from s3torrent.store.users import UserError

    db, users = _users(ctx)
    try:
        users.remove(name)
    except UserError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        db.close()
    click.echo(f"removed {name}")


def main() -> None:
    cli(prog_name="s3torrent")


if __name__ == "__main__":
    main()
