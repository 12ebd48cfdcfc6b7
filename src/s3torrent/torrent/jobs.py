"""Background hashing of object versions whose bytes did not stream through a hasher.

Multipart completions and copies are hashed here from the stored blob, pieces spread over a
thread pool. Concurrent `?torrent` requests for the same version share one job; jobs that did
not finish before a restart are found again at start (versions without stored hashes).

An inline version (its bytes in its metadata row, at most `storage.inline_max_size`) has no
job: its write records no hashes, and `ensure` computes them from its row when its torrent
is first asked for, in microseconds, and records them so that its swarm ids resolve.

Each job is a row of the metadata store, claimed by exactly one node (see
store/job_queries.py: SKIP LOCKED on PostgreSQL, SQLite's single writer). The node renews
its claim by heartbeat while it hashes; if it dies, the claim expires and another node's poll
takes the job over. A node that did not claim a job but is asked for its torrent waits for
the hashes to appear in the database (or for the claim to expire, then takes it).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from s3torrent.events import ObjectWritten
from s3torrent.failures import logged_failure
from s3torrent.store.blobs import BlobStore
from s3torrent.store.rows import ObjectVersion
from s3torrent.store.sealing import SSE_C, Sealing, seal_mode
from s3torrent.torrent.catalog import TorrentCatalog, piece_hashes
from s3torrent.torrent.hasher import (
    PieceHashes,
    TorrentHasher,
    hash_file,
    hash_ranges_parallel,
)
from s3torrent.torrent.pieces import PieceLayout, piece_length_for

if TYPE_CHECKING:
    from s3torrent.store.metastore import MetadataStore

log = logging.getLogger(__name__)


class HashJobs:
    """One job per version at a time; `ensure` returns the running one or starts it."""

    def __init__(
        self,
        meta: MetadataStore,
        blobs: BlobStore,
        catalog: TorrentCatalog,
        *,
        workers: int,
        concurrent_jobs: int = 1,
        node_id: str | None = None,
        claim_ttl: float = 30.0,
        poll_interval: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.node_id = node_id or secrets.token_hex(8)
        self.claim_ttl = claim_ttl
        self.poll_interval = poll_interval
        self._clock = clock
        self._concurrent = max(1, concurrent_jobs)
        self._poller: asyncio.Task[None] | None = None
        self._waiters: dict[str, asyncio.Task[PieceHashes]] = {}
        self.meta = meta
        self.blobs = blobs
        self.catalog = catalog
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, workers), thread_name_prefix="hash"
        )
        self._jobs: dict[str, asyncio.Task[PieceHashes]] = {}
        self._slots = asyncio.Semaphore(concurrent_jobs)
        self.progress: dict[str, int] = {}
        # Encryption at rest (set by the app): sealed versions are hashed as plaintext.
        self.sealing: Sealing | None = None

    @property
    def pool(self) -> concurrent.futures.Executor:
        """The hashing threads (`torrent.hash_workers`): background jobs, and uploads
        whose pieces are read back while their blob is committed (s3/ops/objects.py)."""
        return self._pool

    @property
    def queued(self) -> int:
        return len(self._jobs)

    def on_event(self, event: object) -> None:
        """Subscribed to the bus: a new version without hashes gets a job."""
        if isinstance(event, ObjectWritten) and not event.hashed:
            asyncio.get_running_loop().create_task(self._maybe_start(event))

    async def _maybe_start(self, event: ObjectWritten) -> None:
        if (
            not self.catalog.settings.enabled
            or event.bucket in self.catalog.settings.disabled_buckets
        ):
            return
        obj = await self.meta.object_by_version(event.version_id)
        if obj is None or obj.size > self.catalog.settings.max_object_size:
            return
        if seal_mode(obj.headers) == SSE_C:
            return  # never torrent-able: no reader but its owner holds the key
        if obj.inline is not None:
            return  # hashed from its row when first asked for (ensure)
        if await self.meta.torrent_hashes(obj.version_id) is None:
            # Every node sees the event; the one whose claim succeeds hashes.
            await self.meta.add_hash_jobs([obj.version_id], self._clock())
            await self._claim_and_start(obj)

    def ensure(self, obj: ObjectVersion) -> asyncio.Task[PieceHashes]:
        """The hashes of obj: from our job, or from another node's once it stored them; an
        inline version's at once, from its row (recorded before the task ends)."""
        task = self._jobs.get(obj.version_id) or self._waiters.get(obj.version_id)
        if task is None:
            work = self._inline(obj) if obj.inline is not None else self._claim_or_wait(obj)
            task = asyncio.get_running_loop().create_task(work)
            self._waiters[obj.version_id] = task
            vid = obj.version_id

            def forget(_task: asyncio.Task[PieceHashes]) -> None:
                self._waiters.pop(vid, None)

            task.add_done_callback(forget)
        return task

    async def _inline(self, obj: ObjectVersion) -> PieceHashes:
        """An inline version's hashes, computed from its row and recorded (if it is still
        current), so that the swarm ids of the torrent about to be handed out resolve."""
        hashes = await inline_hashes(obj, self.catalog, self.sealing)
        await self.meta.record_hashes(obj, self.catalog.hashes_to_store(obj, hashes))
        return hashes

    async def _claim_or_wait(self, obj: ObjectVersion) -> PieceHashes:
        await self.meta.add_hash_jobs([obj.version_id], self._clock())
        delay = 0.05
        while True:
            task = self._jobs.get(obj.version_id) or await self._claim_and_start(obj)
            if task is not None:
                return await task
            # Another node holds the job: its hashes show up in the database when done.
            hashes = piece_hashes(obj, await self.meta.torrent_hashes(obj.version_id))
            if hashes is not None and self.catalog.has_hashes_for_format(hashes):
                return hashes
            await asyncio.sleep(delay)
            delay = min(1.0, delay * 2)

    async def _claim_and_start(self, obj: ObjectVersion) -> asyncio.Task[PieceHashes] | None:
        if obj.version_id in self._jobs:
            return self._jobs[obj.version_id]
        now = self._clock()
        claimed = await self.meta.claim_hash_jobs(
            self.node_id, now, self.claim_ttl, 1, obj.version_id
        )
        if not claimed:
            return None
        return self._start(obj)

    def _start(self, obj: ObjectVersion) -> asyncio.Task[PieceHashes]:
        """Run a job this node has claimed (once per version)."""
        task = self._jobs.get(obj.version_id)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._run(obj))
            self._jobs[obj.version_id] = task
            vid = obj.version_id

            def forget(_task: asyncio.Task[PieceHashes]) -> None:
                self._jobs.pop(vid, None)

            task.add_done_callback(forget)
        return task

    async def _heartbeat(self, version_id: str) -> None:
        while True:
            await asyncio.sleep(self.claim_ttl / 3)
            until = self._clock() + self.claim_ttl
            with logged_failure(log, f"hashing job {version_id}: renewing its claim"):
                held = await self.meta.renew_hash_claims(self.node_id, [version_id], until)
                if version_id not in held:
                    log.warning("hashing job %s: claim lost to another node", version_id)

    async def _run(self, obj: ObjectVersion) -> PieceHashes:
        heartbeat = asyncio.get_running_loop().create_task(self._heartbeat(obj.version_id))
        try:
            return await self._run_claimed(obj)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Let the poll (ours or another node's) try again, up to MAX_ATTEMPTS claims.
            with logged_failure(log, f"hashing job {obj.version_id}: releasing its claim"):
                await self.meta.release_hash_claims(self.node_id, [obj.version_id])
            raise
        finally:
            heartbeat.cancel()

    async def _run_claimed(self, obj: ObjectVersion) -> PieceHashes:
        async with self._slots:
            layout = PieceLayout(obj.size, piece_length_for(obj.size))
            loop = asyncio.get_running_loop()
            self.progress[obj.version_id] = 0

            def progress(done: int) -> None:
                self.progress[obj.version_id] = done

            read = None
            if self.sealing is not None and self.sealing.is_sealed(obj):
                read = (await self.sealing.reader(obj, None)).read
            hashes = await loop.run_in_executor(
                None, self._hash_blocking, obj, layout, progress, read
            )
            self.progress.pop(obj.version_id, None)
            # Only a version that is still current gets its hashes recorded (and announced).
            await self.meta.finish_hash_job(obj, self.catalog.hashes_to_store(obj, hashes))
            return hashes

    def _hash_blocking(
        self,
        obj: ObjectVersion,
        layout: PieceLayout,
        progress: Callable[[int], None],
        read: Callable[[int, int], bytes] | None = None,
    ) -> PieceHashes:
        return hash_version(
            self.blobs,
            obj,
            layout,
            v1=self.catalog.wants_v1,
            v2=self.catalog.wants_v2,
            executor=self._pool,
            progress=progress,
            read=read,
        )

    async def resume(self, limit: int = 10_000) -> int:
        """At start: queue jobs for current versions without hashes, then poll for jobs."""
        pending = await self.meta.versions_without_hashes(
            self.catalog.settings.max_object_size, limit
        )
        if pending:
            await self.meta.add_hash_jobs([obj.version_id for obj in pending], self._clock())
            log.info("%d torrent hashing jobs pending", len(pending))
        await self.poll()
        if self._poller is None:
            self._poller = asyncio.get_running_loop().create_task(self._poll_forever())
        return len(pending)

    async def poll(self) -> int:
        """Claim free or expired jobs while we have free slots; returns how many started."""
        free = self._concurrent - len(self._jobs)
        if free <= 0:
            return 0
        now = self._clock()
        ids = await self.meta.claim_hash_jobs(self.node_id, now, self.claim_ttl, free)
        started = 0
        for vid in ids:
            obj = await self.meta.object_by_version(vid)
            if obj is None or obj.size > self.catalog.settings.max_object_size:
                await self.meta.drop_hash_job(vid)
                continue
            self._start(obj)
            started += 1
        return started

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                await self.poll()
            except Exception:
                log.exception("polling for hashing jobs failed")

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError), logged_failure(log, "job poller"):
                await self._poller
        running = list(self._jobs)
        for task in [*self._jobs.values(), *self._waiters.values()]:
            task.cancel()
        for task in [*self._jobs.values(), *self._waiters.values()]:
            # A job's own failure was reported to its waiters; here only its end matters.
            with contextlib.suppress(asyncio.CancelledError), logged_failure(log, "a hashing job"):
                await task
        if running:
            # Handed back at once instead of after claim_ttl: another node takes them over.
            with logged_failure(log, "releasing hashing claims at shutdown"):
                await asyncio.wait_for(self.meta.release_hash_claims(self.node_id, running), 5)
        self._pool.shutdown(wait=False, cancel_futures=True)


async def inline_hashes(
    obj: ObjectVersion, catalog: TorrentCatalog, sealing: Sealing | None
) -> PieceHashes:
    """Piece hashes of an inline version in the catalog's format, from its row, on the
    loop (a few KiB: microseconds); a sealed version's plaintext, opened with `sealing`.
    ValueError: it can have none here (SSE-C, or sealed with nothing to open it: never
    the hashes of its ciphertext)."""
    assert obj.inline is not None
    data: bytes = obj.inline
    mode = seal_mode(obj.headers)
    if mode == SSE_C:
        raise ValueError(f"{obj.version_id}: SSE-C objects have no torrent")
    if mode is not None:
        if sealing is None:
            raise ValueError(f"{obj.version_id}: encrypted, and no master key opens it")
        data = (await sealing.reader(obj, None)).read(0, obj.size)
    hasher = TorrentHasher(piece_length_for(obj.size), v1=catalog.wants_v1, v2=catalog.wants_v2)
    hasher.update(data)
    return hasher.finish()


def hash_version(
    blobs: BlobStore,
    obj: ObjectVersion,
    layout: PieceLayout,
    *,
    v1: bool,
    v2: bool,
    executor: concurrent.futures.Executor,
    progress: Callable[[int], None] | None = None,
    read: Callable[[int, int], bytes] | None = None,
) -> PieceHashes:
    """Piece hashes of a stored version (blocking): a local blob read from its file,
    anything else (inline bytes, a remote backend, `read`: a sealed version's plaintext)
    through ranged reads."""
    if read is not None:
        return hash_ranges_parallel(
            read, layout, v1=v1, v2=v2, executor=executor, progress=progress
        )
    inline = obj.inline
    if inline is not None:
        return hash_ranges_parallel(
            lambda off, n: inline[off : off + n],
            layout,
            v1=v1,
            v2=v2,
            executor=executor,
            progress=progress,
        )
    path = blobs.local_path(obj.version_id)
    if path is not None and path.exists():
        return hash_file(path, layout, v1=v1, v2=v2, executor=executor, progress=progress)
    return hash_ranges_parallel(
        lambda off, n: blobs.read(obj.version_id, off, n),
        layout,
        v1=v1,
        v2=v2,
        executor=executor,
        progress=progress,
    )
