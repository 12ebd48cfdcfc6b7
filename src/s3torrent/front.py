"""The main listener's first protocol: announces, scrapes and small reads before aiohttp.

A connection whose first read is one whole announce that asks to close after it (every
libtorrent-based client's) is answered from that read with no protocol at all
(`TrackerFront.at_once`). Every other connection of the main listener starts in a
`FrontProtocol`: the lean tracker's protocol, which answers announces and scrapes itself
(`/_tracker/announce`, `/_tracker/scrape`, and `/announce`, `/scrape` when their query
names the parameters the S3 application gives to the tracker:
`S3Application.add_query_route`), and has the S3
application answer small GETs and HEADs through its quick path (s3/quick.py). At the first
request that is anything else (another method, a head neither parser takes, an `Origin` that
wants CORS headers, a request the quick path hands back) the connection is handed, with
every byte not yet answered, to the protocol aiohttp would have had from the start, and
stays with it. Answers already written
come first, so the order of answers on the connection is kept. The admission gate sees one
protocol per connection throughout (`front_phase` asks whichever is in charge).

It composes the tracker's lean protocol (tracker/http_lean.py) and the S3 edge's quick path,
so it lives above both edges, not in either (docs/ARCHITECTURE.md, Departures).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Final, cast

from s3torrent.listeners import AtOnce, ConnectionPhase
from s3torrent.s3.quick import QuickAnswer, QuickConnection, QuickHandOver, QuickHead, QuickReads
from s3torrent.tracker.http_lean import (
    HttpRequestError,
    HttpRequestHead,
    LeanHttpTracker,
    LeanTrackerProtocol,
    lean_phase,
    parse_request_head,
)

log = logging.getLogger(__name__)

ProtocolFactory = Callable[[], asyncio.Protocol]
PhaseProbe = Callable[[Any], ConnectionPhase]

# Announces a connection makes on the owner before another worker is given it: one-shot
# clients (most: an announce per connection) are answered here and never cost a hand-off.
GIVE_AWAY_AFTER = 2
# Seconds a closing front waits for the quick answers under way to be written.
DRAIN_SECONDS: Final = 10.0

_QUICK_FAILED: Final = (
    b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 15\r\nConnection: close\r\n\r\ninternal error\n"
)

_GET = b"GET /"
_ANNOUNCE = b"GET /_tracker/announce?"
# Paths the S3 application routes to the tracker whatever their query.
_TRACKER_PATHS = frozenset({b"/_tracker/announce", b"/_tracker/scrape"})
# Paths a bucket may have too: the tracker's only with these query parameters (by name).
_QUERY_ROUTES = {
    b"/announce": frozenset({b"info_hash", b"peer_id"}),
    b"/scrape": frozenset({b"info_hash"}),
}


def is_tracker_target(target: bytes) -> bool:
    """Whether the S3 application would hand this request target to the tracker."""
    path, _, query = target.partition(b"?")
    if path in _TRACKER_PATHS:
        return True
    needed = _QUERY_ROUTES.get(path)
    return needed is not None and needed <= {p.partition(b"=")[0] for p in query.split(b"&")}


def _answered_here(head: bytes) -> HttpRequestHead | None:
    """The parsed head if the lean path answers it; None if aiohttp must."""
    line_end = head.find(b"\r\n")
    if not head.startswith(_ANNOUNCE):  # the usual one needs no more looking at
        line = head if line_end < 0 else head[:line_end]
        target = line[4 : line.rfind(b" ")]
        if not line.startswith(_GET) or not is_tracker_target(target):
            return None
    if line_end >= 0 and b"\r\norigin:" in head[line_end:].lower():
        return None  # a browser's: the S3 application adds its CORS headers
    try:
        return parse_request_head(head)
    except HttpRequestError:
        return None  # aiohttp answers (or serves) what the strict parser refuses


class FrontProtocol(LeanTrackerProtocol):
    """A main-listener connection: lean tracker answers, and the S3 application's quick
    answers (s3/quick.py), until the first other request."""

    def __init__(
        self, server: LeanHttpTracker, fallback: ProtocolFactory, quick: QuickReads | None = None
    ) -> None:
        super().__init__(server)
        self._fallback = fallback
        self._handed: asyncio.Protocol | None = None
        self._quick = quick
        self._quick_conn: QuickConnection | None = None
        self._close_when_answered = False

    @property
    def handed(self) -> asyncio.Protocol | None:
        """The S3 application's protocol, once the connection is its."""
        return self._handed

    def _next_head(self) -> HttpRequestHead | None:
        if self._hand_over_next:
            return None  # the rest is aiohttp's
        reader = self._reader
        head = reader.pending_head()
        if head is None:
            # Waiting for the rest of a head is only worth it for a GET within our bound.
            if reader.buffered and (
                not reader.startswith(_GET)
                or reader.buffered >= self._server.limits.max_request_bytes
            ):
                self._hand_over_next = True
            return None
        parsed = _answered_here(head)
        body = b""
        if parsed is None:
            quick = QuickHead.parse(head) if self._quick is not None else None
            if quick is not None and quick.body_length:
                # A PUT: quick only if its body is small and came with its head (as a
                # client writes a small request, in one piece); never waited for here,
                # where no body timeout runs: aiohttp reads a slow one, bounded.
                assert self._quick is not None
                if quick.body_length <= self._quick.max_body:
                    body = reader.body_after(head, quick.body_length) or b""
                if len(body) != quick.body_length:
                    quick = None
            if quick is None:
                self._hand_over_next = True
                return None
            parsed = HttpRequestHead(b"", quick.keep_alive, None, (quick, head, body))
        reader.skip(head, len(body))
        return parsed

    def _dispatch(self, head: HttpRequestHead) -> bytes | None:
        if head.other is None:
            return super()._dispatch(head)
        quick, raw, body = cast(tuple[QuickHead, bytes, bytes], head.other)
        assert self._quick is not None and self._transport is not None
        conn = self._quick_conn
        if conn is None:
            conn = self._quick_conn = QuickConnection(self._transport)
        self._busy = True
        self._quick.enqueue(self, quick, conn, raw, body)
        return None

    # -- QuickOwner (s3/quick.py): the answers of the S3 application's quick path

    @property
    def gone(self) -> bool:
        return self._transport is None

    def quick_suspended(self, task: asyncio.Task[QuickAnswer], raw: bytes) -> None:
        self._task = task
        task.add_done_callback(lambda done: self._quick_task_done(done, raw))

    def _quick_task_done(self, task: asyncio.Future[QuickAnswer], raw: bytes) -> None:
        self._task = None
        if task.cancelled():
            self._busy = False
            return
        error = task.exception()
        self.quick_answered(task.result() if error is None else error, raw)

    def quick_answered(self, outcome: QuickAnswer | BaseException, raw: bytes) -> None:
        # Called by QuickReads once every answer of its batch is computed (or by the done
        # callback of an answer that had to wait): the answers of all the connections whose
        # requests came in one turn go out together.
        self._busy = False
        if self._transport is None:
            return
        if isinstance(outcome, QuickHandOver):
            if self._close_when_answered:
                super().close()  # closing down: the client sends it again elsewhere
                return
            # The request (a PUT's body too) goes back ahead of what followed it; aiohttp
            # takes the connection once the answers before it are written
            # (_answer_ready_requests).
            self._reader.unskip()
            self._hand_over_next = True
            self._answer_ready_requests()
            return
        if isinstance(outcome, BaseException):
            log.error("quick answer to %s failed", raw[:8], exc_info=outcome)
            self._closing = True
            self._flush([_QUICK_FAILED])
            return
        answer, keep_alive = outcome
        if not keep_alive or self._close_when_answered:
            self._closing = True
            self._flush([answer])
            return
        self._transport.write(answer)
        self._answer_ready_requests()

    def close(self) -> None:
        if self._busy and self._quick_conn is not None and self._transport is not None:
            # A quick answer under way is written first (quick_answered), then the close.
            self._closing = self._close_when_answered = True
            return
        super().close()

    def _answer_ready_requests(self) -> None:
        super()._answer_ready_requests()
        # Only once what was answered is written, and nothing is being answered.
        if self._hand_over_next and not (self._busy or self._closing):
            self._hand_over()
        elif (
            self._requests >= GIVE_AWAY_AFTER
            and self._server.give_away is not None
            and self._quick_conn is None  # an S3 client's connection stays
        ):
            self._give_away(self._server.give_away)

    def _give_away(self, give: Callable[[int], bool]) -> None:
        # Another worker takes the connection as it is (handoff.py): only between requests,
        # with every answer sent and no byte of the next one read.
        transport = self._transport
        if (
            transport is None
            or self._busy
            or self._closing
            or self._eof
            or self._write_paused
            or self._read_paused
            or self._reader.buffered
            or transport.get_write_buffer_size()
        ):
            return
        sock = transport.get_extra_info("socket")
        if sock is None or not give(sock.fileno()):
            return
        # Our descriptor only: the connection lives on in the other worker.
        self._closing = True
        transport.abort()

    def _hand_over(self) -> None:
        transport = self._transport
        if transport is None:
            return
        pending = self._reader.take()
        self._server.release(self)
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if self._read_paused:
            transport.resume_reading()
            self._read_paused = False
        handed = self._handed = self._fallback()
        # From now on the transport's callbacks (through the gate's wrapper) are the S3
        # application's: bound here, so a request costs no test of who is in charge.
        self.data_received = handed.data_received  # type: ignore[method-assign]
        self.eof_received = handed.eof_received  # type: ignore[method-assign]
        self.pause_writing = handed.pause_writing  # type: ignore[method-assign]
        self.resume_writing = handed.resume_writing  # type: ignore[method-assign]
        self.connection_lost = handed.connection_lost  # type: ignore[method-assign]
        handed.connection_made(transport)
        if self._write_paused:
            handed.pause_writing()
        if pending:
            handed.data_received(pending)
        if self._eof:
            handed.eof_received()


class TrackerFront:
    """Wraps the main listener's protocol factory and phase probe (see the module doc)."""

    def __init__(self, tracker: LeanHttpTracker) -> None:
        self.tracker = tracker
        # What its first-read answers take: what this listener routes to the tracker.
        tracker.at_once_head = _answered_here
        # The S3 application's quick answers (app.py sets it once the application is built).
        self.quick: QuickReads | None = None

    def __call__(
        self, fallback: ProtocolFactory, fallback_phase: PhaseProbe
    ) -> tuple[ProtocolFactory, PhaseProbe]:
        tracker = self.tracker

        def make() -> asyncio.Protocol:
            return FrontProtocol(tracker, fallback, self.quick)

        def phase(connection: FrontProtocol) -> ConnectionPhase:
            handed = connection.handed
            return fallback_phase(handed) if handed is not None else lean_phase(connection)

        return make, phase

    def at_once(self) -> AtOnce:
        """A new connection whose first read is one whole announce asking to close after
        it (every libtorrent-based client's) is answered from that read, with no protocol
        (`LeanHttpTracker.answer_at_once`), by this listener's routing (`_answered_here`)."""
        tracker = self.tracker
        return AtOnce(tracker.answer_at_once, tracker.limits.max_request_bytes)

    async def close(self) -> None:
        """Close the connections still in the lean tracker's hands, once the quick answers
        under way are written (bounded by DRAIN_SECONDS)."""
        await self.tracker.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DRAIN_SECONDS
        while loop.time() < deadline and any(c.answering for c in self.tracker.connections):
            await asyncio.sleep(0.02)
