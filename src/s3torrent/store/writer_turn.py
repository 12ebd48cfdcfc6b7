"""Whose turn it is to write a SQLite file, across the processes that share it.

SQLite has one write lock per database file and no way to wait for it but to poll: a writer
that finds it held sleeps and tries again. The event loop's writer (loop_writer.py) cannot
block, so it tried again every millisecond, and the loop's timers have millisecond
resolution: with two workers taking turns at a lock held about 0.8 ms at a time, each batch
waited about 0.76 ms for a lock free after 0.4 on average, and the loops sat idle meanwhile.

A turn is an exclusive `flock` on a file beside the database (`<database>-writer`). Every
writer of this code takes the turn before `BEGIN IMMEDIATE` and gives it back once its
transaction ended, so a writer waiting for the turn wakes the moment the other one's commit
returns, and the kernel gives the lock back when its holder dies (even by SIGKILL).

The turn is advice, never the guard: SQLite's own lock still decides. A writer outside this
code (the sqlite3 shell, a backup) takes no turn and meets SQLITE_BUSY as before. A writer
that waits longer than `TURN_WAIT_LIMIT` for the turn (its holder stopped, say) goes on
without it, and the turn it asked for is given back as soon as the kernel grants it.
"""

from __future__ import annotations

import concurrent.futures
import fcntl
import logging
import os
import queue
import threading

from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

# How long a writer waits for the turn before going on without it (SQLite's lock still
# decides). A turn is held for one batch's statements and its commit: milliseconds.
TURN_WAIT_LIMIT = 2.0


class WriterTurn:
    """One writer's claim on the turn (each writer its own: a flock belongs to an open file,
    so two claims of one process exclude each other as two processes' do). One writer uses
    it at a time: take, write, give back."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None
        self._pid = 0
        self._held = False
        self._closed = False
        # A wait for the kernel's grant still in flight (on the taker thread); while it is,
        # this claim takes nothing else: the grant may land at any moment.
        self._waiting: concurrent.futures.Future[None] | None = None
        self._abandoned = False
        self._broken = False
        self._mutex = threading.Lock()
        # Blocking waits for the kernel's grant run on this thread, one at a time. A daemon:
        # a wait for a holder that never lets go must not keep the process from exiting.
        self._requests: queue.SimpleQueue[tuple[int, concurrent.futures.Future[None]] | None]
        self._requests = queue.SimpleQueue()
        self._taker: threading.Thread | None = None

    @property
    def held(self) -> bool:
        return self._held

    def _file(self) -> int:
        if self._fd is None or self._pid != os.getpid():
            # Opened by the process that takes the turn: a descriptor inherited across a
            # fork would share its lock with the parent's.
            # Read-only is enough for a flock, so a CLI run by another user who may read
            # the data directory takes turns too.
            self._fd = os.open(self.path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
            self._pid = os.getpid()
        return self._fd

    def try_take(self) -> bool:
        """Take the turn if nobody holds it; never waits."""
        with self._mutex:
            if self._held:
                return True
            if self._closed or self._broken or self._waiting is not None:
                return False
            try:
                fcntl.flock(self._file(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            except OSError as exc:
                self._break(exc)
                return False
            self._held = True
            return True

    def request(self) -> concurrent.futures.Future[None] | None:
        """Wait for the turn on the taker thread: the future is done once the turn is ours
        (None: go on without: this claim is closed or unusable, or an abandoned wait is
        still in flight)."""
        with self._mutex:
            if self._closed or self._broken or self._waiting is not None:
                return None
            try:
                fd = self._file()
            except OSError as exc:
                self._break(exc)
                return None
            if self._taker is None:
                self._taker = threading.Thread(target=self._take_loop, name="db-turn", daemon=True)
                self._taker.start()
            self._waiting = concurrent.futures.Future()
            self._requests.put((fd, self._waiting))
            return self._waiting

    def _break(self, exc: OSError) -> None:
        """The turn file cannot be opened or locked (permissions, a file system without
        locks): this claim writes without turns from now on, as writers outside this code do."""
        self._broken = True
        log.error("the write turn %s is unusable (%s); writing without turns", self.path, exc)

    def _take_loop(self) -> None:
        while (request := self._requests.get()) is not None:
            fd, waiting = request
            try:
                self._take(fd)
            except BaseException as exc:
                if isinstance(exc, OSError):  # no locks here after all: as _file's failure
                    with self._mutex:
                        self._break(exc)
                waiting.set_exception(exc)
            else:
                waiting.set_result(None)

    def _take(self, fd: int) -> None:
        granted = False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # the kernel's wait: woken the moment it is free
            granted = True
        finally:
            with self._mutex:
                self._waiting = None
                if granted:
                    self._held = True
                    if self._closed or self._abandoned:
                        self._release()
                    if self._closed:
                        self._close_file()
                self._abandoned = False

    def abandon(self, waiting: concurrent.futures.Future[None]) -> None:
        """The caller went on without the turn it asked for: give it back once granted."""
        with self._mutex:
            if self._waiting is waiting:
                self._abandoned = True
            else:  # granted meanwhile
                self._release()

    def take(self, limit: float = TURN_WAIT_LIMIT) -> bool:
        """For a thread that may block: the turn, waiting up to `limit` seconds (False: not
        granted in time, and given back when it is; go on without it)."""
        if self.try_take():
            return True
        waiting = self.request()
        if waiting is None:
            return False
        try:
            waiting.result(timeout=limit)
        except concurrent.futures.TimeoutError:
            log.warning(
                "waited %.1f s for the write turn on %s; going on without", limit, self.path
            )
            self.abandon(waiting)
            return False
        except OSError:
            log.exception("taking the write turn failed; going on without")
            return False
        return True

    def give_back(self) -> None:
        """End this writer's turn (if it holds it); from any thread."""
        with self._mutex:
            self._release()

    def _release(self) -> None:
        if self._held and self._fd is not None:
            self._held = False
            try:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            except OSError:
                log.exception("giving back the write turn failed")

    def _close_file(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        """Give the turn back and close the file. A wait still in flight is not waited for:
        it gives the turn back, and closes the file, once granted."""
        with self._mutex:
            self._closed = True
            self._release()
            if self._waiting is None:
                self._close_file()
        self._requests.put(None)


def turn_path(engine: Engine) -> str | None:
    """The turn file of a SQLite database file (None for other engines and memory)."""
    if engine.dialect.name != "sqlite":
        return None
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return f"{database}-writer"
