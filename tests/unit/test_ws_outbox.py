"""The WebSocket tracker's outbox per socket is bounded in characters as well as messages."""

from __future__ import annotations

import asyncio
from typing import Any

from s3torrent.tracker import ws
from s3torrent.tracker.registry import TokenBuckets
from s3torrent.tracker.ws_protocol import Send, WsTracker


class _NeverReads:
    """A browser socket whose writer never drains (nothing is sent): only closes count."""

    def __init__(self) -> None:
        self.closed_with: list[tuple[int, bytes]] = []

    async def close(self, *, code: int, message: bytes) -> None:
        self.closed_with.append((code, message))


async def _relay(texts: list[str]) -> tuple[_NeverReads, int, bool]:
    core = WsTracker()
    assert core.connect(1, "192.0.2.1")

    async def admit(swarm: bytes, ip: str | None) -> bool:
        return True

    rate = TokenBuckets(5.0, 60.0, 16)
    tracker = ws.WebSocketTracker(core, admit, lambda request: "192.0.2.1", rate)
    browser = _NeverReads()
    sock: Any = ws._Socket(browser)  # type: ignore[arg-type]
    tracker._sockets[1] = sock
    tracker._perform([Send(1, text) for text in texts])
    await asyncio.sleep(0)  # the close task runs
    return browser, sock.queued, sock.closing


def test_a_socket_that_never_reads_is_closed_once_its_outbox_holds_a_mebibyte() -> None:
    """Until 2026-12-07 only the count was bounded: 256 relayed offers of up to 64 KiB each
    (16 MiB) could wait for one socket that never read, and an address has 32 sockets."""
    big = "x" * 60_000  # an offer near the default message size
    fits = ws.OUTBOX_CHARS // len(big)
    browser, queued, closing = asyncio.run(_relay([big] * fits))
    assert not closing and browser.closed_with == [] and queued == fits * len(big)
    browser, queued, closing = asyncio.run(_relay([big] * (fits + 1)))
    assert closing and browser.closed_with == [(1008, b"slow")]
    assert queued <= ws.OUTBOX_CHARS and fits + 1 < ws.OUTBOX_SIZE


def test_small_messages_still_close_at_the_count() -> None:
    browser, _, closing = asyncio.run(_relay(["{}"] * ws.OUTBOX_SIZE))
    assert not closing
    browser, _, closing = asyncio.run(_relay(["{}"] * (ws.OUTBOX_SIZE + 1)))
    assert closing and browser.closed_with == [(1008, b"slow")]
