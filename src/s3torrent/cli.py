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
    common_options,
    configure_logging,
    option_value,
    resolve_settings,
    startup_failure,
)

if TYPE_CHECKING:
    from s3torrent.store.blobs import BlobStore
    from s3torrent.store.metastore import MetadataStore
    from s3torrent.store.rows import Bucket, ObjectVersion
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
) -> None:
    """Run the server (S3 API, torrents, tracker, seeder) until SIGTERM or SIGINT."""
    from s3torrent.app import serve as run_server

    flags: dict[str, Any] = dict(
        listen=listen, peer_listen=peer_listen, public_url=public_url, region=region, domain=domain
    )
    if log_level is not None:
        flags["logging"] = {"level": log_level.upper()}
    # Exactly what it is given: the recorded settings file is for the CLI, not a default.
    settings = resolve_settings(ctx, existing=False, recorded=False, **flags)
    configure_logging(settings.logging.level)
    try:
        asyncio.run(run_server(settings, config_file=option_value(ctx, "config")))
    except KeyboardInterrupt:
        pass
    except Exception as exc:
        raise startup_failure(ctx, exc) from None


@cli.command()
@common_options
@click.pass_context
def init(ctx: click.Context) -> None:
    """Create the data directory and its metadata database (as `serve` does at first start)."""
    from s3torrent.app import secure_data_dir
    from s3torrent.config import StartupError
    from s3torrent.startup import record_config_file

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

    with _metadata(resolve_settings(ctx)) as meta:
        users = UserDirectory(meta)
        users.load()
        try:
            yield users
        except UserError as exc:
            raise click.ClickException(str(exc)) from exc


@user.command("add")
@click.argument("name")
@common_options
@click.pass_context
def user_add(ctx: click.Context, name: str) -> None:
    """Create a user with new keys (printed once)."""
    with _users(ctx) as users:
        u = asyncio.run(users.add(name))
    click.echo(
        f"name={u.name}\ncanonical_id={u.canonical_id}\naccess_key={u.access_key}\n"
        f"secret_key={u.secret_key}"
    )


@user.command("list")
@common_options
@click.pass_context
def user_list(ctx: click.Context) -> None:
    """List users (without secrets)."""
    with _users(ctx) as users:
        for u in users.all():
            click.echo(
                f"{u.name}\t{u.access_key}\t{u.canonical_id}\t{'root' if u.is_root else 'user'}"
            )


@user.command("remove")
@click.argument("name")
@common_options
@click.pass_context
def user_remove(ctx: click.Context, name: str) -> None:
    """Remove a user; their keys stop working."""
    with _users(ctx) as users:
        asyncio.run(users.remove(name))
    click.echo(f"removed {name}")


@cli.group()
@common_options
def torrent() -> None:
    """Inspect torrents and (re)compute piece hashes in the data directory."""


def _torrent_state(settings: Settings, bucket: Any, obj: Any, hashed: bool) -> str:
    """ready / pending / not public, or why torrents are refused (disabled, too large)."""
    from s3torrent.publication import anywhere_now, torrent_refusal

    refusal = torrent_refusal(settings.torrent, bucket, obj, anywhere_now())
    if refusal is not None:
        return refusal.value
    return "ready" if hashed else "pending"


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
    from s3torrent.torrent.catalog import TorrentCatalog, make_info, piece_hashes
    from s3torrent.torrent.pieces import PieceLayout, piece_length_for

    settings = resolve_settings(ctx)
    with _metadata(settings) as meta:
        bucket, obj = asyncio.run(meta.bucket_and_object(bucket_name, key))
        if bucket is None or obj is None:
            raise click.ClickException(f"no such object: {bucket_name}/{key}")
        hashes = piece_hashes(obj, asyncio.run(meta.torrent_hashes(obj.version_id)))
    catalog = TorrentCatalog(settings.torrent)
    has_format = hashes is not None and catalog.has_hashes_for_format(hashes)
    state = _torrent_state(settings, bucket, obj, has_format)
    layout = (
        hashes.layout if hashes is not None else PieceLayout(obj.size, piece_length_for(obj.size))
    )
    lines = [
        ("bucket", obj.bucket),
        ("key", obj.key),
        ("version", obj.version_id),
        ("size", str(obj.size)),
        ("state", state),
        ("format", settings.torrent.format),
        ("piece length", str(layout.piece_length)),
        ("piece count", str(layout.count)),
    ]
    if hashes is not None and has_format:
        info = make_info(obj, hashes, settings.torrent.format)
        if info.info_hash.v1_hex is not None:
            lines.append(("info-hash v1", info.info_hash.v1_hex))
        if info.info_hash.v2_hex is not None:
            lines.append(("info-hash v2", info.info_hash.v2_hex))
        base = (base_url or settings.base_url).rstrip("/")
        lines.append(("magnet", catalog.magnet(info, base, bucket.settings)))
    for name, value in lines:
        click.echo(f"{name}: {value}")


@torrent.command("rehash")
@click.option("--bucket", "bucket_name", default=None, help="Only objects of this bucket.")
@common_options
@click.pass_context
def torrent_rehash(ctx: click.Context, bucket_name: str | None) -> None:
    """Compute piece hashes for current objects that lack them in the configured format.

    Safe while the server runs: reads blobs, writes one small transaction per object.
    """
    from s3torrent.store.blobs import open_blob_store

    settings = resolve_settings(ctx)
    blobs = open_blob_store(settings)
    with _metadata(settings) as meta:
        rehashed, skipped, total = asyncio.run(_rehash(settings, meta, blobs, bucket_name))
    click.echo(f"rehashed {rehashed} objects ({total} bytes), skipped {skipped}")


async def _rehash(
    settings: Settings, meta: MetadataStore, blobs: BlobStore, bucket_name: str | None
) -> tuple[int, int, int]:
    """Hash the current versions that lack hashes in the configured format; returns
    (rehashed, skipped, bytes to hash)."""
    import concurrent.futures

    from tqdm import tqdm

    from s3torrent.publication import Refusal, anywhere_now, torrent_refusal
    from s3torrent.store.sealing import SSE_C, Sealing, seal_mode
    from s3torrent.torrent.catalog import TorrentCatalog, make_info, piece_hashes, stored_hashes
    from s3torrent.torrent.jobs import hash_version
    from s3torrent.torrent.pieces import PieceLayout, piece_length_for

    catalog = TorrentCatalog(settings.torrent)
    if bucket_name is not None and await meta.bucket(bucket_name) is None:
        raise click.ClickException(f"no such bucket: {bucket_name}")
    not_hashed = (Refusal.DISABLED, Refusal.TOO_LARGE)
    now = anywhere_now()
    buckets: dict[str, Bucket | None] = {}
    todo: list[ObjectVersion] = []
    for obj, stored in await meta.versions_and_hashes(bucket_name):
        if obj.bucket not in buckets:
            buckets[obj.bucket] = await meta.bucket(obj.bucket)
        b = buckets[obj.bucket]
        # Private objects are hashed too: they may be made public later.
        if b is None or torrent_refusal(settings.torrent, b, obj, now) in not_hashed:
            continue
        if seal_mode(obj.headers) == SSE_C:
            continue  # never torrent-able: only its owner holds the key
        hashes = piece_hashes(obj, stored)
        if hashes is None or not catalog.has_hashes_for_format(hashes):
            todo.append(obj)
    rehashed = skipped = 0
    total = sum(o.size for o in todo)
    pool = concurrent.futures.ThreadPoolExecutor(max(1, settings.torrent.hash_workers))
    try:
        with tqdm(total=total, unit="B", unit_scale=True, desc="rehash") as bar:
            for obj in todo:
                layout = PieceLayout(obj.size, piece_length_for(obj.size))
                base = bar.n

                def progress(done: int, base: int = base) -> None:
                    bar.update(base + done - bar.n)

                try:
                    read = None
                    if seal_mode(obj.headers) is not None:
                        sealing = Sealing(meta, blobs, _master_keys(settings))
                        read = (await sealing.reader(obj, None)).read
                    hashes = await asyncio.to_thread(
                        hash_version,
                        blobs,
                        obj,
                        layout,
                        v1=catalog.wants_v1,
                        v2=catalog.wants_v2,
                        executor=pool,
                        progress=progress,
                        read=read,
                    )
                except (FileNotFoundError, ValueError):
                    # Overwritten or deleted while we read it: nothing to record.
                    skipped += 1
                    bar.update(base + obj.size - bar.n)
                    continue
                info = make_info(obj, hashes, settings.torrent.format)
                if await meta.record_hashes(obj, stored_hashes(info)):
                    rehashed += 1
                else:
                    skipped += 1
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return rehashed, skipped, total


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
    keys = _master_keys(settings)
    with _metadata(settings) as meta:
        in_use = asyncio.run(meta.seal_key_ids())
    click.echo(f"file: {keys.path}")
    for key_id in keys.key_ids:
        state = "current" if key_id == keys.current else "retired"
        used = "wraps data keys" if key_id in in_use else "wraps nothing"
        click.echo(f"{key_id}\t{state}\t{used}")


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
        sealing = Sealing(meta, open_blob_store(settings), keys)
        try:
            rewrapped, dropped = asyncio.run(sealing.rotate())
        except MasterKeyError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(
        f"master key {keys.current} is current; {rewrapped} data keys re-wrapped, "
        f"{dropped} unused retired keys removed from {keys.path}"
    )


def main() -> None:
    cli(prog_name="s3torrent")


if __name__ == "__main__":
    main()
