"""A full disk: recognising it, and the reserve file that keeps deletes possible on one.

A metadata commit needs a little free space even to delete (SQLite appends the change to its
WAL before it can shrink anything; opening the database needs room for its -shm file). On a
disk filled to the last block by uploads, nothing could then be deleted through the API and
the server could not even start. So the data directory holds a reserve file, allocated while
there is room. A metadata commit that meets a full disk releases it and tries again: deletes
and small metadata changes commit from the reserve, while new object data is refused (507
InsufficientStorage) until space returns, the reserve is allocated again, and as much again
is free.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
import time
from pathlib import Path

from s3torrent.store.errors import StorageFull

log = logging.getLogger(__name__)

_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_SQLITE_FULL = 13  # the primary result code (extended codes keep it in the low byte)
_SQLITE_IOERR_SHMSIZE = 4874  # the -shm file could not grow: no space for it
_PG_DISK_FULL = "53100"
_BLOCK = 4096


def storage_full(exc: BaseException) -> bool:
    """Whether exc (an OSError, a sqlite3 error, or SQLAlchemy's wrapper of either, or of a
    PostgreSQL error) means the disk or quota is full."""
    if isinstance(exc, StorageFull):
        return True
    if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
        return True
    inner = getattr(exc, "orig", None) or exc
    code = getattr(inner, "sqlite_errorcode", None)
    if isinstance(code, int) and (code & 0xFF == _SQLITE_FULL or code == _SQLITE_IOERR_SHMSIZE):
        return True
    return getattr(inner, "sqlstate", None) == _PG_DISK_FULL


class SpaceReserve:
    """The reserve file in the data directory, and whether new object data is refused.

    `full` is set when a blob write or a metadata commit meets a full disk (and at start when
    the reserve cannot be allocated); while it is set, `check_writable` refuses new data,
    looking again for space at most every `recheck_interval` seconds.
    """

    def __init__(self, path: Path, size: int, *, recheck_interval: float = 1.0) -> None:
        self.path = path
        self.size = size
        self.recheck_interval = recheck_interval
        self.full = False
        self._checked_at = 0.0
        self._lock = threading.Lock()  # the writer thread and the loop's executor both call in

    # ---- the reserve file ----

    def allocate(self) -> bool:
        """Make the reserve whole (blocking); False if the disk has no room for it."""
        if self.size <= 0:
            return True
        with self._lock:
            try:
                if self.path.stat().st_size >= self.size:
                    return True
            except FileNotFoundError:
                pass
            tmp = self.path.with_name(self.path.name + ".tmp")
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                try:
                    # Blocks really allocated, not a sparse file: the space is ours.
                    os.posix_fallocate(fd, 0, self.size)
                finally:
                    os.close(fd)
                os.replace(tmp, self.path)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                if exc.errno in _FULL_ERRNOS:
                    return False
                raise
            return True

    def release(self) -> bool:
        """Give the reserve back to the disk (blocking); False if there was none to give."""
        if not self._drop():
            return False
        log.warning(
            "storage full: released the %d MiB reserve so deletes can commit; "
            "new object data is refused until space returns",
            self.size >> 20,
        )
        return True

    def put_back(self) -> int:
        """At a clean stop, with the database closed: make a released or partial reserve as
        whole as the disk has room for (blocking), so the next start can open the database
        even if the disk fills up to the last block meanwhile. Returns the reserve's size.

        While serving, released reserve space stays free for metadata commits; only a stop
        takes it back. A partial reserve is worth keeping: opening the database needs tens
        of KiB, not the whole reserve."""
        if self.size <= 0:
            return 0
        with self._lock:
            try:
                have = self.path.stat().st_size
            except FileNotFoundError:
                have = 0
            want = min(self.size, have + self.free_bytes())
            want -= want % _BLOCK
            while want > have:
                try:
                    fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
                    try:
                        os.posix_fallocate(fd, 0, want)
                    finally:
                        os.close(fd)
                    return want
                except OSError as exc:
                    if exc.errno not in _FULL_ERRNOS:
                        log.warning("could not put the space reserve back: %s", exc)
                        return have
                    want = (want + have) // 2 // _BLOCK * _BLOCK  # less, and try again
            return have

    def _drop(self) -> bool:
        with self._lock:
            self.full = True
            self._checked_at = time.monotonic()
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                return False
            return True

    # ---- the write path ----

    def mark_full(self) -> None:
        """A blob write met a full disk: refuse new data until space returns."""
        if not self.full:
            log.warning("storage full: new object data is refused until space returns")
        self.full = True
        self._checked_at = time.monotonic()

    def check_writable(self) -> None:
        """Raise StorageFull while the disk is full (blocking: it may allocate the reserve)."""
        if not self.full:
            return
        now = time.monotonic()
        if now - self._checked_at < self.recheck_interval:
            raise StorageFull()
        self._checked_at = now
        if not self.allocate() or self.free_bytes() < self.size:
            raise StorageFull()
        self.full = False
        log.warning("storage space returned: accepting new object data again")

    def free_bytes(self) -> int:
        st = os.statvfs(self.path.parent)
        return st.f_bavail * st.f_frsize

    # ---- start ----

    def prepare_at_start(self) -> bool:
        """Before the database opens: allocate the reserve, or, if the disk is too full for
        it, release what there is so the database can open. True: writable."""
        if self.allocate() and self.free_bytes() >= self.size:
            return True
        self._drop()
        return False
