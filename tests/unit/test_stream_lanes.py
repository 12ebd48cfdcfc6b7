"""Lanes of the PUT body path (store/stream_lanes.py, ObjectStore.stream_to_blob): every
consumer sees every byte in order, a failing consumer fails the upload, and nothing runs
once the upload is abandoned."""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from s3torrent.store.objects import STEP, ObjectStore
from s3torrent.store.stream_lanes import Lane


class Recorder:
    """A writer or observer that keeps what it was given (and when it last ran)."""

    def __init__(self, fail_after: int | None = None, delay: float = 0.0) -> None:
        self.data = bytearray()
        self.calls = 0
        self.fail_after = fail_after
        self.delay = delay
        self.threads: set[str] = set()
        self.finished_at = 0.0

    def write(self, data: bytes | memoryview) -> None:
        self.update(data)

    def update(self, data: bytes | memoryview) -> None:
        self.calls += 1
        self.threads.add(threading.current_thread().name)
        if self.fail_after is not None and self.calls > self.fail_after:
            raise OSError("disk gone")
        time.sleep(self.delay)
        self.data += data
        self.finished_at = time.monotonic()


def payload(n: int) -> bytes:
    return bytes(i % 251 for i in range(n))


async def chunks(data: bytes, size: int, fail_at: int | None = None) -> AsyncIterator[bytes]:
    for pos in range(0, len(data), size):
        if fail_at is not None and pos >= fail_at:
            raise ConnectionResetError("client went away")
        yield data[pos : pos + size]
        await asyncio.sleep(0)


def store(pool: concurrent.futures.Executor) -> ObjectStore:
    return ObjectStore(None, None, executor=pool)  # type: ignore[arg-type]


def test_every_consumer_sees_every_byte_in_order() -> None:
    data = payload(5 * STEP + 12345)
    writer, sha1, crc = Recorder(), Recorder(), Recorder(delay=0.002)

    async def scenario() -> Any:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            return await store(pool).stream_to_blob(
                chunks(data, 100_000), writer, [sha1, crc], max_size=1 << 30, on_too_large=OSError
            )

    stored = asyncio.run(scenario())
    assert stored.size == len(data) and stored.md5 == hashlib.md5(data).digest()
    assert bytes(writer.data) == bytes(sha1.data) == bytes(crc.data) == data


def test_a_failing_consumer_fails_the_upload() -> None:
    data = payload(8 * STEP)
    writer, failing = Recorder(), Recorder(fail_after=2)

    async def scenario() -> None:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            await store(pool).stream_to_blob(
                chunks(data, STEP), writer, [failing], max_size=1 << 30, on_too_large=OSError
            )

    with pytest.raises(OSError, match="disk gone"):
        asyncio.run(scenario())
    # The loop stopped feeding: the writer is at most a few steps past the failure.
    assert len(writer.data) < len(data)


def test_nothing_runs_after_an_abandoned_upload_returns() -> None:
    data = payload(6 * STEP)
    writer = Recorder(delay=0.05)

    async def scenario() -> float:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            with pytest.raises(ConnectionResetError):
                await store(pool).stream_to_blob(
                    chunks(data, STEP, fail_at=4 * STEP),
                    writer,
                    [],
                    max_size=1 << 30,
                    on_too_large=OSError,
                )
            return time.monotonic()

    returned = asyncio.run(scenario())
    # Queued steps were dropped; the one running had finished before the error surfaced.
    assert writer.finished_at <= returned
    assert len(writer.data) < len(data)


def test_a_lane_holds_at_most_its_depth_waiting() -> None:
    gate = threading.Event()
    seen: list[int] = []

    def slow(step: int) -> None:
        gate.wait(5)
        seen.append(step)

    async def scenario() -> int:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            lane: Lane[int] = Lane(pool, slow, depth=2)
            for i in range(3):  # one running, two waiting
                await lane.put(i)
            await asyncio.sleep(0.05)
            blocked = asyncio.ensure_future(lane.put(3))
            await asyncio.sleep(0.05)
            was_blocked = not blocked.done()
            gate.set()
            await blocked
            await lane.close()
            return int(was_blocked)

    assert asyncio.run(scenario()) == 1
    assert seen == [0, 1, 2, 3]
