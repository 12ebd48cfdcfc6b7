"""Command line: serve, init, user, torrent, key, usage, savings."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import click

from s3torrent.config import Settings
from s3torrent.invocation import (
    CONTEXT_SETTINGS,
    LOG_LEVELS,
    admin_client,
    common_options,
    configure_logging,
    failure_text,
    option_value,
    resolve_settings,
    startup_failure,
)

if TYPE_CHECKING:
    from s3torrent.remote import AdminClient
    from s3torrent.store.metastore import MetadataStore
    from s3torrent.store.rows import User
    from s3torrent.store.users import UserDirectory


@click.group(context_settings=CONTEXT_SETTINGS)
@common_options
def cli() -> None:
    """s3torrent: S3-compatible object storage that publishes public objects by BitTorrent."""


@cli.command()
@click.option(
    "--listen", default=None, help="HTTP listen address HOST:PORT (default 127.0.0.1:9000)."
)
@click.option(
    "--peer-listen",
    default=None,
    help="BitTorrent peer listen address (default: the --listen host, port 6881).",
)
@click.option("--public-url", default=None, help="Base URL clients use to reach this server.")
@click.option("--region", default=None, help="S3 region name (default us-east-1).")
@click.option("--domain", default=None, help="Base domain for virtual-hosted-style requests.")
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default=None,
    help="DEBUG, INFO (default), WARNING or ERROR (setting logging.level).",
)
@click.option(
    "--workers",
    type=int,
    default=None,
    help="Server processes sharing the HTTP port (default: one per core; setting workers).",
)
@common_options
@click.pass_context
def serve(
    ctx: click.Context,
    listen: str | None,
    peer_listen: str | None,
    public_url: str | None,
    region: str | None,
    domain: str | None,
    log_level: str | None,
    workers: int | None,
) -> None:
    """Run the server (S3 API, torrents, tracker, seeder) until SIGTERM, SIGINT or SIGHUP."""
    from s3torrent.workers import serve as run_server

    flags: dict[str, Any] = dict(
        listen=listen,
        peer_listen=peer_listen,
        public_url=public_url,
        region=region,
        domain=domain,
        workers=workers,
    )
    if log_level is not None:
        flags["logging"] = {"level": log_level.upper()}
    _local_only(ctx, "serve")
    # Exactly what it is given: the recorded settings file is for the CLI, not a default.
    settings = resolve_settings(ctx, existing=False, recorded=False, **flags)
    configure_logging(settings.logging.level)
    try:
        run_server(
            settings,
            config_file=option_value(ctx, "config"),
            describe=failure_text,
            debug=bool(option_value(ctx, "debug")),
        )
    except KeyboardInterrupt:
        pass
    except Exception as exc:
        raise startup_failure(ctx, exc) from None


@cli.command()
@common_options
@click.pass_context
def init(ctx: click.Context) -> None:
    """Create the data directory and its metadata database (as `serve` does at first start)."""
    from s3torrent.config import StartupError
    from s3torrent.provision import secure_data_dir
    from s3torrent.startup import record_config_file

    _local_only(ctx, "init")
    settings = resolve_settings(ctx, existing=False)
    try:
        secure_data_dir(settings)
    except StartupError as exc:
        raise click.ClickException(str(exc)) from None
    with _metadata(settings):
        pass
    config = option_value(ctx, "config")
    if config is not None:
        record_config_file(settings, config)
    click.echo(f"data directory ready: {settings.data_dir.absolute()}")


@cli.group()
@common_options
def user() -> None:
    """Manage users and their access keys."""


@contextlib.contextmanager
def _metadata(settings: Settings) -> Iterator[MetadataStore]:
    """The metadata store of the data directory."""
    from s3torrent.events import EventBus
    from s3torrent.store.metastore import open_metadata_store

    meta = open_metadata_store(settings.database_url, EventBus())
    try:
        yield meta
    finally:
        meta.close()


@contextlib.contextmanager
def _users(ctx: click.Context) -> Iterator[UserDirectory]:
    from s3torrent.store.users import UserDirectory, UserError

    settings = resolve_settings(ctx)
    with _metadata(settings) as meta:
        _open_user_secrets(settings, meta)
        users = UserDirectory(meta)
        users.load()
        try:
            yield users
        except UserError as exc:
            raise click.ClickException(str(exc)) from exc


def _open_user_secrets(settings: Settings, meta: MetadataStore, keys: Any = None) -> None:
    """Users' secret keys sealed and opened as the server does (the master key file made
    here if this is the data directory's first use); refused as the server's start is."""
    from s3torrent.config import StartupError
    from s3torrent.provision import master_keys, open_user_secrets

    try:
        open_user_secrets(meta, keys or master_keys(settings, meta))
    except StartupError as exc:
        raise click.ClickException(str(exc)) from None


def _print_keys(name: str, canonical_id: str, access_key: str, secret_key: str | None) -> None:
    if secret_key is None:  # sealed a moment ago, it does not open: nothing to print
        raise click.ClickException(f"the new secret key of {name} does not open (see the log)")
    click.echo(
        f"name={name}\ncanonical_id={canonical_id}\naccess_key={access_key}\n"
        f"secret_key={secret_key}"
    )


def _print_user(row: dict[str, Any]) -> None:
    """One line of `user list`: name, access key, canonical id, role, state."""
    role = "root" if row["root"] else "admin" if row["admin"] else "user"
    state = "disabled" if row["disabled"] else "enabled"
    click.echo(f"{row['name']}\t{row['access_key']}\t{row['canonical_id']}\t{role}\t{state}")


def _user_row(u: User) -> dict[str, Any]:
    from s3torrent.admin.users import user_json

    return user_json(u)


def _remote(ctx: click.Context) -> AdminClient | None:
    """The --endpoint client; its refusals end the command with the server's error code."""
    return admin_client(ctx)


@user.command("add")
@click.argument("name")
@click.option("--admin", is_flag=True, help="The user may use the admin API (--endpoint).")
@common_options
@click.pass_context
def user_add(ctx: click.Context, name: str, admin: bool) -> None:
    """Create a user with new keys (printed once)."""
    remote = _remote(ctx)
    if remote is not None:
        with _refused():
            u = remote.json("POST", "/users", body={"name": name, "admin": admin})
        _print_keys(u["name"], u["canonical_id"], u["access_key"], u["secret_key"])
        return
    with _users(ctx) as users:
        made = asyncio.run(users.add(name, admin=admin))
    _print_keys(made.name, made.canonical_id, made.access_key, made.secret_key)


@user.command("list")
@common_options
@click.pass_context
def user_list(ctx: click.Context) -> None:
    """List users (without secrets): name, access key, canonical id, role, state."""
    remote = _remote(ctx)
    if remote is not None:
        with _refused():
            rows = remote.json("GET", "/users")["users"]
    else:
        with _users(ctx) as users:
            rows = [_user_row(u) for u in users.all()]
    for row in rows:
        _print_user(row)


@user.command("remove")
@click.argument("name")
@common_options
@click.pass_context
def user_remove(ctx: click.Context, name: str) -> None:
    """Remove a user; their keys stop working."""
    from s3torrent.remote import segment

    remote = _remote(ctx)
    if remote is not None:
        with _refused():
            remote.json("DELETE", f"/users/{segment(name)}")
    else:
        with _users(ctx) as users:
            asyncio.run(users.remove(name))
    click.echo(f"removed {name}")


@user.command("rotate")
@click.argument("name")
@common_options
@click.pass_context
def user_rotate(ctx: click.Context, name: str) -> None:
    """Give a user new keys (printed once); the old ones stop working."""
    from s3torrent.remote import segment

    remote = _remote(ctx)
    if remote is not None:
        with _refused():
            u = remote.json("POST", f"/users/{segment(name)}/rotate")
        _print_keys(u["name"], u["canonical_id"], u["access_key"], u["secret_key"])
        return
    with _users(ctx) as users:
        made = asyncio.run(users.rotate(name))
    _print_keys(made.name, made.canonical_id, made.access_key, made.secret_key)


def _switch_user(ctx: click.Context, name: str, disabled: bool) -> None:
    from s3torrent.remote import segment

    remote = _remote(ctx)
    if remote is not None:
        with _refused():
            remote.json("POST", f"/users/{segment(name)}/{'disable' if disabled else 'enable'}")
    else:
        with _users(ctx) as users:
            asyncio.run(users.set_disabled(name, disabled))
    click.echo(f"{'disabled' if disabled else 'enabled'} {name}")


@user.command("disable")
@click.argument("name")
@common_options
@click.pass_context
def user_disable(ctx: click.Context, name: str) -> None:
    """Refuse a user's keys (InvalidAccessKeyId) until `user enable`."""
    _switch_user(ctx, name, True)


@user.command("enable")
@click.argument("name")
@common_options
@click.pass_context
def user_enable(ctx: click.Context, name: str) -> None:
    """Accept a disabled user's keys again."""
    _switch_user(ctx, name, False)


@cli.group()
@common_options
def torrent() -> None:
    """Inspect torrents and (re)compute piece hashes in the data directory."""


@torrent.command("show")
@click.argument("bucket_name", metavar="BUCKET")
@click.argument("key")
@click.option(
    "--base-url",
    default=None,
    help="Public URL of the server, for the magnet's trackers and web seeds "
    "(default: the configured public URL or listen address).",
)
@common_options
@click.pass_context
def torrent_show(ctx: click.Context, bucket_name: str, key: str, base_url: str | None) -> None:
    """Print the torrent of BUCKET/KEY: state, info-hashes, pieces, magnet URI."""
    from s3torrent.admin.torrents import torrent_report
    from s3torrent.torrent.catalog import TorrentCatalog

    remote = _remote(ctx)
    if remote is not None:
        with _refused():
            report = remote.json("GET", "/torrent", [("bucket", bucket_name), ("key", key)])
    else:
        from s3torrent.tracker.ws import WS_TRACKER_PATH

        settings = resolve_settings(ctx)
        catalog = TorrentCatalog(settings.torrent)
        if settings.tracker.websocket:  # as the server's: its torrents name that tracker too
            catalog.ws_tracker_path = WS_TRACKER_PATH
        base = base_url or settings.base_url
        with _metadata(settings) as meta:

            def sealing() -> Any:  # read only for an encrypted small object
                from s3torrent.store.blobs import open_blob_store
                from s3torrent.store.sealing import Sealing

                return Sealing(meta, open_blob_store(settings), _master_keys(settings))

            report = asyncio.run(
                torrent_report(settings, meta, catalog, bucket_name, key, base, sealing)
            )
    if report is None:
        raise click.ClickException(f"no such object: {bucket_name}/{key}")
    from s3torrent.log_output import printable

    for name, value in report.items():
        label = name.replace("_", " ").replace("info hash", "info-hash")
        click.echo(f"{label}: {printable(str(value))}")


@torrent.command("rehash")
@click.option("--bucket", "bucket_name", default=None, help="Only objects of this bucket.")
@common_options
@click.pass_context
def torrent_rehash(ctx: click.Context, bucket_name: str | None) -> None:
    """Compute piece hashes for current objects that lack them in the configured format.

    Safe while the server runs: reads blobs, writes one small transaction per object. With
    --endpoint the server queues the jobs itself and this returns at once.
    """
    from s3torrent.admin.rehash import rehash_here
    from s3torrent.store.blobs import open_blob_store

    remote = _remote(ctx)
    if remote is not None:
        query = [("bucket", bucket_name)] if bucket_name else []
        with _refused():
            queued = remote.json("POST", "/torrent/rehash", query)
        click.echo(f"queued {queued['queued']} objects ({queued['bytes']} bytes)")
        return
    settings = resolve_settings(ctx)
    blobs = open_blob_store(settings)
    with _metadata(settings) as meta:
        if bucket_name is not None and asyncio.run(meta.bucket(bucket_name)) is None:
            raise click.ClickException(f"no such bucket: {bucket_name}")
        keys = lambda: _master_keys(settings)  # noqa: E731 (read only if something is sealed)
        rehashed, skipped, total = asyncio.run(
            rehash_here(settings, meta, blobs, bucket_name, keys)
        )
    click.echo(f"rehashed {rehashed} objects ({total} bytes), skipped {skipped}")


def _bucket_option(value: str | None) -> frozenset[str] | None:
    from s3torrent.s3.errors import S3Error
    from s3torrent.s3.routing import check_bucket_name

    if value is None:
        return None
    try:
        check_bucket_name(value)
    except S3Error:
        raise click.BadParameter(
            f"{value!r} is not a valid bucket name", param_hint="--bucket"
        ) from None
    return frozenset({value})


@cli.command()
@click.option("--from", "start", default=None, help="Start (UTC): 2024-05-01 or 2024-05-01T13.")
@click.option("--to", "end", default=None, help="End (UTC, exclusive).")
@click.option("--bucket", default=None, help="Only this bucket.")
@click.option("--by", type=click.Choice(["hour", "day"]), default="day", show_default=True)
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "json", "table"]), default="csv", show_default=True
)
@common_options
@click.pass_context
def usage(
    ctx: click.Context,
    start: str | None,
    end: str | None,
    bucket: str | None,
    by: str,
    fmt: str,
) -> None:
    """Usage report: requests, bytes and storage per bucket and operation (AWS report columns)."""
    import json

    from s3torrent.metering import usage as u

    try:
        t0 = u.parse_time(start) if start is not None else None
    except u.ReportError as exc:
        raise click.BadParameter(str(exc), param_hint="--from") from None
    try:
        t1 = u.parse_time(end) if end is not None else None
    except u.ReportError as exc:
        raise click.BadParameter(str(exc), param_hint="--to") from None
    try:
        granularity: u.Granularity = "hour" if by == "hour" else "day"
        query = u.UsageQuery(start=t0, end=t1, buckets=_bucket_option(bucket), by=granularity)
    except u.ReportError as exc:
        raise click.BadParameter(str(exc), param_hint="--to") from None
    remote = _remote(ctx)
    if remote is not None:
        options = {"from": start, "to": end, "bucket": bucket, "by": by, "format": fmt}
        _print_report(remote, "/usage", options, fmt)
        return
    with _metadata(resolve_settings(ctx)) as meta:
        records = asyncio.run(u.load_usage(meta, query))
    if fmt == "csv":
        click.echo(u.usage_csv(records), nl=False)
    elif fmt == "json":
        click.echo(json.dumps(u.usage_json(records, query), indent=2))
    else:
        click.echo(u.usage_table(records, query), nl=False)


@cli.command()
@click.option("--bucket", default=None, help="Only this bucket.")
@click.option("--key", default=None, help="Only this object (needs --bucket).")
@click.option(
    "--price-per-gb",
    type=float,
    default=0.09,
    show_default=True,
    help="Egress price per GB (2^30 bytes) that the swarm's deliveries avoided.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
)
@common_options
@click.pass_context
def savings(
    ctx: click.Context, bucket: str | None, key: str | None, price_per_gb: float, fmt: str
) -> None:
    """Per object: origin bytes by channel, what the swarm delivered, offload and cost avoided."""
    import json
    import math

    from s3torrent.metering import usage as u

    if key is not None and bucket is None:
        raise click.BadParameter("--key needs --bucket", param_hint="--key")
    if price_per_gb < 0 or not math.isfinite(price_per_gb):
        raise click.BadParameter("must be a finite price of 0 or more", param_hint="--price-per-gb")
    buckets = _bucket_option(bucket)
    remote = _remote(ctx)
    if remote is not None:
        options = {"bucket": bucket, "key": key, "price-per-gb": str(price_per_gb), "format": fmt}
        _print_report(remote, "/savings", options, fmt)
        return
    with _metadata(resolve_settings(ctx)) as meta:
        items = asyncio.run(
            u.load_savings(meta, buckets=buckets, key=key, price_per_gb=price_per_gb)
        )
    if fmt == "csv":
        click.echo(u.savings_csv(items), nl=False)
    elif fmt == "json":
        click.echo(json.dumps(u.savings_json(items, price_per_gb), indent=2))
    else:
        click.echo(u.savings_table(items, price_per_gb), nl=False)


@cli.group()
@common_options
def key() -> None:
    """The master key that wraps the data keys of SSE-S3 objects."""


def _master_keys(settings: Settings) -> Any:
    from s3torrent.store.master_key import MASTER_KEY_FILE, MasterKeyError, MasterKeys

    path = settings.encryption.master_key_file or settings.data_dir / MASTER_KEY_FILE
    if not path.exists():
        raise click.ClickException(f"no master key file at {path}: nothing is encrypted yet")
    try:
        return MasterKeys.load(path)
    except MasterKeyError as exc:
        raise click.ClickException(str(exc)) from None


@key.command("show")
@common_options
@click.pass_context
def key_show(ctx: click.Context) -> None:
    """The master key file, its keys (never their bytes) and which one wraps new keys."""
    settings = resolve_settings(ctx)
    from s3torrent.store.user_secrets import secret_key_ids

    keys = _master_keys(settings)
    with _metadata(settings) as meta:
        in_use = asyncio.run(meta.seal_key_ids())
        sealing_secrets = secret_key_ids(meta.stored_user_secrets_now())
    click.echo(f"file: {keys.path}")
    for key_id in keys.key_ids:
        state = "current" if key_id == keys.current else "retired"
        uses = [
            what
            for what, used in (("data keys", in_use), ("user secret keys", sealing_secrets))
            if key_id in used
        ]
        click.echo(
            f"{key_id}\t{state}\t{'wraps ' + ' and '.join(uses) if uses else 'wraps nothing'}"
        )


@key.command("rotate")
@common_options
@click.pass_context
def key_rotate(ctx: click.Context) -> None:
    """A new master key; every data key re-wrapped by it (objects are not re-encrypted).

    A running server picks the new key up by itself. Back the key file up afterwards."""
    from s3torrent.store.blobs import open_blob_store
    from s3torrent.store.master_key import MasterKeyError
    from s3torrent.store.sealing import Sealing

    settings = resolve_settings(ctx)
    keys = _master_keys(settings)
    with _metadata(settings) as meta:
        _open_user_secrets(settings, meta, keys)
        sealing = Sealing(meta, open_blob_store(settings), keys)
        try:
            rewrapped, resealed, dropped = asyncio.run(sealing.rotate())
        except MasterKeyError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(
        f"master key {keys.current} is current; {rewrapped} data keys re-wrapped, "
        f"{resealed} user secret keys re-sealed, "
        f"{dropped} unused retired keys removed from {keys.path}"
    )


def _print_report(remote: AdminClient, path: str, options: dict[str, str | None], fmt: str) -> None:
    import json

    with _refused():
        reply = remote.request("GET", path, [(k, v) for k, v in options.items() if v is not None])
    if fmt == "json":
        click.echo(json.dumps(reply.json(), indent=2))
    else:
        click.echo(reply.text, nl=False)


@cli.command()
@common_options
@click.pass_context
def info(ctx: click.Context) -> None:
    """Version, settings summary and engines (with --endpoint: the server's, and its uptime)."""
    import json

    from s3torrent.admin.info import engines, package_version, settings_summary

    remote = _remote(ctx)
    if remote is not None:
        with _refused():
            report = remote.json("GET", "/info")
    else:
        settings = resolve_settings(ctx)
        report = {
            "version": package_version(),
            "engines": engines(settings),
            "settings": settings_summary(settings),
        }
    click.echo(json.dumps(report, indent=2))


@contextlib.contextmanager
def _refused() -> Iterator[None]:
    """A request the server refused (or that never reached it) as one line."""
    from s3torrent.remote import RemoteError

    try:
        yield
    except RemoteError as exc:
        raise click.ClickException(str(exc)) from None


def _local_only(ctx: click.Context, command: str) -> None:
    if option_value(ctx, "endpoint"):
        raise click.UsageError(f"`{command}` runs here: --endpoint is for the other commands")


def main() -> None:
    cli(prog_name="s3torrent")


if __name__ == "__main__":
    main()
