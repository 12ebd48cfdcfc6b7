"""Background hashing of object versions whose bytes did not stream through a hasher.

Multipart completions and copies are hashed here from the stored blob, pieces spread over a
thread pool. Concurrent `?torrent` requests for the same version share one job; jobs that did
not finish before a restart are found again at start (versions without stored hashes).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable

from sqlalchemy.engine import Connection

from s3torrent.events import EventBus, ObjectWritten, TorrentHashed
from s3torrent.store import metadata as md
from s3torrent.store.database import Database
from s3torrent.store.objects import ObjectStore
from s3torrent.torrent.catalog import (
    TorrentCatalog,
    load_hashes,
    store_hashes,
    versions_without_hashes,
)
from s3torrent.torrent.hasher import PieceHashes, hash_ranges_parallel
from s3torrent.torrent.pieces import PieceLayout, piece_length_for

log = logging.getLogger(__name__)


class HashJobs:
    """One job per version at a time; `ensure` returns the running one or starts it."""

    def __init__(
        self,
        db: Database,
        store: ObjectStore,
        catalog: TorrentCatalog,
        events: EventBus,
        *,
        workers: int,
        concurrent_jobs: int = 1,
    ) -> None:
        self.db = db
        self.store = store
        self.catalog = catalog
        self.events = events
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, workers), thread_name_prefix="hash"
        )
        self._jobs: dict[str, asyncio.Task[PieceHashes]] = {}
        self._slots = asyncio.Semaphore(concurrent_jobs)
        self.progress: dict[str, int] = {}

    @property
    def queued(self) -> int:
        return len(self._jobs)

    def on_event(self, event: object) -> None:
        """Subscribed to the bus: a new version without hashes gets a job."""
        if isinstance(event, ObjectWritten) and not event.hashed:
            asyncio.get_running_loop().create_task(self._maybe_start(event))

    async def _maybe_start(self, event: ObjectWritten) -> None:
        if not self.catalog.settings.enabled or event.bucket in self.catalog.settings.disabled_buckets:
            return
        obj = await self.db.read(lambda c: md.get_object_by_version(c, event.version_id))
        if obj is None or obj.size > self.catalog.settings.max_object_size:
            return
        found = obj

        def lookup(conn: Connection) -> PieceHashes | None:
            return load_hashes(conn, found)

        hashes = await self.db.read(lookup)
        if hashes is None:
            self.ensure(obj)

    def ensure(self, obj: md.ObjectVersion) -> asyncio.Task[PieceHashes]:
        task = self._jobs.get(obj.version_id)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._run(obj))
            self._jobs[obj.version_id] = task
            vid = obj.version_id

            def forget(_task: asyncio.Task[PieceHashes]) -> None:
                self._jobs.pop(vid, None)

            task.add_done_callback(forget)
        return task

    async def _run(self, obj: md.ObjectVersion) -> PieceHashes:
        async with self._slots:
            layout = PieceLayout(obj.size, piece_length_for(obj.size))
            loop = asyncio.get_running_loop()
            self.progress[obj.version_id] = 0

            def progress(done: int) -> None:
                self.progress[obj.version_id] = done

            hashes = await loop.run_in_executor(None, self._hash_blocking, obj, layout, progress)
            self.progress.pop(obj.version_id, None)
            info = self.catalog.info_for(obj, hashes)

            def txn(conn: Connection) -> bool:
                # Only a version that is still current gets its hashes recorded.
                if md.get_object_by_version(conn, obj.version_id) is None:
                    return False
                store_hashes(conn, info)
                return True

            if await self.db.write(txn):
                self.events.publish(TorrentHashed(obj.bucket, obj.key, obj.version_id))
            return hashes

    def _hash_blocking(
        self, obj: md.ObjectVersion, layout: PieceLayout, progress: Callable[[int], None]
    ) -> PieceHashes:
        return hash_ranges_parallel(
            lambda off, n: self.store.read_range(obj, off, n),
            layout,
            v1=self.catalog.wants_v1,
            v2=self.catalog.wants_v2,
            executor=self._pool,
            progress=progress,
        )

    async def resume(self, limit: int = 10_000) -> int:
        """At start: restart jobs for current versions that have no hashes yet."""
        pending = await self.db.read(
            lambda c: versions_without_hashes(c, self.catalog.settings.max_object_size, limit)
        )
        for obj in pending:
            self.ensure(obj)
        if pending:
            log.info("resumed %d torrent hashing jobs", len(pending))
        return len(pending)

    async def close(self) -> None:
        for task in list(self._jobs.values()):
            task.cancel()
        for task in list(self._jobs.values()):
            try:
                await task
            except BaseException:
                pass
        self._pool.shutdown(wait=False, cancel_futures=True)
