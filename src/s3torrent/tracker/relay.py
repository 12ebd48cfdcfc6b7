"""Announces and scrapes that reach another worker's S3 listener, answered by the owner.

The tracker's registry lives in the owner worker (worker 0 of `serve --workers N`), while
the kernel spreads the main listener's connections over every worker. Forwarded as HTTP
(owner_link's aiohttp route: an HTTP client here, the owner's whole S3 application
there), a forwarded announce cost several times a lean one, and with two workers the main
listener answered about a quarter fewer announces than with one. Here a worker's front
(front.py) sends just the request's query and client address to the owner
over one Unix stream (`data_dir/tracker.sock`, mode 0600 in the 0700 data directory), in a
small binary frame; the owner answers with the bencoded body its own lean tracker would
have written. Requests share the stream and are answered by id, in any order. An announce
is parsed where it arrived and travels as its fields (a failure to parse is answered there),
so the owner, whose one core every worker's announces share, only runs the registry and
the answer's encoding; the frames a worker writes in one loop turn go out in one write.

Frames (sans-IO: `FrameReader`, `encode_request`, `encode_answer`): a 4-byte big-endian
length, then the payload. A request: id (4 bytes), kind (1: announce, 2: scrape, 3: a
parsed announce), the client address's length (1 byte), the address (ASCII), then the raw
query, or for a parsed announce its fields (`encode_announce_fields`). An answer: id, a
status (0: the body follows; 1: the owner could not answer now), the body. Both ends bound
what they accept and close a stream that breaks the format.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import struct
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Final

from s3torrent.tracker.eager import start_eagerly
from s3torrent.tracker.http_lean import DEFAULT_MAX_REQUEST_BYTES, AnswerUnavailable
from s3torrent.tracker.protocol import AnnounceEvent, AnnounceRequest
from s3torrent.tracker.service import TrackerService

log = logging.getLogger(__name__)

ANNOUNCE: Final = 1
SCRAPE: Final = 2
PARSED_ANNOUNCE: Final = 3
_OK: Final = 0
_UNAVAILABLE: Final = 1
_LENGTH: Final = struct.Struct(">I")
_REQUEST: Final = struct.Struct(">IBB")  # id, kind, address length
_ANSWER: Final = struct.Struct(">IB")  # id, status
# A request carries what one lean request head may hold; an answer, a scrape of every
# torrent at most (`tracker.allow_full_scrape`), which this bounds.
MAX_REQUEST_FRAME: Final = _REQUEST.size + 255 + DEFAULT_MAX_REQUEST_BYTES
MAX_ANSWER_FRAME: Final = 16 * 1024 * 1024
# Requests waiting for the owner, per worker; beyond it a client is told to come back.
MAX_IN_FLIGHT: Final = 1024
# How long a worker waits for an answer, and after a failed connect before trying again.
ANSWER_TIMEOUT: Final = 10.0
RECONNECT_AFTER: Final = 0.5
# Frames queued in one loop turn go out this many at a time (the rest at the turn's end),
# so the owner starts on a wave's first announces while this worker parses the others.
RELAY_BATCH: Final = 4


class FrameError(ValueError):
    """A stream that breaks the frame format: it is closed."""


class FrameReader:
    """Splits a byte stream into frame payloads, each at most `max_frame` bytes."""

    def __init__(self, max_frame: int) -> None:
        self._max = max_frame
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """The payloads completed by `data`, in order; raises FrameError (the stream is
        then unusable: its caller closes it)."""
        buffer = self._buffer
        buffer += data
        payloads: list[bytes] = []
        start = 0
        while len(buffer) - start >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(buffer, start)
            if length > self._max:
                raise FrameError(f"frame of {length} bytes (at most {self._max})")
            end = start + _LENGTH.size + length
            if end > len(buffer):
                break
            payloads.append(bytes(buffer[start + _LENGTH.size : end]))
            start = end
        del buffer[:start]
        return payloads


def encode_request(request_id: int, kind: int, client: str, query: bytes) -> bytes:
    address = client.encode("ascii")
    if len(address) > 255:
        raise ValueError("client address too long")
    head = _REQUEST.pack(request_id, kind, len(address))
    return _LENGTH.pack(len(head) + len(address) + len(query)) + head + address + query


def decode_request(payload: bytes) -> tuple[int, int, str, bytes]:
    """(id, kind, client address, query); raises FrameError."""
    if len(payload) < _REQUEST.size:
        raise FrameError("request frame too short")
    request_id, kind, address_length = _REQUEST.unpack_from(payload)
    end = _REQUEST.size + address_length
    if kind not in (ANNOUNCE, SCRAPE, PARSED_ANNOUNCE) or len(payload) < end:
        raise FrameError("malformed request frame")
    try:
        client = payload[_REQUEST.size : end].decode("ascii")
    except UnicodeDecodeError:
        raise FrameError("client address is not ASCII") from None
    return request_id, kind, client, payload[end:]


# A parsed announce: info-hash, peer id, port, uploaded, downloaded, left, event, numwant,
# compact, no_peer_id, the key's length (_NO_KEY: none); then the key, then the warnings of
# its parse (UTF-8, NUL-separated). The address is the frame's client address.
_FIELDS: Final = struct.Struct(">20s20sHQQQBIBBH")
_NO_KEY: Final = 0xFFFF
_EVENT_CODES: Final = {event: code for code, event in enumerate(AnnounceEvent)}
_EVENTS_BY_CODE: Final = tuple(AnnounceEvent)
_COUNTER_LIMIT: Final = 1 << 63


def announce_client(req: AnnounceRequest) -> str:
    """The client address of `req`'s parsed-announce frame: its `ip`, then, where the
    announce came from elsewhere (an `ip` the client named), a space and that source."""
    return req.ip if req.source is None else f"{req.ip} {req.source}"


def encode_announce_fields(req: AnnounceRequest) -> bytes:
    """`req`'s fields for a parsed-announce frame (its `ip`, and its source where that
    differs, travel as the client address: announce_client)."""
    key = req.key
    fields = _FIELDS.pack(
        req.info_hash,
        req.peer_id,
        req.port,
        req.uploaded,
        req.downloaded,
        req.left,
        _EVENT_CODES[req.event],
        req.numwant,
        req.compact,
        req.no_peer_id,
        _NO_KEY if key is None else len(key),
    )
    warnings = "\0".join(req.warnings).encode("utf-8") if req.warnings else b""
    return b"".join((fields, key or b"", warnings))


def decode_announce_fields(payload: bytes, client: str) -> AnnounceRequest:
    """The announce of a parsed-announce frame; raises FrameError."""
    if len(payload) < _FIELDS.size:
        raise FrameError("announce fields too short")
    (info_hash, peer_id, port, uploaded, downloaded, left, event, numwant, compact,
     no_peer_id, key_length) = _FIELDS.unpack_from(payload)  # fmt: skip
    start = _FIELDS.size
    key = None
    if key_length != _NO_KEY:
        key = payload[start : start + key_length]
        start += key_length
    if (
        len(payload) < start
        or event >= len(_EVENTS_BY_CODE)
        or compact > 1
        or no_peer_id > 1
        or not 1 <= port <= 0xFFFF
        or uploaded >= _COUNTER_LIMIT
        or downloaded >= _COUNTER_LIMIT
        or left >= _COUNTER_LIMIT
    ):
        raise FrameError("malformed announce fields")
    warnings: tuple[str, ...] = ()
    if len(payload) > start:
        try:
            warnings = tuple(payload[start:].decode("utf-8").split("\0"))
        except UnicodeDecodeError:
            raise FrameError("announce warnings are not UTF-8") from None
    ip, _, source = client.partition(" ")
    # Positional, in the fields' order (see AnnounceRequest): the owner decodes one per
    # relayed announce, and keyword construction (with `max` and a decode of the usual
    # empty tail) cost three times this (2.9 against 1.0 us in a micro-benchmark).
    return AnnounceRequest(
        info_hash,
        peer_id,
        ip,
        port,
        uploaded,
        downloaded,
        left,
        _EVENTS_BY_CODE[event],
        numwant,
        compact == 1,
        no_peer_id == 1,
        key,
        None,  # trackerid: not relayed
        warnings,
        source or None,
    )


def encode_answer(request_id: int, body: bytes | None) -> bytes:
    """The answer to a request; None: the owner cannot answer it now."""
    head = _ANSWER.pack(request_id, _OK if body is not None else _UNAVAILABLE)
    payload = body or b""
    return _LENGTH.pack(len(head) + len(payload)) + head + payload


def decode_answer(payload: bytes) -> tuple[int, bytes | None]:
    if len(payload) < _ANSWER.size:
        raise FrameError("answer frame too short")
    request_id, status = _ANSWER.unpack_from(payload)
    if status not in (_OK, _UNAVAILABLE):
        raise FrameError("malformed answer frame")
    return request_id, payload[_ANSWER.size :] if status == _OK else None


# --- the owner's end ---------------------------------------------------------------------


class _OwnerEnd(asyncio.Protocol):
    """One worker's stream at the owner: each request answered by the tracker service."""

    def __init__(self, server: RelayServer) -> None:
        self._server = server
        self._service = server.service
        self._reader = FrameReader(MAX_REQUEST_FRAME)
        self._transport: asyncio.Transport | None = None
        self._tasks: set[asyncio.Task[bytes]] = set()
        self._paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._server.streams.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._server.streams.discard(self)
        for task in self._tasks:
            task.cancel()

    def data_received(self, data: bytes) -> None:
        # Answers ready at once go out in one write (the worker wakes once for them).
        out: list[bytes] = []
        broken: FrameError | None = None
        try:
            for payload in self._reader.feed(data):
                answer = self._answer(*decode_request(payload))
                if answer is not None:
                    out.append(answer)
        except FrameError as error:
            broken = error
        if out and self._transport is not None:
            self._transport.write(b"".join(out))
        if broken is not None:
            log.warning("tracker relay: %s; closing the stream", broken)
            self.close()

    def pause_writing(self) -> None:
        # The worker reads answers slower than we make them: stop taking requests.
        if self._transport is not None and not self._paused:
            self._paused = True
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._transport is not None and self._paused:
            self._paused = False
            self._transport.resume_reading()

    def _answer(self, request_id: int, kind: int, client: str, query: bytes) -> bytes | None:
        if len(self._tasks) >= MAX_IN_FLIGHT:
            return encode_answer(request_id, None)
        now = self._server.clock()
        service = self._service
        coro: Coroutine[Any, Any, bytes]
        if kind == PARSED_ANNOUNCE:
            req = decode_announce_fields(query, client)
            if self._server.eager:
                answer = service.answer_parsed_now(req, now)
                if answer is not None:
                    return encode_answer(request_id, answer)
            coro = service.answer_announce(req, now)
        elif kind == ANNOUNCE:
            coro = service.handle_http_announce(query, client, now)
        else:
            coro = service.handle_http_scrape(query, client, now)
        started = start_eagerly(coro) if self._server.eager else coro
        if isinstance(started, bytes):
            return encode_answer(request_id, started)
        task = asyncio.ensure_future(started)
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._finish(request_id, done))
        return None

    def _finish(self, request_id: int, task: asyncio.Task[bytes]) -> None:
        self._tasks.discard(task)
        if task.cancelled() or self._transport is None:
            return
        error = task.exception()
        if error is not None:
            log.error("tracker relay request failed", exc_info=error)
        body = None if error is not None else task.result()
        self._transport.write(encode_answer(request_id, body))

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class RelayServer:
    """The owner's end: answers the other workers' announces and scrapes."""

    def __init__(
        self,
        service: TrackerService,
        clock: Callable[[], float] = time.monotonic,
        *,
        eager: bool = False,
    ) -> None:
        # The clock of the owner's other tracker transports: one timeline for every peer.
        self.service = service
        self.clock = clock
        self.eager = eager
        self.streams: set[_OwnerEnd] = set()
        self._server: asyncio.AbstractServer | None = None
        self._path: Path | None = None

    async def start(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(lambda: _OwnerEnd(self), str(path))
        path.chmod(0o600)
        self._path = path

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for stream in list(self.streams):
            stream.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
        if self._path is not None:
            self._path.unlink(missing_ok=True)
            self._path = None


# --- a worker's end ----------------------------------------------------------------------


class _WorkerEnd(asyncio.Protocol):
    def __init__(self, relay: TrackerRelay) -> None:
        self._relay = relay
        self._reader = FrameReader(MAX_ANSWER_FRAME)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._relay.lost(self)

    def data_received(self, data: bytes) -> None:
        try:
            for payload in self._reader.feed(data):
                self._relay.answered(*decode_answer(payload))
        except FrameError as error:
            log.warning("tracker relay: %s; closing the stream", error)
            if self.transport is not None:
                self.transport.close()


class TrackerRelay:
    """A worker's end: what the lean tracker protocol asks of `TrackerService`, answered
    by the owner. The client's address is worked out here (X-Forwarded-For and trusted
    proxies, by this worker's own service), as the owner would have.

    A request waits on a plain future, failed with `AnswerUnavailable` when the owner cannot
    answer, its stream is lost or `timeout` passes (one timer for all of them): no task and
    no timeout context per announce, which cost as much as the announce's parse."""

    def __init__(
        self,
        path: Path,
        local: TrackerService,
        *,
        timeout: float = ANSWER_TIMEOUT,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self.path = path
        self._local = local
        self._timeout = timeout
        self._max_in_flight = max_in_flight
        self._ids = itertools.count(1)
        # In the order sent, so in deadline order too: (waiter, deadline on the loop's clock).
        self._pending: dict[int, tuple[asyncio.Future[bytes], float]] = {}
        self._expiry: asyncio.TimerHandle | None = None
        self._end: _WorkerEnd | None = None
        self._connecting: asyncio.Future[_WorkerEnd] | None = None
        self._retry_at = 0.0
        self.relayed = 0
        # Frames queued in one loop turn go out `RELAY_BATCH` at a time, the rest at its end.
        self._outbox: list[bytes] = []
        self._flush_queued = False

    def client_ip(self, peer_ip: str, forwarded_for: str | None) -> str:
        return self._local.client_ip(peer_ip, forwarded_for)

    def start_http_announce(
        self, raw_query: bytes, remote_ip: str, now: float
    ) -> bytes | asyncio.Future[bytes]:
        """The answer to an announce if it is ready at once (one that does not parse), else
        a future of it. Parsed here, with this worker's settings (the owner's: one
        configuration); the owner reads its own clock, the registry's timeline."""
        req = self._local.parse_http_announce(raw_query, remote_ip)
        if isinstance(req, bytes):
            return req
        fields = encode_announce_fields(req)
        end = self._end
        if end is None or end.transport is None:
            # Not connected yet (or the owner is restarting): connect first, in a task.
            return asyncio.ensure_future(self._ask(PARSED_ANNOUNCE, announce_client(req), fields))
        return self._send(PARSED_ANNOUNCE, announce_client(req), fields)

    async def handle_http_announce(self, raw_query: bytes, remote_ip: str, now: float) -> bytes:
        started = self.start_http_announce(raw_query, remote_ip, now)
        return started if isinstance(started, bytes) else await started

    async def handle_http_scrape(self, raw_query: bytes, remote_ip: str, now: float) -> bytes:
        return await self._ask(SCRAPE, remote_ip, raw_query)

    async def _ask(self, kind: int, client: str, query: bytes) -> bytes:
        end = await self._stream()
        if end.transport is None:
            raise AnswerUnavailable("the owner worker's tracker stream closed")
        return await self._send(kind, client, query)

    def _send(self, kind: int, client: str, query: bytes) -> asyncio.Future[bytes]:
        """Queue a request for the owner (written with others of the turn, `_flush`)."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bytes] = loop.create_future()
        if len(self._pending) >= self._max_in_flight:
            waiter.set_exception(
                AnswerUnavailable("too many tracker requests waiting for the owner")
            )
            return waiter
        request_id = next(self._ids) & 0xFFFFFFFF
        self._pending[request_id] = (waiter, loop.time() + self._timeout)
        if self._expiry is None:
            self._expiry = loop.call_later(self._timeout, self._expire)
        outbox = self._outbox
        outbox.append(encode_request(request_id, kind, client, query))
        if len(outbox) >= RELAY_BATCH:
            self._write(outbox)
        elif not self._flush_queued:
            self._flush_queued = True
            loop.call_soon(self._flush)
        return waiter

    def _flush(self) -> None:
        self._flush_queued = False
        if self._outbox:
            self._write(self._outbox)

    def _write(self, frames: list[bytes]) -> None:
        self._outbox = []
        end = self._end
        # A stream lost meanwhile has failed these requests already (`lost`).
        if end is not None and end.transport is not None and not end.transport.is_closing():
            end.transport.write(b"".join(frames))

    def _expire(self) -> None:
        self._expiry = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        pending = self._pending
        while pending:
            request_id, (waiter, deadline) = next(iter(pending.items()))
            if deadline > now:
                self._expiry = loop.call_later(deadline - now, self._expire)
                return
            del pending[request_id]
            if not waiter.done():
                waiter.set_exception(AnswerUnavailable("the owner worker did not answer in time"))

    async def _stream(self) -> _WorkerEnd:
        if self._end is not None:
            return self._end
        if self._connecting is None:
            if time.monotonic() < self._retry_at:
                raise AnswerUnavailable("the owner worker is not reachable")
            self._connecting = asyncio.ensure_future(self._connect())
        connecting = self._connecting
        try:
            return await asyncio.shield(connecting)
        finally:
            if connecting.done():
                self._connecting = None

    async def _connect(self) -> _WorkerEnd:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._timeout):
                _, end = await loop.create_unix_connection(lambda: _WorkerEnd(self), str(self.path))
        except (OSError, TimeoutError) as error:
            # The owner is (re)starting: tell clients to come back rather than queue them.
            self._retry_at = time.monotonic() + RECONNECT_AFTER
            raise AnswerUnavailable(f"the owner worker is not reachable: {error}") from None
        self._end = end
        return end

    def answered(self, request_id: int, body: bytes | None) -> None:
        entry = self._pending.pop(request_id, None)
        if entry is None or entry[0].done():
            return  # given up on already (timed out, or the client went away)
        if body is None:
            entry[0].set_exception(AnswerUnavailable("the owner worker could not answer now"))
            return
        self.relayed += 1
        entry[0].set_result(body)

    def lost(self, end: _WorkerEnd) -> None:
        if self._end is end:
            self._end = None
        pending, self._pending = self._pending, {}
        for waiter, _ in pending.values():
            if not waiter.done():
                waiter.set_exception(AnswerUnavailable("the owner worker's tracker stream closed"))

    async def close(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        end, self._end = self._end, None
        if end is not None and end.transport is not None:
            end.transport.close()
        if self._connecting is not None:
            self._connecting.cancel()
            with contextlib.suppress(BaseException):
                await self._connecting
            self._connecting = None
