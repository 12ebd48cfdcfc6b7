"""A blob read back while its commit makes it durable (ObjectStore.write_blob(read_back=...))."""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from s3torrent.store.blobs.local import LocalBlobStore
from s3torrent.store.objects import ObjectStore
from s3torrent.torrent.hasher import TorrentHasher, hash_fd
from s3torrent.torrent.pieces import PieceLayout


@pytest.fixture
def pool() -> Iterator[concurrent.futures.ThreadPoolExecutor]:
    executor = concurrent.futures.ThreadPoolExecutor(4)
    yield executor
    executor.shutdown(wait=True)


def store(root: Path, pool: concurrent.futures.Executor, *, fsync: bool = True) -> ObjectStore:
    meta: Any = None  # write_blob never touches the metadata
    return ObjectStore(meta, LocalBlobStore(root, fsync=fsync), executor=pool)


async def chunks(data: bytes, size: int = 100_003) -> AsyncIterator[bytes]:
    for at in range(0, len(data), size):
        yield data[at : at + size]


def too_large() -> Exception:
    return ValueError("too large")


def test_the_bytes_read_back_are_the_committed_ones(
    tmp_path: Path, pool: concurrent.futures.ThreadPoolExecutor
) -> None:
    data = os.urandom(3 * 1024 * 1024 + 12_345)  # pieces and a short last one
    objects = store(tmp_path, pool)
    assert objects.reads_back
    seen: list[tuple[str, int]] = []

    def read_back(fd: int, size: int) -> None:
        digest = hashlib.sha256()
        at = 0
        while at < size:
            block = os.pread(fd, 65536, at)
            assert block, "the written bytes end early"
            digest.update(block)
            at += len(block)
        seen.append((digest.hexdigest(), size))

    async def main() -> str:
        blob_id, stored, _ = await objects.write_blob(
            chunks(data), [], max_size=1 << 30, on_too_large=too_large, read_back=read_back
        )
        assert stored.size == len(data)
        return blob_id

    blob_id = asyncio.run(main())
    assert seen == [(hashlib.sha256(data).hexdigest(), len(data))]
    assert objects.blobs.local_path(blob_id).read_bytes() == data  # type: ignore[union-attr]
    assert not list((tmp_path / "tmp").iterdir())  # nothing left of the temporary file


def test_read_back_piece_hashes_equal_the_streamed_ones(
    tmp_path: Path, pool: concurrent.futures.ThreadPoolExecutor
) -> None:
    data = os.urandom(5 * 256 * 1024 + 777)
    streamed = TorrentHasher(256 * 1024, v1=True, v2=True)
    streamed.update(data)
    want = streamed.finish()
    objects = store(tmp_path, pool)
    got = []

    def read_back(fd: int, size: int) -> None:
        got.append(hash_fd(fd, PieceLayout(size, 256 * 1024), v1=True, v2=True, executor=pool))

    async def main() -> None:
        await objects.write_blob(
            chunks(data), [], max_size=1 << 30, on_too_large=too_large, read_back=read_back
        )

    asyncio.run(main())
    assert got == [want]


def test_a_read_back_that_fails_leaves_nothing(
    tmp_path: Path, pool: concurrent.futures.ThreadPoolExecutor
) -> None:
    objects = store(tmp_path, pool)

    def read_back(fd: int, size: int) -> None:
        raise OSError("the disk went away")

    async def main() -> None:
        with pytest.raises(OSError, match="the disk went away"):
            await objects.write_blob(
                chunks(os.urandom(200_000)),
                [],
                max_size=1 << 30,
                on_too_large=too_large,
                read_back=read_back,
                blob_id="ab" * 16,
            )

    asyncio.run(main())
    assert not objects.blobs.local_path("ab" * 16).exists()  # type: ignore[union-attr]
    assert not list((tmp_path / "tmp").iterdir())


def test_without_fsync_there_is_no_wait_to_read_back_in(
    tmp_path: Path, pool: concurrent.futures.ThreadPoolExecutor
) -> None:
    assert not store(tmp_path, pool, fsync=False).reads_back


class SlowCommit:
    """A blob writer whose commit takes a while after the rename, as the directory's
    fsync does."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.tmp_path = inner.tmp_path

    def write(self, data: bytes | memoryview) -> None:
        self.inner.write(data)

    def commit(self, version_id: str) -> None:
        import time

        self.inner.commit(version_id)
        time.sleep(0.3)

    def abort(self) -> None:
        self.inner.abort()


@pytest.mark.parametrize("reading_back", [False, True])
def test_a_write_cancelled_during_its_commit_waits_for_it_then_leaves_nothing(
    tmp_path: Path, pool: concurrent.futures.ThreadPoolExecutor, reading_back: bool
) -> None:
    """The commit runs in a thread that cannot be stopped: the abort must wait for it, and
    the blob it committed (renamed into place already) must go."""
    objects = store(tmp_path, pool)
    fds_before = len(os.listdir("/proc/self/fd"))

    def read_back(fd: int, size: int) -> None:
        os.pread(fd, size, 0)

    async def main() -> None:
        task = asyncio.ensure_future(
            objects.write_blob(
                chunks(os.urandom(300_000)),
                [],
                max_size=1 << 30,
                on_too_large=too_large,
                blob_id="cd" * 16,
                wrap_writer=SlowCommit,
                read_back=read_back if reading_back else None,
            )
        )
        await asyncio.sleep(0.15)  # the body is written; the commit is under way
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert not objects.blobs.local_path("cd" * 16).exists()  # type: ignore[union-attr]
    assert not list((tmp_path / "tmp").iterdir())
    assert len(os.listdir("/proc/self/fd")) == fds_before  # nothing closed twice or leaked
