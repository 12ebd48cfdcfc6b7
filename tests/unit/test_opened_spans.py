"""OpenedSpans: blocks are slices of spans opened once, a bounded number kept and opening."""

from __future__ import annotations

import asyncio
from collections import deque

import pytest

from s3torrent.peer.opened_spans import OpenedSpans, span_for
from s3torrent.peer.owed import OwedBlock, gather
from s3torrent.store.sealed_format import TamperedBlob

SPAN = 256 * 1024
DATA = bytes(range(256)) * (4 * SPAN // 256)  # four spans of plaintext


def test_span_follows_the_piece_length_within_bounds() -> None:
    assert span_for(16 * 1024) == SPAN
    assert span_for(SPAN) == SPAN
    assert span_for(1024 * 1024) == 1024 * 1024
    assert span_for(64 * 1024 * 1024) == 1024 * 1024


def test_blocks_are_slices_of_one_open_per_span_inline() -> None:
    opened: list[tuple[int, int]] = []

    def open_now(offset: int, length: int) -> bytes:
        opened.append((offset, length))
        return DATA[offset : offset + length]

    spans = OpenedSpans(SPAN, _never)
    spans.size = len(DATA) - 100  # the last span is short
    spans.open_now = open_now
    for off in range(0, 2 * SPAN, 16 * 1024):
        got = spans.ready(off, 16 * 1024)
        assert got is not None and bytes(got) == DATA[off : off + 16 * 1024]
    assert opened == [(0, SPAN), (SPAN, SPAN)]
    assert spans.ready(SPAN - 10, 20) is None  # across two spans: not from the cache
    tail = spans.ready(3 * SPAN, SPAN - 100)
    assert tail is not None and bytes(tail) == DATA[3 * SPAN : 4 * SPAN - 100]
    assert opened[-1] == (3 * SPAN, SPAN - 100)
    assert spans.ready(4 * SPAN - 100, 100) is None  # past the object's end


def test_the_cache_is_bounded_in_bytes() -> None:
    opened: list[int] = []

    def open_now(offset: int, length: int) -> bytes:
        opened.append(offset)
        return bytes(length)

    spans = OpenedSpans(SPAN, _never, max_bytes=2 * SPAN)
    spans.open_now = open_now
    for start in (0, SPAN, 2 * SPAN, 0):
        assert spans.ready(start, 10) is not None
    assert opened == [0, SPAN, 2 * SPAN, 0]  # span 0 was dropped for span 2


def test_a_span_that_fails_is_not_kept_and_fails_again() -> None:
    calls = 0

    def open_now(offset: int, length: int) -> bytes:
        nonlocal calls
        calls += 1
        raise TamperedBlob("chunk 0/3 fails its tag")

    spans = OpenedSpans(SPAN, _never)
    spans.open_now = open_now
    for _ in range(2):
        with pytest.raises(TamperedBlob):
            spans.ready(0, 10)
    assert calls == 2


def test_spans_opened_in_threads_are_shared_and_bounded() -> None:
    async def run() -> None:
        started: list[int] = []
        gate = asyncio.Event()

        async def open_span(offset: int, length: int) -> bytes:
            started.append(offset)
            await gate.wait()
            if offset == 2 * SPAN:
                raise TamperedBlob("bad")
            return DATA[offset : offset + length]

        spans = OpenedSpans(SPAN, open_span, max_opening=2)
        a = asyncio.ensure_future(spans.read(0, 100))
        b = asyncio.ensure_future(spans.read(50, 100))  # same span: no second open
        await asyncio.sleep(0)
        spans.prefetch(SPAN)
        spans.prefetch(2 * SPAN)  # two opening already: not started
        for _ in range(3):
            await asyncio.sleep(0)
        assert started == [0, SPAN]
        gate.set()
        assert bytes(await a) == DATA[:100] and bytes(await b) == DATA[50:150]
        await asyncio.sleep(0.01)
        assert spans.ready(SPAN + 5, 10) is not None  # prefetched
        with pytest.raises(TamperedBlob):
            await spans.read(2 * SPAN, 10)
        assert spans.ready(2 * SPAN, 10) is None  # a failed span is not kept

    asyncio.run(run())


def test_gather_takes_control_bytes_and_ready_blocks_up_to_the_first_missing() -> None:
    payload = memoryview(DATA)
    have = {0: payload[:16384], 16384: payload[16384:32768]}
    out: deque[memoryview | OwedBlock] = deque(
        [
            memoryview(b"h1"),
            OwedBlock(0, 0, 16384, 0, 16384),
            memoryview(b"h2"),
            OwedBlock(0, 16384, 16384, 16384, 16000),  # 384 bytes of implied padding
            memoryview(b"h3"),
            OwedBlock(0, 32768, 16384, 32768, 16384),  # not opened yet
            memoryview(b"h4"),
        ]
    )
    parts = gather(out, lambda off, n: have[off][:n] if off in have else None, budget=10)
    assert [bytes(p) for p in parts] == [
        b"h1",
        DATA[:16384],
        b"h2",
        DATA[16384 : 16384 + 16000],
        bytes(384),
        b"h3",
    ]
    assert len(gather(out, lambda off, n: have.get(off), budget=1)) == 2  # h1, one block


async def _never(offset: int, length: int) -> bytes:
    raise AssertionError("not opened in a thread here")
