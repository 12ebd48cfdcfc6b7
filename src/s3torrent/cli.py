"""Command line: serve, user, torrent."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import click

from s3torrent.config import Settings, load_settings


def _settings(ctx: click.Context) -> Settings:
    from pydantic import ValidationError

    obj: dict[str, Any] = ctx.obj
    try:
        return load_settings(obj.get("config"), **obj.get("flags", {}))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        raise click.ClickException(f"invalid settings: {problems}") from None


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
    from s3torrent.extras import MissingExtra

    try:
        asyncio.run(run_server(settings))
    except MissingExtra as exc:
        raise click.ClickException(str(exc)) from None


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


@cli.group()
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
@click.pass_context
def torrent_show(ctx: click.Context, bucket_name: str, key: str, base_url: str | None) -> None:
    """Print the torrent of BUCKET/KEY: state, info-hashes, pieces, magnet URI."""
    from s3torrent.store import metadata as md
    from s3torrent.store.database import Database
    from s3torrent.torrent.catalog import TorrentCatalog, load_hashes, make_info
    from s3torrent.torrent.pieces import PieceLayout, piece_length_for

    settings = _settings(ctx)
    db = Database(settings.database_url)
    try:
        bucket = db.read_sync(lambda c: md.get_bucket(c, bucket_name))
        obj = db.read_sync(lambda c: md.get_object(c, bucket_name, key))
        if bucket is None or obj is None:
            raise click.ClickException(f"no such object: {bucket_name}/{key}")
        found = obj
        hashes = db.read_sync(lambda c: load_hashes(c, found))
    finally:
        db.close()
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
@click.pass_context
def torrent_rehash(ctx: click.Context, bucket_name: str | None) -> None:
    """Compute piece hashes for current objects that lack them in the configured format.

    Safe while the server runs: reads blobs, writes one small transaction per object.
    """
    import concurrent.futures

    import sqlalchemy as sa
    from sqlalchemy.engine import Connection
    from tqdm import tqdm

    from s3torrent.events import EventBus
    from s3torrent.publication import Refusal, anywhere_now, torrent_refusal
    from s3torrent.store import metadata as md
    from s3torrent.store.blobs import open_blob_store
    from s3torrent.store.database import Database
    from s3torrent.store.metastore import SqlMetadataStore
    from s3torrent.store.objects import ObjectStore
    from s3torrent.torrent.catalog import TorrentCatalog, load_hashes, make_info, store_hashes

    not_hashed = (Refusal.DISABLED, Refusal.TOO_LARGE)
    now = anywhere_now()
    from s3torrent.torrent.jobs import hash_version
    from s3torrent.torrent.pieces import PieceLayout, piece_length_for

    settings = _settings(ctx)
    if not settings.data_dir.is_dir():
        raise click.ClickException(f"no data directory at {settings.data_dir}")
    db = Database(settings.database_url)
    blobs = open_blob_store(settings)
    catalog = TorrentCatalog(settings.torrent)
    fmt = settings.torrent.format

    def candidates(conn: Connection) -> list[md.ObjectVersion]:
        q = sa.select(md.objects).order_by(md.objects.c.bucket, md.objects.c.key)
        if bucket_name is not None:
            q = q.where(md.objects.c.bucket == bucket_name)
        buckets: dict[str, md.Bucket | None] = {}
        todo = []
        for row in conn.execute(q):
            obj = md.ObjectVersion.from_row(row)
            if obj.bucket not in buckets:
                buckets[obj.bucket] = md.get_bucket(conn, obj.bucket)
            b = buckets[obj.bucket]
            # Private objects are hashed too: they may be made public later.
            if b is None or torrent_refusal(settings.torrent, b, obj, now) in not_hashed:
                continue
            hashes = load_hashes(conn, obj)
            if hashes is None or not catalog.has_hashes_for_format(hashes):
                todo.append(obj)
        return todo

    rehashed = skipped = 0
    pool = concurrent.futures.ThreadPoolExecutor(max(1, settings.torrent.hash_workers))
    store = ObjectStore(SqlMetadataStore(db, EventBus()), blobs, executor=pool)
    try:
        if (
            bucket_name is not None
            and db.read_sync(lambda c: md.get_bucket(c, bucket_name)) is None
        ):
            raise click.ClickException(f"no such bucket: {bucket_name}")
        todo = db.read_sync(candidates)
        total = sum(o.size for o in todo)
        with tqdm(total=total, unit="B", unit_scale=True, desc="rehash") as bar:
            for obj in todo:
                layout = PieceLayout(obj.size, piece_length_for(obj.size))
                base = bar.n

                def progress(done: int, base: int = base) -> None:
                    bar.update(base + done - bar.n)

                vid = obj.version_id
                try:
                    hashes = hash_version(
                        store,
                        obj,
                        layout,
                        v1=catalog.wants_v1,
                        v2=catalog.wants_v2,
                        executor=pool,
                        progress=progress,
                    )
                except (FileNotFoundError, ValueError):
                    # Overwritten or deleted while we read it: nothing to record.
                    skipped += 1
                    bar.update(base + obj.size - bar.n)
                    continue
                info = make_info(obj, hashes, fmt)

                def txn(conn: Connection, info: Any = info, vid: str = vid) -> bool:
                    if md.get_object_by_version(conn, vid) is None:
                        return False
                    store_hashes(conn, info)
                    return True

                if db.write_sync(txn):
                    rehashed += 1
                else:
                    skipped += 1
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        db.close()
    click.echo(f"rehashed {rehashed} objects ({total} bytes), skipped {skipped}")


def _report_db(ctx: click.Context) -> Any:
    from s3torrent.store.database import Database

    settings = _settings(ctx)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return Database(settings.database_url)


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
    db = _report_db(ctx)
    try:
        records = db.read_sync(lambda c: u.load_usage(c, query))
    finally:
        db.close()
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
    db = _report_db(ctx)
    try:
        items = db.read_sync(
            lambda c: u.load_savings(c, buckets=buckets, key=key, price_per_gb=price_per_gb)
        )
    finally:
        db.close()
    if fmt == "csv":
        click.echo(u.savings_csv(items), nl=False)
    elif fmt == "json":
        click.echo(json.dumps(u.savings_json(items, price_per_gb), indent=2))
    else:
        click.echo(u.savings_table(items, price_per_gb), nl=False)


def main() -> None:
    cli(prog_name="s3torrent")


if __name__ == "__main__":
    main()
