"""Blobs in a local directory: written to tmp/, fsynced, renamed into blobs/xx/yy/ID."""

from __future__ import annotations

import concurrent.futures
import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path
from typing import Any


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_for_reading(path: str | Path) -> int:
    """A descriptor of a blob file, for a reader that reads it in many steps: a blob
    deleted meanwhile (an overwritten version's, ObjectStore.delete_blob_later) stays
    readable through it to the end, as S3 finishes a GET or copy already under way."""
    return os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))


def close_when_idle(fd: int, pending: concurrent.futures.Future[Any] | None) -> None:
    """Close a reader's descriptor now, or once its read in flight is over (cancelled if
    it has not started): closed under a running read, its number could by then name
    another file."""
    if pending is None:
        os.close(fd)
        return
    pending.cancel()
    pending.add_done_callback(lambda _: os.close(fd))


def _temporary_name() -> str:
    """A temporary blob's file name: the writing process's id, then a random part (a worker
    started again cleans what its dead predecessor left, `clean_abandoned`)."""
    return f"{os.getpid()}-{secrets.token_hex(12)}.part"


def _writer_gone(name: str) -> bool:
    """Whether the process that named this temporary file has ended: False while it (or a
    process with its id) runs, and for a name without an id (written before they had one:
    left to a fresh start's clean-up)."""
    pid, sep, _ = name.partition("-")
    if not sep or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # it runs, as another user
    return False


class LocalBlobWriter:
    def __init__(self, store: LocalBlobStore) -> None:
        self._store = store
        self.tmp_path = store.tmp_dir / _temporary_name()
        self._fd = os.open(self.tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self.size = 0

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
            self.size += n

    def append_blob(self, blob_id: str, offset: int, length: int) -> None:
        """Append a range of another blob, copied inside the kernel (no user-space pass)."""
        with open(self._store.path_for(blob_id), "rb") as src:
            end = offset + length
            while offset < end:
                try:
                    n = os.copy_file_range(src.fileno(), self._fd, end - offset, offset)
                    self.size += n
                except OSError as exc:
                    if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                        raise
                    data = os.pread(src.fileno(), min(end - offset, 1 << 20), offset)
                    self.write(data)
                    n = len(data)
                if n == 0:
                    raise FileNotFoundError(f"blob {blob_id} is shorter than expected")
                offset += n

    def commit(self, version_id: str) -> None:
        if self._store.fsync:
            os.fsync(self._fd)
        os.close(self._fd)
        self._fd = -1
        final = self._store.path_for(version_id)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.rename(self.tmp_path, final)
        if self._store.fsync:
            _fsync_dir(final.parent)

    def abort(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp_path)


class LocalBlobStore:
    """A directory of blobs; also works on a shared POSIX mount."""

    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = root
        self.blob_dir = root / "blobs"
        self.tmp_dir = root / "tmp"
        self.fsync = fsync
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)

    def path_for(self, version_id: str) -> Path:
        if not version_id.isalnum():
            raise ValueError("bad version id")
        return self.blob_dir / version_id[:2] / version_id[2:4] / version_id

    def new_writer(self, version_id: str | None = None) -> LocalBlobWriter:
        return LocalBlobWriter(self)  # a rename is cheap here: no need to know the id

    def local_path(self, version_id: str) -> Path | None:
        return self.path_for(version_id)

    def read(self, version_id: str, offset: int, length: int) -> bytes:
        with open(self.path_for(version_id), "rb") as fh:
            fh.seek(offset)
            return fh.read(length)

    def delete(self, version_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path_for(version_id))

    def list_ids(self, older_than: float | None = None) -> list[str]:
        """Blob ids; with `older_than`, of files renamed into place (their change time,
        which the rename sets) and last written before it."""
        ids = []
        for p in self.blob_dir.glob("*/*/*"):
            try:
                st = p.stat()
            except FileNotFoundError:
                continue  # deleted meanwhile
            if not stat.S_ISREG(st.st_mode):
                continue
            if older_than is None or max(st.st_ctime, st.st_mtime) < older_than:
                ids.append(p.name)
        return ids

    def prepare(self) -> None:
        """Nothing to create: the directories exist from the constructor on."""

    def clean_temporary(self) -> int:
        n = 0
        for p in self.tmp_dir.iterdir():
            p.unlink(missing_ok=True)
            n += 1
        return n

    def clean_failed(self) -> int:
        """Nothing: a failed write's abort unlinks its temporary file, and an ended writer's
        goes at its worker's restart (clean_abandoned)."""
        return 0

    def clean_abandoned(self) -> int:
        """The temporary files of writers that have ended: a live process's write in
        progress (its process runs) is never touched."""
        n = 0
        for p in self.tmp_dir.iterdir():
            if _writer_gone(p.name):
                p.unlink(missing_ok=True)
                n += 1
        return n
