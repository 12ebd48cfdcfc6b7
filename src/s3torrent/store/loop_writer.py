"""Group commit on the event loop's thread, for a SQLite file.

SQLite statements on pages in memory take microseconds; what costs is handing each write to
a writer thread and back: a future per caller, a wake-up per result, and a GIL handed to and
fro around every statement (sqlite3 releases it for each step), which under load stalls the
writer behind the busy loop for up to a switch interval each time. So on SQLite the writes
themselves run here, on the loop. The COMMIT (the WAL write and its fsync, the part that
waits for the disk) goes to a thread of its own, so the loop serves other requests
meanwhile; except while other writers wait for the turn (another worker's batches), and
recent commits returned within LOOP_COMMIT_LIMIT: then it runs here, because the hand-off
to a thread and back (two GIL hand-overs and a loop wake-up) kept the turn from the other
writer longer than the commit itself. A slower disk's commits stay on the thread, so the
loop never stops for long; one in PROBE_EVERY of them is timed on the loop again, since a
thread's timing includes its wait for the GIL.

The protocol is the writer thread's (database.py): every write waiting when a batch starts
runs in its own savepoint of one transaction, the transaction commits once, and each caller
learns its own result only after the commit is durable. While a commit is in flight, new
writes wait and form the next batch.

Writers of several processes (workers) take turns (writer_turn.py): a batch first takes the
turn, waiting for it on a thread if another writer holds it, so it starts the moment that
writer's commit returns; the committing thread gives the turn back right after COMMIT. If
the write lock is held all the same (a writer outside this code), BEGIN IMMEDIATE is tried
again shortly, and after a while the batch goes to the writer thread, which may wait; the
loop never does.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import sqlite3
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.engine import Connection, Engine

from s3torrent.store.schema import writer_temp_store
from s3torrent.store.space import storage_full
from s3torrent.store.writer_turn import TURN_WAIT_LIMIT, WriterTurn

log = logging.getLogger(__name__)

T = TypeVar("T")

# While another process holds the write lock although this writer has the turn (a writer
# outside this code), a batch tries BEGIN again this often, on the loop, growing meanwhile;
# after BUSY_RETRIES it goes to the writer thread, which waits. Retrying keeps the cheap path
# (and the connection: a failed BEGIN leaves nothing to undo).
BUSY_RETRY_DELAY = 0.001
BUSY_RETRIES = 100

# A COMMIT runs on the loop while the running average of commits stays within this (seconds);
# above it, on the commit thread. Measured 2026-12-06 (2 cores, a virtio disk): commits of
# 4 KiB PUT batches take 0.3-0.6 ms, 1-5 ms when they checkpoint the WAL (about 1 in 20).
LOOP_COMMIT_LIMIT = 0.001
# The weight of the newest commit in the average: one checkpoint's few milliseconds send the
# next two or three commits to the thread, not more.
COMMIT_AVERAGE_WEIGHT = 0.2
# The turn counts as contended while one of the last CONTENDED_BATCHES batches found it
# taken by another writer; uncontended, COMMIT stays on the thread (the loop overlaps it).
CONTENDED_BATCHES = 64
# While commits go to the thread, every PROBE_EVERY-th is timed on the loop again (a
# thread's timing includes its wait for the GIL, so it may stay above the limit on a disk
# that is quick again; on a slow disk this is the one commit that stops the loop).
PROBE_EVERY = 128

# (write function, its caller's future)
_Item = tuple[Callable[[Connection], Any], "asyncio.Future[Any]"]


class LoopWriter:
    """Group-committed writes on one loop, one connection, one commit thread."""

    def __init__(
        self,
        engine: Engine,
        loop: asyncio.AbstractEventLoop,
        fallback: Callable[[Callable[[Connection], Any]], concurrent.futures.Future[Any]],
        *,
        max_batch: int,
        on_full: Callable[[], bool] | None = None,
        on_commit: Callable[[], None] | None = None,
        turn: WriterTurn | None = None,
    ) -> None:
        self.loop = loop
        # Taken before BEGIN, given back after COMMIT (writer_turn.py); None: no turns.
        self._turn = turn
        # The wait for the turn in flight, if any (the batch is back in _pending meanwhile).
        self._turn_wait: concurrent.futures.Future[None] | None = None
        # Told of every commit, before its callers are (Database: point reads re-read).
        self._on_commit = on_commit
        # Frees reserved space when a batch meets a full disk (True: worth another try).
        self._on_full = on_full
        self._engine = engine
        self._fallback = fallback
        self._max_batch = max_batch
        self._pending: list[_Item] = []
        self._busy = False
        self._busy_retries = 0
        self._closed = False
        self._conn: Connection | None = None
        self._committer = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="db-commit"
        )
        # The running average of COMMIT's duration, and the commits sent to the thread since
        # the last one timed on the loop.
        self.commit_average = 0.0
        self._off_loop = 0
        # Batches begun, and the last one that found the turn taken by another writer.
        self._batches = 0
        self._contended_at = -CONTENDED_BATCHES - 1

    def submit(self, fn: Callable[[Connection], T]) -> asyncio.Future[T]:
        fut: asyncio.Future[T] = self.loop.create_future()
        if self._closed:
            self._hand_over([(fn, fut)])
            return fut
        self._pending.append((fn, fut))
        if not self._busy:
            self._busy = True
            # Not now: writers arriving in this same turn of the loop join the batch.
            self.loop.call_soon(self._start_batch)
        return fut

    # ---- one batch ----

    def _connection(self) -> tuple[Connection, Any]:
        if self._conn is None:
            # No BEGIN from SQLAlchemy: this class issues BEGIN IMMEDIATE itself.
            conn = self._engine.connect().execution_options(sqlite_begin="")
            driver = conn.connection.driver_connection
            assert driver is not None
            # Never wait for another process's write lock on the loop (see _start_batch).
            driver.execute("PRAGMA busy_timeout=0")
            # This connection only ever writes: its savepoints' journals stay in memory.
            writer_temp_store(driver, memory=True)
            self._conn = conn
        return self._conn, self._conn.connection.driver_connection

    def _start_batch(self) -> None:
        batch = self._pending[: self._max_batch]
        del self._pending[: self._max_batch]
        batch = [(fn, fut) for fn, fut in batch if not fut.cancelled()]
        if not batch:
            self._next()
            return
        if not self._take_turn():
            self._pending[:0] = batch  # it starts when the turn is ours (_turn_granted)
            return
        try:
            conn, driver = self._connection()
            driver.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            self._give_back()
            # Another process writes (another worker, the CLI, a second server on the
            # file): try again shortly, then let the writer thread wait for the lock
            # instead of the loop.
            locked = exc.sqlite_errorcode == sqlite3.SQLITE_BUSY
            if locked and not self._closed and self._busy_retries < BUSY_RETRIES:
                self._busy_retries += 1
                self._pending[:0] = batch
                self.loop.call_later(BUSY_RETRY_DELAY, self._retry_batch)
                return
            self._busy_retries = 0
            if not locked:
                self._reset()
            self._hand_over(batch)
            self._next()
            return
        self._busy_retries = 0
        results: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        try:
            for fn, fut in batch:
                driver.execute("SAVEPOINT w")
                try:
                    value = fn(conn)
                except Exception as exc:  # each caller gets its own failure
                    if storage_full(exc):
                        raise  # the whole batch again, once the reserve is free
                    driver.execute("ROLLBACK TO w")
                    driver.execute("RELEASE w")
                    results.append((fut, None, exc))
                else:
                    driver.execute("RELEASE w")
                    results.append((fut, value, None))
        except BaseException as exc:
            # The transaction itself failed (disk, corruption): nobody's write happened.
            self._rollback()
            self._give_back()
            if not self._retried_after_full(exc, batch):
                for _fn, fut in batch:
                    _fail(fut, exc)
            self._next()
            if not isinstance(exc, Exception):
                raise
            return
        if self._commit_here():
            try:
                self._timed(_commit(driver, self._turn))
            except Exception as exc:
                self._committed(exc, batch, results)
            else:
                self._committed(None, batch, results)
            return
        committing = self.loop.run_in_executor(self._committer, _commit, driver, self._turn)
        committing.add_done_callback(lambda done: self._committed_off_loop(done, batch, results))

    # ---- where COMMIT runs ----

    def commits_on_loop(self) -> bool:
        """Whether the next COMMIT would run on the loop: other writers wait for the turn,
        and the recent commits were quick."""
        if self._batches - self._contended_at > CONTENDED_BATCHES:
            return False
        return self.commit_average <= LOOP_COMMIT_LIMIT or self._off_loop >= PROBE_EVERY

    def _commit_here(self) -> bool:
        if self.commits_on_loop():
            self._off_loop = 0
            return True
        self._off_loop += 1
        return False

    def _timed(self, seconds: float) -> None:
        self.commit_average += (seconds - self.commit_average) * COMMIT_AVERAGE_WEIGHT

    # ---- the turn ----

    def _take_turn(self) -> bool:
        """True: this batch may begin (the turn is ours, or we go on without one). False:
        the turn is being waited for; _turn_granted starts the batch."""
        self._batches += 1
        turn = self._turn
        if turn is None or turn.try_take():
            return True
        self._contended_at = self._batches
        waiting = turn.request()
        if waiting is None:  # an abandoned wait is still in flight: without the turn
            return True
        self._turn_wait = waiting
        late = self.loop.call_later(TURN_WAIT_LIMIT, self._turn_late, waiting)
        granted = asyncio.wrap_future(waiting, loop=self.loop)
        granted.add_done_callback(lambda done: self._turn_granted(done, waiting, late))
        return False

    def _turn_granted(
        self,
        done: asyncio.Future[None],
        waiting: concurrent.futures.Future[None],
        late: asyncio.TimerHandle,
    ) -> None:
        if self._turn_wait is not waiting:
            return  # abandoned (_turn_late): the batch went on without it
        self._turn_wait = None
        late.cancel()
        if not done.cancelled() and (exc := done.exception()) is not None:
            log.error("the write turn failed (%s); writing without turns", exc)
            self._turn = None
        if self._closed:
            self._give_back()
            self._busy = False
            self._hand_over(self._pending)
            self._pending = []
            return
        self._start_batch()

    def _turn_late(self, waiting: concurrent.futures.Future[None]) -> None:
        """The turn's holder kept it for TURN_WAIT_LIMIT: go on without it (SQLite's lock
        still decides); it is given back as soon as it is granted."""
        if self._turn_wait is not waiting or self._turn is None:
            return
        log.warning("waited %.1f s for the write turn; writing without it", TURN_WAIT_LIMIT)
        self._turn_wait = None
        self._turn.abandon(waiting)
        if self._closed:
            self._busy = False
            self._hand_over(self._pending)
            self._pending = []
            return
        self._start_batch()

    def _give_back(self) -> None:
        if self._turn is not None:
            self._turn.give_back()

    def _retried_after_full(self, exc: BaseException, batch: list[_Item]) -> bool:
        """A full disk: free the reserve and queue the batch first again, if that freed any
        (a second failure finds no reserve left and fails the batch)."""
        if not storage_full(exc) or self._on_full is None or not self._on_full():
            return False
        self._pending[:0] = [(fn, fut) for fn, fut in batch if not fut.done()]
        return True

    def _committed_off_loop(
        self,
        done: asyncio.Future[float],
        batch: list[_Item],
        results: list[tuple[asyncio.Future[Any], Any, BaseException | None]],
    ) -> None:
        exc = done.exception()
        if exc is None:
            self._timed(done.result())
        self._committed(exc, batch, results)

    def _committed(
        self,
        exc: BaseException | None,
        batch: list[_Item],
        results: list[tuple[asyncio.Future[Any], Any, BaseException | None]],
    ) -> None:
        if exc is not None:
            self._rollback()
            if not self._retried_after_full(exc, batch):
                for fut, _value, _failure in results:
                    _fail(fut, exc)
        else:
            assert self._conn is not None
            self._conn.commit()  # SQLAlchemy's view: no transaction (nothing left to do)
            if self._on_commit is not None:
                self._on_commit()
            answer(results)
        self._next()

    def _next(self) -> None:
        if self._pending and not self._closed:
            self.loop.call_soon(self._start_batch)
        else:
            self._busy = False
            if self._closed and self._pending:
                self._hand_over(self._pending)
                self._pending = []

    def _retry_batch(self) -> None:
        if self._closed:  # closed meanwhile: the writer thread takes what waits
            self._busy = False
            self._hand_over(self._pending)
            self._pending = []
            return
        self._start_batch()

    def _hand_over(self, batch: list[_Item]) -> None:
        """Run these writes on the writer thread instead (it waits for the lock)."""
        for fn, fut in batch:
            if fut.done():
                continue
            wrapped = asyncio.wrap_future(self._fallback(fn), loop=self.loop)
            wrapped.add_done_callback(lambda w, f=fut: _copy(w, f))  # type: ignore[misc]

    def _rollback(self) -> None:
        try:
            if self._conn is not None:
                driver = self._conn.connection.driver_connection
                if driver is not None and driver.in_transaction:
                    driver.execute("ROLLBACK")
                self._conn.rollback()
        except Exception:
            log.exception("rollback failed; reconnecting")
            self._reset()

    def _reset(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.invalidate()
                conn.close()
            except Exception:
                log.debug("closing the loop writer's connection failed", exc_info=True)

    def close(self) -> None:
        """Stop taking batches; what is still queued goes to the writer thread."""
        self._closed = True
        if (not self._busy or self._turn_wait is not None) and self._pending:
            # Waiting for the turn counts as idle: the writer thread takes what waits.
            self._hand_over(self._pending)
            self._pending = []
        self._committer.shutdown(wait=True)
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._turn is not None:
            self._turn.close()


def _commit(driver: Any, turn: WriterTurn | None) -> float:
    """COMMIT, then give the turn back at once (the next writer starts): how long it took."""
    started = time.perf_counter()
    try:
        driver.execute("COMMIT")
    finally:
        if turn is not None:
            turn.give_back()
    return time.perf_counter() - started


def _copy(src: asyncio.Future[Any], dst: asyncio.Future[Any]) -> None:
    if dst.done():
        return
    if src.cancelled():
        dst.cancel()
    elif (exc := src.exception()) is not None:
        dst.set_exception(exc)
    else:
        dst.set_result(src.result())


def answer(results: list[tuple[Any, Any, BaseException | None]]) -> None:
    """Give each caller its (future, value, failure), skipping futures already done (an
    asyncio future its caller cancelled; a concurrent one that could not start)."""
    for fut, value, failure in results:
        if fut.done():
            continue
        if failure is not None:
            fut.set_exception(failure)
        else:
            fut.set_result(value)


def _fail(fut: asyncio.Future[Any], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)
