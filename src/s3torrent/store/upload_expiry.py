"""Abandoned multipart uploads: aborted after storage.abandoned_upload_days."""

from __future__ import annotations

import asyncio
import logging
import time

from s3torrent.config import StorageSettings
from s3torrent.store.objects import ObjectStore

log = logging.getLogger(__name__)


async def abort_stale_uploads(store: ObjectStore, older_than: float) -> int:
    """Abort uploads initiated more than `older_than` seconds ago; return how many."""
    cutoff = time.time() - older_than
    # Receipts of completed uploads answer retries for as long as an upload may live.
    await store.meta.expire_upload_receipts(cutoff)
    total = 0
    while True:
        ids = await store.meta.stale_uploads(cutoff, 100)
        if not ids:
            return total
        for upload_id in ids:
            blob_ids = await store.meta.abort_upload(upload_id)
            if blob_ids is not None:
                await store.delete_blobs(blob_ids)
                total += 1


async def expire_uploads_forever(store: ObjectStore, settings: StorageSettings) -> None:
    """The periodic cleanup of abandoned uploads."""
    while True:
        try:
            n = await abort_stale_uploads(store, settings.abandoned_upload_days * 86400)
        except Exception:
            log.exception("abandoned upload cleanup failed")
        else:
            if n:
                log.info("aborted %d abandoned multipart uploads", n)
        await asyncio.sleep(settings.upload_cleanup_interval)
