"""`s3torrent torrent rehash` on this machine: piece hashes for the current versions that
lack them in the configured format, with a progress bar (the admin API's rehash queues the
server's own hash jobs instead)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from s3torrent.config import Settings
from s3torrent.store.blobs import BlobStore
from s3torrent.store.master_key import MasterKeys
from s3torrent.store.metastore import MetadataStore


async def rehash_here(
    settings: Settings,
    meta: MetadataStore,
    blobs: BlobStore,
    bucket_name: str | None,
    master_keys: Callable[[], MasterKeys],
) -> tuple[int, int, int]:
    """Hash the current versions that lack hashes in the configured format; returns
    (rehashed, skipped, bytes to hash)."""
    import concurrent.futures

    from tqdm import tqdm

    from s3torrent.admin.torrents import versions_to_hash
    from s3torrent.store.sealing import Sealing, seal_mode
    from s3torrent.torrent.catalog import TorrentCatalog, make_info, stored_hashes
    from s3torrent.torrent.jobs import hash_version
    from s3torrent.torrent.pieces import PieceLayout, piece_length_for

    catalog = TorrentCatalog(settings.torrent)
    todo = await versions_to_hash(settings, meta, catalog, bucket_name)
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
                        sealing = Sealing(meta, blobs, master_keys())
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
