"""Background hashing of object versions whose bytes did not stream through a hasher.

Multipart completions and copies are hashed here from the stored blob, pieces spread over a
thread pool. Concurrent `?torrent` requests for the same version share one job; jobs that did
not finish before a restart are found again at start (versions without stored hashes).

Each job is a row in `hash_jobs`, claimed by exactly one node (SELECT ... FOR UPDATE SKIP
LOCKED on PostgreSQL; SQLite's single writer makes the plain UPDATE atomic). The node renews
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

import sqlalchemy as sa
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
from s3torrent.torrent.hasher import PieceHashes, hash_file, hash_ranges_parallel
from s3torrent.torrent.pieces import PieceLayout, piece_length_for

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
jobs_table = md.hash_jobs


def add_job(conn: Connection, version_id: str, now: float) -> None:
    md.insert_if_absent(
        conn,
        jobs_table,
        {"version_id": version_id, "created_at": now, "claimed_by": None, "attempts": 0},
    )


def claim_jobs(
    conn: Connection,
    node: str,
    now: float,
    ttl: float,
    limit: int,
    version_id: str | None = None,
) -> list[str]:
    """Claim up to `limit` free or expired jobs (only `version_id`'s, if given) for node."""
    c = jobs_table.c
    pick = sa.select(c.version_id).where(
        sa.or_(c.claimed_by.is_(None), c.claimed_until < now, c.claimed_by == node),
        c.attempts < MAX_ATTEMPTS,
    )
    if version_id is not None:
        pick = pick.where(c.version_id == version_id)
    # SKIP LOCKED: nodes polling at once each get different jobs instead of queueing.
    pick = pick.order_by(c.created_at).limit(limit).with_for_update(skip_locked=True)
    ids = [str(r[0]) for r in conn.execute(pick)]
    if ids:
        conn.execute(
            jobs_table.update()
            .where(c.version_id.in_(ids))
            .values(claimed_by=node, claimed_until=now + ttl, attempts=c.attempts + 1)
        )
    return ids


def renew_claims(conn: Connection, node: str, ids: list[str], until: float) -> set[str]:
    """Extend node's claims; returns the ids it still holds."""
    c = jobs_table.c
    rows = conn.execute(
        jobs_table.update()
        .where(c.version_id.in_(ids), c.claimed_by == node)
        .values(claimed_until=until)
        .returning(c.version_id)
    )
    return {str(r[0]) for r in rows}


def release_claims(conn: Connection, node: str, ids: list[str]) -> None:
    c = jobs_table.c
    conn.execute(
        jobs_table.update()
        .where(c.version_id.in_(ids), c.claimed_by == node)
        .values(claimed_by=None, claimed_until=None)
    )


def finish_job(conn: Connection, version_id: str) -> None:
    conn.execute(jobs_table.delete().where(jobs_table.c.version_id == version_id))


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
        if (
            not self.catalog.settings.enabled
            or event.bucket in self.catalog.settings.disabled_buckets
        ):
            return
        obj = await self.db.read(lambda c: md.get_object_by_version(c, event.version_id))
        if obj is None or obj.size > self.catalog.settings.max_object_size:
            return
        found = obj

        def lookup(conn: Connection) -> PieceHashes | None:
            return load_hashes(conn, found)

        hashes = await self.db.read(lookup)
        if hashes is None:
            # Every node sees the event; the one whose claim succeeds hashes.
            await self.db.write(lambda c: add_job(c, found.version_id, self._clock()))
            await self._claim_and_start(found)

    def ensure(self, obj: md.ObjectVersion) -> asyncio.Task[PieceHashes]:
        """The hashes of obj: from our job, or from another node's once it stored them."""
        task = self._jobs.get(obj.version_id) or self._waiters.get(obj.version_id)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._claim_or_wait(obj))
            self._waiters[obj.version_id] = task
            vid = obj.version_id

            def forget(_task: asyncio.Task[PieceHashes]) -> None:
                self._waiters.pop(vid, None)

            task.add_done_callback(forget)
        return task

    async def _claim_or_wait(self, obj: md.ObjectVersion) -> PieceHashes:
        await self.db.write(lambda c: add_job(c, obj.version_id, self._clock()))
        delay = 0.05
        while True:
            task = self._jobs.get(obj.version_id) or await self._claim_and_start(obj)
            if task is not None:
                return await task
            # Another node holds the job: its hashes show up in the database when done.
            hashes = await self.db.read(lambda c: load_hashes(c, obj))
            if hashes is not None and self.catalog.has_hashes_for_format(hashes):
                return hashes
            await asyncio.sleep(delay)
            delay = min(1.0, delay * 2)

    async def _claim_and_start(self, obj: md.ObjectVersion) -> asyncio.Task[PieceHashes] | None:
        if obj.version_id in self._jobs:
            return self._jobs[obj.version_id]
        now = self._clock()
        claimed = await self.db.write(
            lambda c: claim_jobs(c, self.node_id, now, self.claim_ttl, 1, obj.version_id)
        )
        if not claimed:
            return None
        return self._start(obj)

    def _start(self, obj: md.ObjectVersion) -> asyncio.Task[PieceHashes]:
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
            with contextlib.suppress(Exception):
                held = await self.db.write(
                    lambda c, u=until: renew_claims(c, self.node_id, [version_id], u)  # type: ignore[misc]
                )
                if version_id not in held:
                    log.warning("hashing job %s: claim lost to another node", version_id)

    async def _run(self, obj: md.ObjectVersion) -> PieceHashes:
        heartbeat = asyncio.get_running_loop().create_task(self._heartbeat(obj.version_id))
        try:
            return await self._run_claimed(obj)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Let the poll (ours or another node's) try again, up to MAX_ATTEMPTS claims.
            with contextlib.suppress(Exception):
                await self.db.write(lambda c: release_claims(c, self.node_id, [obj.version_id]))
            raise
        finally:
            heartbeat.cancel()

    async def _run_claimed(self, obj: md.ObjectVersion) -> PieceHashes:
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
                finish_job(conn, obj.version_id)
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
        return hash_version(
            self.store,
            obj,
            layout,
            v1=self.catalog.wants_v1,
            v2=self.catalog.wants_v2,
            executor=self._pool,
            progress=progress,
        )

    async def resume(self, limit: int = 10_000) -> int:
        """At start: queue jobs for current versions without hashes, then poll for jobs."""
        pending = await self.db.read(
            lambda c: versions_without_hashes(c, self.catalog.settings.max_object_size, limit)
        )
        if pending:
            now = self._clock()

            def add_all(conn: Connection) -> None:
                for obj in pending:
                    add_job(conn, obj.version_id, now)

            await self.db.write(add_all)
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
        ids = await self.db.write(lambda c: claim_jobs(c, self.node_id, now, self.claim_ttl, free))
        started = 0
        for vid in ids:
            obj = await self.db.read(lambda c, v=vid: md.get_object_by_version(c, v))  # type: ignore[misc]
            if obj is None or obj.size > self.catalog.settings.max_object_size:
                await self.db.write(lambda c, v=vid: finish_job(c, v))  # type: ignore[misc]
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
            with contextlib.suppress(BaseException):
                await self._poller
        running = list(self._jobs)
        for task in [*self._jobs.values(), *self._waiters.values()]:
            task.cancel()
        for task in [*self._jobs.values(), *self._waiters.values()]:
            with contextlib.suppress(BaseException):
                await task
        if running:
            # Handed back at once instead of after claim_ttl: another node takes them over.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    self.db.write(lambda c: release_claims(c, self.node_id, running)), 5
                )
        self._pool.shutdown(wait=False, cancel_futures=True)


def hash_version(
    store: ObjectStore,
    obj: md.ObjectVersion,
    layout: PieceLayout,
    *,
    v1: bool,
    v2: bool,
    executor: concurrent.futures.Executor,
    progress: Callable[[int], None] | None = None,
) -> PieceHashes:
    """Piece hashes of a stored version (blocking): a local blob through its memory map,
    anything else (inline bytes, a remote backend) through ranged reads."""
    path = store.blobs.local_path(obj.version_id) if obj.inline is None else None
    if path is not None and path.exists():
        return hash_file(path, layout, v1=v1, v2=v2, executor=executor, progress=progress)
    return hash_ranges_parallel(
        lambda off, n: store.read_range(obj, off, n),
        layout,
        v1=v1,
        v2=v2,
        executor=executor,
        progress=progress,
    )
