"""The object write path: stream to a temporary blob while hashing, fsync, rename, commit.

Blobs are written here; the commit goes through the metadata store, which publishes the
event that goes with it.

The metadata transaction is the commit point: before it nothing is visible, after it the
object is durable. A crash before it leaves only a temporary blob (removed on the next start);
a crash after it but before the old blob is deleted leaves an unreferenced blob (also removed
on the next start).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from s3torrent.store import rows as md
from s3torrent.store.blobs import BlobStore
from s3torrent.store.blobs.local import LocalBlobStore, close_when_idle, open_for_reading
from s3torrent.store.conditions import NO_CONDITION, WriteCondition
from s3torrent.store.errors import StorageFull, StoreError
from s3torrent.store.metastore import MetadataStore
from s3torrent.store.space import SpaceReserve, storage_full
from s3torrent.store.stream_lanes import Lane

if TYPE_CHECKING:
    from s3torrent.store.sealing import CustomerKey, Sealing

log = logging.getLogger(__name__)

T = TypeVar("T")

# Hash in ~1 MiB steps: large enough that hashlib releases the GIL and the thread hop is
# amortised, small enough that memory per upload stays bounded: each lane holds at most
# LANE_DEPTH steps waiting and one running, all lanes sharing the same buffers.
STEP = 1024 * 1024
LANE_DEPTH = 2


class StreamObserver(Protocol):
    """Something that sees every byte of an upload (MD5, a checksum, the piece hasher)."""

    def update(self, data: bytes | memoryview) -> None: ...


@dataclass(frozen=True, slots=True)
class StoredStream:
    """What streaming a body into a temporary blob produced."""

    size: int
    md5: bytes


class ObjectStore:
    """Objects = metadata rows + blobs; the one place that writes either."""

    def __init__(
        self,
        meta: MetadataStore,
        blobs: BlobStore,
        *,
        executor: concurrent.futures.Executor,
        blob_delete_delay: float = 2.0,
        space: SpaceReserve | None = None,
    ) -> None:
        self.meta = meta
        self.blobs = blobs
        self.executor = executor
        self.blob_delete_delay = blob_delete_delay
        # Blobs the last sweep_orphans found old and unreferenced: removed if the next
        # finds them so again.
        self._sweep_suspects: set[str] = set()
        # The data directory's full-disk state (None: nothing local to fill, e.g. S3 blobs).
        self.space = space
        self._pending_deletes: set[asyncio.TimerHandle] = set()
        # Encryption at rest (set by the app): opens sealed versions for every reader.
        self.sealing: Sealing | None = None

    @staticmethod
    def new_version_id() -> str:
        """A new blob's id (and its version's): random, since blob files are sharded by
        the id's first characters."""
        return secrets.token_hex(16)

    @staticmethod
    def new_inline_version_id() -> str:
        """A new version's id when its bytes live in its row (see md.new_row_version_id)."""
        return md.new_row_version_id()

    def read_range(self, obj: md.ObjectVersion, offset: int, length: int) -> bytes:
        """Bytes of an object version (blocking: call from a worker thread)."""
        if obj.inline is not None:
            return obj.inline[offset : offset + length]
        return self.blobs.read(obj.version_id, offset, length)

    async def object_chunks(
        self,
        obj: md.ObjectVersion,
        offset: int,
        length: int,
        customer: CustomerKey | None = None,
    ) -> AsyncIterator[bytes | bytearray]:
        """The bytes of an object version's range, inline or from its blob (opened, if the
        version is sealed: SSE-C needs its customer key)."""
        if self.sealing is not None and self.sealing.is_sealed(obj):
            reader = await self.sealing.reader(obj, customer)
            async for chunk in reader.chunks(self.executor, offset, length):
                yield chunk
            return
        if obj.inline is not None:
            yield obj.inline[offset : offset + length]
            return
        async for chunk in self.blob_chunks(obj.version_id, offset, length):
            yield chunk

    async def stream_to_memory(
        self,
        body: AsyncIterator[bytes],
        observers: Sequence[StreamObserver],
        *,
        max_size: int,
        on_too_large: Callable[[], Exception],
    ) -> tuple[StoredStream, bytes]:
        """A small body, hashed as it arrives and kept for its metadata row."""
        await self.check_writable()
        buf = bytearray()
        async for chunk in body:
            buf += chunk
            if len(buf) > max_size:
                raise on_too_large()
        data = bytes(buf)
        md5 = hashlib.md5(data)
        for sink in observers:
            sink.update(data)
        return StoredStream(size=len(data), md5=md5.digest()), data

    # ---- the write path ----

    async def stream_to_blob(
        self,
        body: AsyncIterator[bytes | bytearray],
        writer: Any,
        observers: Sequence[StreamObserver],
        *,
        max_size: int,
        on_too_large: Callable[[], Exception],
    ) -> StoredStream:
        """Copy body into writer, feeding every byte to MD5 and the observers, off the loop.

        The loop gathers STEP bytes at a time and hands the same buffer (no copy) to one
        lane per consumer: the writer with MD5, and each observer (piece hasher, checksum,
        payload SHA-256) on a lane of its own, so they run on separate threads at once, up
        to LANE_DEPTH steps behind the loop (see stream_lanes)."""
        md5 = hashlib.md5()
        size = 0

        def store_step(data: bytearray) -> None:
            view = memoryview(data)
            writer.write(view)
            md5.update(view)

        def observe(sink: StreamObserver) -> Callable[[bytearray], None]:
            return lambda data: sink.update(memoryview(data))

        lanes = [Lane(self.executor, store_step, LANE_DEPTH)]
        lanes += [Lane(self.executor, observe(sink), LANE_DEPTH) for sink in observers]
        buf = bytearray()
        try:
            async for chunk in body:
                size += len(chunk)
                if size > max_size:
                    raise on_too_large()
                buf += chunk
                if len(buf) >= STEP:
                    for lane in lanes:
                        await lane.put(buf)
                    buf = bytearray()  # the lanes own the full one now
            if buf:
                for lane in lanes:
                    await lane.put(buf)
            for lane in lanes:
                await lane.close()
        except BaseException:
            # Nothing may write or hash once the caller aborts the blob.
            for lane in lanes:
                await lane.abandon()
            raise
        return StoredStream(size=size, md5=md5.digest())

    async def write_blob(
        self,
        chunks: AsyncIterator[bytes | bytearray],
        observers: Sequence[StreamObserver],
        *,
        max_size: int,
        on_too_large: Callable[[], Exception],
        check: Callable[[StoredStream], T] | None = None,
        blob_id: str | None = None,
        wrap_writer: Callable[[Any], Any] | None = None,
        read_back: Callable[[int, int], None] | None = None,
    ) -> tuple[str, StoredStream, T | None]:
        """Stream chunks into a new durable blob under a fresh id (or `blob_id`).

        `check` sees the finished stream (size, MD5) before the commit and may raise to
        abort it; whatever it returns is handed back. `wrap_writer` (encryption at rest)
        wraps the blob writer. `read_back` (only where `reads_back`, without `wrap_writer`)
        is called off the loop with a read-only descriptor of the written bytes and their
        size while the commit makes them durable, and the blob is kept only if both
        succeed. Nothing is left behind on failure.
        """
        await self.check_writable()
        blob_id = blob_id or self.new_version_id()
        with self._full_disk_refused():
            writer = await asyncio.get_running_loop().run_in_executor(
                self.executor, self.blobs.new_writer, blob_id
            )
            if wrap_writer is not None:
                writer = wrap_writer(writer)
        try:
            with self._full_disk_refused():
                stored = await self.stream_to_blob(
                    chunks, writer, observers, max_size=max_size, on_too_large=on_too_large
                )
                checked = check(stored) if check is not None else None
                commit = (
                    self.commit_blob(writer, blob_id)
                    if read_back is None
                    else self._commit_reading_back(writer, blob_id, stored.size, read_back)
                )
                await self._see_commit_through(asyncio.ensure_future(commit), blob_id)
        except BaseException:
            await self.abort_blob(writer)
            raise
        return blob_id, stored, checked

    async def _see_commit_through(self, commit: asyncio.Future[None], blob_id: str) -> None:
        """Wait for a commit, which runs in a thread nothing can stop. If the request is
        cancelled meanwhile, the commit still ends before anything is undone, and a blob
        it committed is deleted: a cancelled write leaves nothing behind. Before, the
        abort ran beside the committing thread: a blob renamed into place during it was
        left with no row, and both could close the writer's descriptor, the second
        time perhaps another file's by then."""
        try:
            await asyncio.shield(commit)
        except asyncio.CancelledError:
            while not commit.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(commit)
            if not commit.cancelled() and commit.exception() is None:
                await self.delete_blobs([blob_id])
            raise

    @property
    def reads_back(self) -> bool:
        """Whether `write_blob` can read a blob back while its commit waits for the disk
        (a local file, fsynced: without the fsync there is no wait to fill)."""
        return isinstance(self.blobs, LocalBlobStore) and self.blobs.fsync

    async def _commit_reading_back(
        self, writer: Any, blob_id: str, size: int, read_back: Callable[[int, int], None]
    ) -> None:
        # The descriptor is opened before the commit renames the file, and closed when the
        # reading thread is done (even if this request is cancelled meanwhile): a thread
        # must never read a descriptor number that was closed and reused.
        fd = os.open(writer.tmp_path, os.O_RDONLY)
        reading = self.executor.submit(read_back, fd, size)
        reading.add_done_callback(lambda _: os.close(fd))
        committed, read = await asyncio.gather(
            self.commit_blob(writer, blob_id), asyncio.wrap_future(reading), return_exceptions=True
        )
        if isinstance(committed, BaseException):
            raise committed
        if isinstance(read, BaseException):
            # Committed already: the blob must go, as a failed write leaves nothing behind.
            await self.delete_blobs([blob_id])
            raise read

    async def check_writable(self) -> None:
        """Refuse new object data (StorageFull) while the disk is full."""
        if self.space is not None and self.space.full:
            await asyncio.get_running_loop().run_in_executor(
                self.executor, self.space.check_writable
            )

    @contextlib.contextmanager
    def _full_disk_refused(self) -> Iterator[None]:
        """A blob write that meets a full disk: refuse further data until space returns, and
        tell the client so (StorageFull), never as an internal error."""
        try:
            yield
        except Exception as exc:
            if not storage_full(exc):
                raise
            if self.space is not None:
                self.space.mark_full()
            if isinstance(exc, StorageFull):
                raise
            raise StorageFull() from exc

    async def commit_blob(self, writer: Any, version_id: str) -> None:
        await asyncio.get_running_loop().run_in_executor(self.executor, writer.commit, version_id)

    async def abort_blob(self, writer: Any) -> None:
        await asyncio.get_running_loop().run_in_executor(self.executor, writer.abort)

    async def blob_chunks(self, blob_id: str, offset: int, length: int) -> AsyncIterator[bytes]:
        """The bytes of a stored blob range, read off the loop in STEP pieces (copies).

        A local blob is opened once for the whole range, so a version overwritten or
        deleted meanwhile (its blob deleted after blob_delete_delay) is still read to the
        end: until 2026-12-07 each piece opened the blob again, and a CopyObject or
        UploadPartCopy of a source overwritten meanwhile failed with NoSuchKey once its
        blob was gone. A remote blob is read by id, piece by piece, as before."""
        loop = asyncio.get_running_loop()
        end = offset + length
        path = self.blobs.local_path(blob_id)
        fd = None
        if path is not None:
            fd = await loop.run_in_executor(self.executor, open_for_reading, path)
        pending: concurrent.futures.Future[bytes] | None = None
        try:
            while offset < end:
                n = min(STEP, end - offset)
                if fd is None:
                    pending = self.executor.submit(self.blobs.read, blob_id, offset, n)
                else:
                    pending = self.executor.submit(os.pread, fd, n, offset)
                data = await asyncio.wrap_future(pending)
                pending = None
                if len(data) != n:
                    raise FileNotFoundError(f"blob {blob_id} is shorter than expected")
                yield data
                offset += n
        finally:
            if fd is not None:
                close_when_idle(fd, pending)

    async def concat_blobs(self, segments: Sequence[tuple[str, int]], version_id: str) -> None:
        """Write blobs (id, size) end to end into a new blob named version_id, off the loop.

        Writers copy inside the backend (copy_file_range: in the kernel, sharing extents on
        reflink file systems; UploadPartCopy on S3) so the bytes never pass through Python.
        """

        def run() -> None:
            writer = self.blobs.new_writer(version_id)
            try:
                for blob_id, size in segments:
                    writer.append_blob(blob_id, 0, size)
                writer.commit(version_id)
            except BaseException:
                writer.abort()
                raise

        await self.check_writable()
        with self._full_disk_refused():
            await asyncio.get_running_loop().run_in_executor(self.executor, run)

    async def delete_blobs(self, blob_ids: list[str]) -> None:
        """Delete blobs no row references any more (part blobs, a write that lost)."""
        loop = asyncio.get_running_loop()
        for blob_id in blob_ids:
            await loop.run_in_executor(self.executor, self.blobs.delete, blob_id)

    def delete_blob_later(self, blob_id: str) -> None:
        """Delete a blob that is no longer referenced, after readers of it had time to finish."""
        self._delete_blob_later(blob_id)

    async def publish_version(
        self,
        obj: md.ObjectVersion,
        hashes: md.TorrentHashes | None = None,
        condition: WriteCondition = NO_CONDITION,
    ) -> md.Committed:
        """The commit point: make obj current (with its torrent hashes, if computed);
        returns it as stored (versioned or the null version)."""
        try:
            committed = await self.meta.commit_version(obj, hashes, condition)
        except StoreError:  # no bucket any more, a write condition that failed, a lock
            if obj.inline is None:
                await asyncio.get_running_loop().run_in_executor(
                    self.executor, self.blobs.delete, obj.version_id
                )
            raise
        self.release(committed.freed)
        return committed

    def release(self, freed: Sequence[str]) -> None:
        """After a commit: blobs no row references go once their readers are done. A
        version that became noncurrent keeps its blob: only deleting it frees it."""
        for blob_id in freed:
            self._delete_blob_later(blob_id)

    async def delete(
        self,
        bucket: str,
        key: str,
        condition: WriteCondition = NO_CONDITION,
        owner_id: str = "",
    ) -> md.Removed:
        """DeleteObject without a version id (a delete marker in a versioned bucket)."""
        removed = await self.meta.delete_object(bucket, key, condition, owner_id)
        self.release(removed.freed)
        return removed

    async def delete_version(
        self,
        bucket: str,
        key: str,
        s3_version_id: str,
        bypass_governance: bool = False,
        noncurrent: str | None = None,
        condition: WriteCondition = NO_CONDITION,
    ) -> md.Removed:
        """Remove one version for good (object lock permitting); its blob goes. `noncurrent`
        (the lifecycle worker): only the version with this store id, only while noncurrent.
        `condition`: If-Match on that version (DeleteObject ?versionId=)."""
        removed = await self.meta.delete_version(
            bucket, key, s3_version_id, bypass_governance, noncurrent, condition
        )
        self.release(removed.freed)
        return removed

    def _delete_blob_later(self, version_id: str) -> None:
        # Readers that looked the old version up a moment ago still open its blob; they
        # retry the lookup if it is gone, and the delay makes that rare.
        loop = asyncio.get_running_loop()

        def run() -> None:
            self._pending_deletes.discard(handle)
            loop.run_in_executor(self.executor, self.blobs.delete, version_id)

        handle = loop.call_later(self.blob_delete_delay, run)
        self._pending_deletes.add(handle)

    def flush_pending_deletes(self) -> None:
        """At shutdown: drop what was scheduled, undeleted. The next start's cleanup deletes
        those blobs (no row names them); deleting them now could cut a read another worker
        still has under way, and a crash leaves them to the same cleanup."""
        for handle in list(self._pending_deletes):
            handle.cancel()
        self._pending_deletes.clear()

    def cleanup_orphans(self) -> tuple[int, int]:
        """At start: drop temporary blobs and blobs that no metadata row references."""
        tmp = self.blobs.clean_temporary()
        orphans = self._unreferenced(self.blobs.list_ids())
        for vid in orphans:
            self.blobs.delete(vid)
        if tmp or orphans:
            log.info("startup cleanup: %d temporary and %d orphan blobs removed", tmp, len(orphans))
        return tmp, len(orphans)

    def _unreferenced(self, ids: list[str]) -> set[str]:
        """Those of these blob ids no metadata row references (read after they were listed:
        a row committed meanwhile counts)."""
        if not ids:
            return set()
        return set(ids) - self.meta.referenced_blob_ids()

    def sweep_orphans(self, grace: float) -> int:
        """While others write: drop the blobs that no metadata row references, put in place
        more than `grace` seconds ago and found so by the previous sweep too; return how
        many. A blob is renamed into place a moment before its row is committed, so one
        younger than the grace may be a write in flight, of any process or node; older and
        unreferenced twice in a row, it is one a writer that died left (a worker killed
        between its rename and its commit, or before its delete of a blob it had freed),
        which until 2026-12-08 stayed until a fresh start of the whole server. Also what
        failed writes left past the grace (an S3 backend's multipart upload whose abort
        failed too, which had stayed, paid for, until a fresh start as well)."""
        failed = self.blobs.clean_failed()
        if failed:
            log.info("orphan sweep: %d unfinished writes of failed uploads removed", failed)
        suspects = self._unreferenced(self.blobs.list_ids(older_than=time.time() - grace))
        doomed = suspects & self._sweep_suspects
        self._sweep_suspects = suspects - doomed
        for vid in doomed:
            self.blobs.delete(vid)
        if doomed:
            log.info("orphan sweep: %d blobs no row references removed", len(doomed))
        return len(doomed)

    def cleanup_abandoned(self) -> int:
        """At the start of a worker started again while the others write: drop temporary
        blobs of writers that died (its predecessor's uploads cut short). Orphan blobs are
        left to a fresh start: a live worker's blob is stored a moment before its row is."""
        tmp = self.blobs.clean_abandoned()
        if tmp:
            log.info("startup cleanup: %d temporary blobs of ended writers removed", tmp)
        return tmp


def now() -> float:
    return time.time()
