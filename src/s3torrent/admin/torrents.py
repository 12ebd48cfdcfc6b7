"""An object's torrent state, and which objects lack piece hashes: for the admin API and
the local CLI alike."""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from s3torrent.admin.call import AdminCall
from s3torrent.publication import Refusal, anywhere_now, refusal_anywhere, torrent_refusal
from s3torrent.s3.errors import S3Error
from s3torrent.store.sealing import SSE_C, seal_mode
from s3torrent.torrent.catalog import TorrentCatalog, make_info, piece_hashes
from s3torrent.torrent.jobs import inline_hashes
from s3torrent.torrent.pieces import PieceLayout, piece_length_for

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable

    from s3torrent.config import Settings
    from s3torrent.s3.context import S3Context
    from s3torrent.store.metastore import MetadataStore
    from s3torrent.store.rows import Bucket, ObjectVersion
    from s3torrent.store.sealing import Sealing
    from s3torrent.torrent.hasher import PieceHashes

log = logging.getLogger(__name__)


async def torrent_report(
    settings: Settings,
    meta: MetadataStore,
    catalog: TorrentCatalog,
    bucket_name: str,
    key: str,
    base_url: str,
    sealing: Callable[[], Sealing] | None = None,
) -> dict[str, Any] | None:
    """State, info-hashes, pieces and magnet of BUCKET/KEY's current version (None: none).
    `sealing`: what opens an encrypted small object, whose hashes may be made here."""
    bucket, obj = await meta.bucket_and_object(bucket_name, key)
    if bucket is None or obj is None:
        return None
    hashes = piece_hashes(obj, await meta.torrent_hashes(obj.version_id))
    if (hashes is None or not catalog.has_hashes_for_format(hashes)) and obj.inline is not None:
        # A small object is hashed from its row when its torrent is first asked for
        # (HashJobs.ensure): as ready as any, with the same hashes.
        mode = seal_mode(obj.headers)
        opener = sealing() if sealing is not None and mode not in (None, SSE_C) else None
        with contextlib.suppress(ValueError):  # none here: SSE-C, or nothing opens it
            hashes = await inline_hashes(obj, catalog, opener)
    has_format = hashes is not None and catalog.has_hashes_for_format(hashes)
    refusal = refusal_anywhere(settings.torrent, bucket, obj)
    state = refusal.value if refusal is not None else ("ready" if has_format else "pending")
    layout = (
        hashes.layout if hashes is not None else PieceLayout(obj.size, piece_length_for(obj.size))
    )
    report: dict[str, Any] = {
        "bucket": obj.bucket,
        "key": obj.key,
        "version": obj.version_id,
        "size": obj.size,
        "state": state,
        "format": settings.torrent.format,
        "piece_length": layout.piece_length,
        "piece_count": layout.count,
    }
    if hashes is not None and has_format:
        info = make_info(obj, hashes, settings.torrent.format)
        if info.info_hash.v1_hex is not None:
            report["info_hash_v1"] = info.info_hash.v1_hex
        if info.info_hash.v2_hex is not None:
            report["info_hash_v2"] = info.info_hash.v2_hex
        report["magnet"] = catalog.magnet(info, base_url.rstrip("/"), bucket.settings)
    return report


async def versions_to_hash(
    settings: Settings, meta: MetadataStore, catalog: TorrentCatalog, bucket_name: str | None
) -> list[ObjectVersion]:
    """Current versions that lack piece hashes in the configured format and could have a
    torrent (private ones too: they may be made public later)."""
    not_hashed = (Refusal.DISABLED, Refusal.TOO_LARGE)
    now = anywhere_now()
    buckets: dict[str, Bucket | None] = {}
    todo: list[ObjectVersion] = []
    for obj, stored in await meta.versions_and_hashes(bucket_name):
        if obj.bucket not in buckets:
            buckets[obj.bucket] = await meta.bucket(obj.bucket)
        b = buckets[obj.bucket]
        if b is None or torrent_refusal(settings.torrent, b, obj, now) in not_hashed:
            continue
        if seal_mode(obj.headers) == SSE_C:
            continue  # never torrent-able: only its owner holds the key
        if stored is None and obj.inline is not None:
            continue  # hashed from its row when first asked for (HashJobs.ensure)
        hashes = piece_hashes(obj, stored)
        if hashes is None or not catalog.has_hashes_for_format(hashes):
            todo.append(obj)
    return todo


def sealing_of(svc: S3Context) -> Callable[[], Sealing] | None:
    """The server's own sealing (None: nothing can be sealed there) for torrent_report."""
    sealing = svc.store.sealing
    return (lambda: sealing) if sealing is not None else None


async def show_torrent(call: AdminCall) -> web.StreamResponse:
    bucket, key = call.query.get("bucket"), call.query.get("key")
    if not bucket or key is None:
        raise S3Error("InvalidArgument", "name the object with ?bucket=NAME&key=KEY")
    svc = call.svc
    report = await torrent_report(
        svc.settings, svc.meta, svc.torrents, bucket, key, svc.settings.base_url, sealing_of(svc)
    )
    if report is None:
        raise S3Error("NoSuchKey", f"no such object: {bucket}/{key}")
    return web.json_response(report)


def _log_failure(task: asyncio.Task[PieceHashes]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("rehash: %s", task.exception())


async def rehash(call: AdminCall) -> web.StreamResponse:
    """Queue hash jobs (the server's own, shared with `?torrent` requests) and answer at once."""
    svc = call.svc
    bucket = call.query.get("bucket") or None
    if bucket is not None and await svc.meta.bucket(bucket) is None:
        raise S3Error("NoSuchBucket", f"no such bucket: {bucket}")
    todo = await versions_to_hash(svc.settings, svc.meta, svc.torrents, bucket)
    for obj in todo:
        svc.hash_jobs.ensure(obj).add_done_callback(_log_failure)
    return web.json_response({"queued": len(todo), "bytes": sum(o.size for o in todo)}, status=202)
