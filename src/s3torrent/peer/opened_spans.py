"""Plaintext of a sealed blob for the seeder, opened a span (a piece or more) at a time.

Peers ask for 16 KiB blocks, but a sealed blob opens in 64 KiB chunks, and every open
costs a read and a tag check (and, off the loop, a thread hop). So the swarm opens
aligned spans (the piece length, kept between 256 KiB and 1 MiB) at once and serves each
block as a slice of its span: no copy, no further read. A few spans stay, least recently
used first out, bounded in bytes. A local blob's spans open on the loop when a block
needs one (see INLINE_SPAN); other blobs' open in threads, the spans under a peer's next
requests ahead of need while the current ones go out, a bounded number at once.

Authenticity is unchanged: a span is the output of `PlainReader.read_buffer`, which
checks every chunk's tag before it returns; a span that fails is never cached, and
whoever waits for it gets the error (the link closes).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable

__all__ = ["OpenedSpans", "span_for"]

MIN_SPAN = 256 * 1024
MAX_SPAN = 1024 * 1024  # longer pieces open in runs of this many bytes
CACHE_BYTES = 8 * 1024 * 1024  # per swarm (at least 2 spans); dropped when its peers go
MAX_OPENING = 4  # spans read and opened at once per swarm (a thread each)
# A span up to this long, of a local blob, is opened on the loop when a block needs it:
# a page-cache read and ~0.3 ms of AES-GCM, less than the thread hop it replaces (the
# loop reads local blobs itself for sendfile and MSE alike). Longer spans, and blobs
# that are not local, are opened in a thread, ahead of need.
INLINE_SPAN = 1024 * 1024


def span_for(piece_length: int) -> int:
    """The span for a piece length: a power of two (pieces are), so spans align with
    pieces and with the format's 64 KiB chunks."""
    span = MIN_SPAN
    while span < piece_length and span < MAX_SPAN:
        span *= 2
    return span


class OpenedSpans:
    """The opened (plaintext) spans of one sealed blob, shared by a swarm's peers."""

    def __init__(
        self,
        span: int,
        open_span: Callable[[int, int], Awaitable[bytes | bytearray]],
        *,
        max_bytes: int = CACHE_BYTES,
        max_opening: int = MAX_OPENING,
    ) -> None:
        self.span = span
        self._open_span = open_span  # (offset, length) -> plaintext, checked; off the loop
        self._max_spans = max(2, max_bytes // span)
        self._max_opening = max_opening
        self._done: OrderedDict[int, memoryview] = OrderedDict()
        self._opening: dict[int, asyncio.Future[memoryview]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # Opens a span at once (blocking; raises TamperedBlob): set when the blob is
        # local and spans are short enough to open on the loop.
        self.open_now: Callable[[int, int], bytes | bytearray] | None = None
        self.size: int | None = None  # the object's size, once known (spans stop there)

    def ready(self, offset: int, length: int) -> memoryview | None:
        """The block's plaintext if its span is open, or can be opened on the loop now
        (see INLINE_SPAN); TamperedBlob if that open fails."""
        start = offset - offset % self.span
        if offset + length > start + self.span:
            return None  # across two spans: the caller reads it on its own
        data = self._done.get(start)
        if data is None:
            if self.open_now is None or start in self._opening:
                return None
            data = self._keep(start, memoryview(self.open_now(start, self._length(start))))
        else:
            self._done.move_to_end(start)
        lo = offset - start
        if lo + length > len(data):
            return None
        return data[lo : lo + length]

    async def read(self, offset: int, length: int) -> memoryview | None:
        """The block's plaintext once its span is open; None when the block crosses spans."""
        start = offset - offset % self.span
        if offset + length > start + self.span:
            return None
        hit = self.ready(offset, length)
        if hit is not None:
            return hit
        fut = self._opening.get(start)
        if fut is None:
            fut = self._start(start)
        data = await asyncio.shield(fut)
        lo = offset - start
        if lo + length > len(data):
            raise EOFError("blob shorter than the torrent")
        return data[lo : lo + length]

    def prefetch(self, offset: int) -> None:
        """Open the span holding `offset` ahead of need, unless it is (being) opened or
        enough spans are being opened already."""
        start = offset - offset % self.span
        if start in self._done or start in self._opening or self.open_now is not None:
            return
        if len(self._opening) >= self._max_opening:
            return
        if self.size is not None and start >= self.size:
            return
        self._start(start)

    def _start(self, start: int) -> asyncio.Future[memoryview]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[memoryview] = loop.create_future()
        self._opening[start] = fut

        async def run() -> None:
            try:
                data = memoryview(await self._open_span(start, self._length(start)))
            except asyncio.CancelledError:
                self._opening.pop(start, None)
                fut.cancel()
                raise
            except Exception as exc:
                self._opening.pop(start, None)
                fut.set_exception(exc)
                # Nobody may wait for a prefetch: mark its error seen (a read that does
                # wait still gets it).
                fut.add_done_callback(lambda f: f.cancelled() or f.exception())
                return
            self._opening.pop(start, None)
            fut.set_result(self._keep(start, data))

        task = loop.create_task(run())
        self._tasks.add(task)  # a reference until it ends (the loop keeps only weak ones)
        task.add_done_callback(self._tasks.discard)
        return fut

    def _length(self, start: int) -> int:
        if self.size is None:
            return self.span
        return max(0, min(self.span, self.size - start))

    def _keep(self, start: int, data: memoryview) -> memoryview:
        self._done[start] = data
        while len(self._done) > self._max_spans:
            self._done.popitem(last=False)
        return data

    def clear(self) -> None:
        self._done.clear()
