"""Async access to the metadata database: reads on a small thread pool, writes group-committed.

All writes go through one writer thread. It takes every write waiting in its queue, runs each
in its own savepoint inside one transaction and commits once, so N concurrent PUTs cost one
fsync of the WAL instead of N (group commit), while each caller still learns its own result.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable, Hashable, Iterator
from typing import Any, TypeVar

from sqlalchemy.engine import Connection

from s3torrent.store import migrations
from s3torrent.store.errors import StorageFull
from s3torrent.store.loop_writer import LoopWriter, answer
from s3torrent.store.schema import create_engine, writer_temp_store
from s3torrent.store.space import storage_full
from s3torrent.store.sql import Rows, Scope, point_reads_for
from s3torrent.store.writer_turn import WriterTurn, turn_path

T = TypeVar("T")

_STOP = object()
_MAX_RETRIES = 5
# PostgreSQL: deadlock_detected, serialization_failure (nodes writing the same rows).
_TRANSIENT_SQLSTATES = frozenset({"40P01", "40001"})


def _transient(exc: BaseException) -> bool:
    orig = getattr(exc, "orig", None)
    return getattr(orig, "sqlstate", None) in _TRANSIENT_SQLSTATES


class Database:
    """The metadata database as the asyncio code sees it."""

    def __init__(
        self,
        url: str,
        *,
        max_batch: int = 256,
        read_threads: int = 4,
        loop_writes: bool = True,
        durable: bool = True,
    ) -> None:
        self.engine = create_engine(url, durable=durable)
        migrations.upgrade(self.engine)
        # Point lookups of the request path on the caller's thread (SQLite files only).
        self.point_reads = point_reads_for(self.engine)
        # SQLite files: writes from the event loop are group-committed on the loop itself
        # (see loop_writer.py); the writer thread serves everyone else.
        self._loop_writes = loop_writes and self.point_reads is not None
        self._loop_writer: LoopWriter | None = None
        # A SQLite file's writers take turns across processes (writer_turn.py): the loop's
        # writer and the writer thread each with a claim of their own.
        self._turn_path = turn_path(self.engine)
        self._writer_turn = WriterTurn(self._turn_path) if self._turn_path else None
        # Set by the composition root (SpaceReserve.release): frees reserved space when a
        # commit meets a full disk; True if it freed some, so the batch is worth another try.
        self.on_full: Callable[[], bool] | None = None
        self._closed = False
        self._max_batch = max_batch
        self._readers = concurrent.futures.ThreadPoolExecutor(
            max_workers=read_threads, thread_name_prefix="db-read"
        )
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write_loop, name="db-write", daemon=True)
        self._writer.start()

    # ---- reads ----

    async def read(self, fn: Callable[[Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._run_read, fn)

    async def lookup(self, fn: Callable[[Rows], T]) -> T:
        """Point reads (get_bucket, get_object, ...): on the calling thread where the
        engine allows it (a SQLite file), else (or while SQLite is busy) on the reader pool."""
        if self.point_reads is not None:
            try:
                return fn(self.point_reads)
            except sqlite3.OperationalError:
                pass
        return await self.read(fn)

    async def lookup_unchanged(
        self,
        key: Hashable,
        fn: Callable[[Rows], T],
        weight: Callable[[T], int],
        scope: Scope = "rows",
    ) -> T:
        """`lookup(fn)`, answered from the point reads' exact cache while no row of `scope`
        (bucket and object rows; or bucket rows alone) changed since fn last ran for `key`
        (PointReads.unchanged; fn may read only those); uncached elsewhere."""
        if self.point_reads is not None:
            try:
                return self.point_reads.unchanged(key, fn, weight, scope)
            except sqlite3.OperationalError:
                pass
        return await self.read(fn)

    def read_sync(self, fn: Callable[[Connection], T]) -> T:
        return self._run_read(fn)

    def _run_read(self, fn: Callable[[Connection], T]) -> T:
        with self.engine.connect().execution_options(sqlite_begin="") as conn:
            return fn(conn)

    def scrub_sync(self) -> None:
        """SQLite: rewrite the file without its free space (VACUUM) and empty the WAL, so
        that bytes overwritten or deleted are gone from it, not only unreachable (blocking:
        at start). Nothing on PostgreSQL, whose old row versions are its own to reclaim."""
        if self.engine.dialect.name != "sqlite":
            return
        with self.engine.connect().execution_options(sqlite_begin="") as conn:
            conn.exec_driver_sql("VACUUM")
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

    # ---- writes ----

    async def write(self, fn: Callable[[Connection], T]) -> T:
        """Run fn in the next group commit; returns once its transaction is durable.

        Raises StorageFull if the disk was too full for it, even after the reserve went."""
        try:
            if self._loop_writes:
                loop = asyncio.get_running_loop()
                if self._loop_writer is None and not self._closed:
                    self._loop_writer = LoopWriter(
                        self.engine,
                        loop,
                        self._enqueue,
                        max_batch=self._max_batch,
                        on_full=self._release_space,
                        on_commit=self._committed_here,
                        turn=WriterTurn(self._turn_path) if self._turn_path else None,
                    )
                if self._loop_writer is not None and self._loop_writer.loop is loop:
                    return await self._loop_writer.submit(fn)
            return await asyncio.wrap_future(self._enqueue(fn))
        except Exception as exc:
            _raise_if_full(exc)
            raise

    def write_sync(self, fn: Callable[[Connection], T]) -> T:
        try:
            return self._enqueue(fn).result()
        except Exception as exc:
            _raise_if_full(exc)
            raise

    def _committed_here(self) -> None:
        """A transaction of this process committed: point reads read the generation anew."""
        if self.point_reads is not None:
            self.point_reads.forget_generation()

    def _release_space(self) -> bool:
        return self.on_full is not None and self.on_full()

    def _enqueue(self, fn: Callable[[Connection], T]) -> concurrent.futures.Future[T]:
        """Queue fn for the writer thread's next group commit."""
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._queue.put((fn, fut))
        return fut

    def _write_loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            batch = [item]
            stop_after = False
            while len(batch) < self._max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop_after = True
                    break
                batch.append(nxt)
            turn = self._writer_turn
            took = turn is not None and turn.take()
            answers: list[tuple[Any, Any, BaseException | None]] = []
            try:
                self._commit_batch(batch, answers)
            finally:
                if took and turn is not None:
                    turn.give_back()
                # Answered once the turn is given back: a caller that saw its write done
                # finds the next writer free to start (another process's included).
                answer(answers)
            if stop_after:
                return

    @contextlib.contextmanager
    def _write_connection(self) -> Iterator[Connection]:
        """A pooled connection for one batch; on SQLite its savepoint journals stay in
        memory for the batch (schema.writer_temp_store) and it goes back to the pool, to
        readers too, with the default again."""
        with self.engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn:
            driver = conn.connection.driver_connection if conn.dialect.name == "sqlite" else None
            if driver is not None:
                writer_temp_store(driver, memory=True)
            try:
                yield conn
            finally:
                if driver is not None:
                    with contextlib.suppress(sqlite3.Error):  # a broken one is dropped
                        writer_temp_store(driver, memory=False)

    def _commit_batch(
        self,
        batch: list[tuple[Callable[[Connection], Any], Any]],
        answers: list[tuple[Any, Any, BaseException | None]],
        attempt: int = 0,
    ) -> None:
        """Commit the batch; each caller's answer (future, value, failure) goes to answers."""
        results: list[tuple[Any, Any, BaseException | None]] = []
        retry: list[tuple[Callable[[Connection], Any], Any]] = []
        try:
            with self._write_connection() as conn, conn.begin():
                for fn, fut in batch:
                    if not fut.running() and not fut.set_running_or_notify_cancel():
                        continue
                    sp = conn.begin_nested()
                    try:
                        value = fn(conn)
                    except BaseException as exc:  # each caller gets its own failure
                        if storage_full(exc):
                            raise  # the whole batch again, once the reserve is free
                        sp.rollback()
                        if _transient(exc) and attempt < _MAX_RETRIES:
                            # Another node's batch locked rows in the other order: our
                            # savepoint released ours; run this one again in a batch of its own.
                            retry.append((fn, fut))
                        else:
                            results.append((fut, None, exc))
                    else:
                        sp.commit()
                        results.append((fut, value, None))
        except BaseException as batch_exc:
            if attempt < _MAX_RETRIES and storage_full(batch_exc) and self._release_space():
                # The reserve is free now: the same batch again (deletes among it).
                self._commit_batch(batch, answers, attempt + 1)
                return
            for _fn, fut in batch:
                if not fut.done():
                    if not fut.running():
                        try:
                            if not fut.set_running_or_notify_cancel():
                                continue
                        except Exception:
                            continue
                    answers.append((fut, None, batch_exc))
            return
        # Only now is the transaction committed (durable): the callers may be told.
        self._committed_here()
        answers.extend(results)
        if retry:
            self._commit_batch(retry, answers, attempt + 1)

    def close(self) -> None:
        self._closed = True
        if self._loop_writer is not None:
            self._loop_writer.close()
        self._queue.put(_STOP)
        self._writer.join(timeout=30)
        if self._writer_turn is not None:
            self._writer_turn.close()
        self._readers.shutdown(wait=True)
        if self.point_reads is not None:
            self.point_reads.close()
        self.engine.dispose()


def _raise_if_full(exc: Exception) -> None:
    """The engine's many ways of saying "disk full", as the store's one error."""
    if storage_full(exc) and not isinstance(exc, StorageFull):
        raise StorageFull() from exc
