"""A lean HTTP/1.1 listener for announces and scrapes only (`tracker.http_listen`).

Announces are tiny GETs answered from memory, so a general HTTP stack costs more than the
tracker itself. This module is the minimum a tracker needs: a strict, bounded parser for a
request line and headers (sans-IO, `RequestHeadReader`), fixed response framing, and a thin
`asyncio.Protocol` that calls `TrackerService` with the same clock as the UDP adapter. GET
only, no request bodies; keep-alive and pipelining (answers strictly in request order).
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol, cast

from s3torrent.listeners import AtOnce, ConnectionGate, ConnectionPhase, Slot
from s3torrent.tracker.eager import start_eagerly

log = logging.getLogger(__name__)
# A one-shot answer is sent with MSG_MORE and the socket closed at once: the kernel holds
# the answer until the close and sends it with the FIN in one segment, which saves a
# segment and the client's wake-up for it each way (10 to 8 segments per connection over
# loopback), about 5 us of the answering worker's CPU per one-shot announce.
_MSG_MORE: Final = getattr(socket, "MSG_MORE", 0)

DEFAULT_MAX_REQUEST_BYTES: Final = 8192


@dataclass(frozen=True, slots=True)
class LeanHttpLimits:
    # Request line plus headers, terminator included; GETs carry nothing else.
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    # Seconds a connection may go without completing a request: idle keep-alive and slow
    # (slowloris) request heads alike.
    idle_timeout: float = 30.0
    # Open connections; beyond it a newcomer gets a 503 and is closed.
    max_connections: int = 4096


class HttpRequestError(Exception):
    """Input the parser refuses; the connection answers `status` and closes."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


class TrackerAnswers(Protocol):
    """What the protocol asks for each request: `TrackerService` in the process that holds
    the registry, `tracker.relay.TrackerRelay` in a worker that asks the owner."""

    def client_ip(self, peer_ip: str, forwarded_for: str | None) -> str: ...

    async def handle_http_announce(self, raw_query: bytes, remote_ip: str, now: float) -> bytes: ...

    async def handle_http_scrape(self, raw_query: bytes, remote_ip: str, now: float) -> bytes: ...


class AnnounceStarter(Protocol):
    """What `TrackerService` and `TrackerRelay` offer besides `TrackerAnswers`: an
    announce's answer now, or a future of it, without a coroutine or task per announce."""

    def __call__(
        self, raw_query: bytes, remote_ip: str, now: float
    ) -> bytes | asyncio.Future[bytes]: ...


class AnswerUnavailable(Exception):
    """The answer cannot be had now (the owner worker is restarting or overloaded): the
    client gets a 503 with Retry-After and comes back, as after any 503."""


@dataclass(frozen=True, slots=True)
class HttpRequestHead:
    target: bytes  # origin-form: path and raw (still percent-encoded) query
    keep_alive: bool
    forwarded_for: str | None  # X-Forwarded-For, repeated headers joined by ","
    # A head that a subclass answers otherwise, with what it needs to (front.py).
    other: object = None


# RFC 9110 token characters, for methods and header names.
_TOKEN: Final = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_REQUEST_LINE: Final = re.compile(rb"(" + _TOKEN + rb") (/[\x21-\x7e]*) HTTP/1\.([01])")
# A field value: visible ASCII or obs-text, inner spaces and tabs, optional whitespace around.
# One field line, name and value (shared with the S3 quick path, s3/quick.py).
FIELD_LINE: Final = re.compile(
    rb"(" + _TOKEN + rb"):[ \t]*((?:[\x21-\x7e\x80-\xff]+(?:[ \t]+[\x21-\x7e\x80-\xff]+)*)?)[ \t]*"
)


# The common head in one match: a GET and well-formed field lines (the same grammar as
# _REQUEST_LINE and FIELD_LINE), so that only heads naming a field we act on are split up.
_VALUE: Final = rb"(?:[\x21-\x7e\x80-\xff]+(?:[ \t]+[\x21-\x7e\x80-\xff]+)*)?"
_PLAIN_GET: Final = re.compile(
    rb"GET (/[\x21-\x7e]*) HTTP/1\.([01])((?:\r\n" + _TOKEN + rb":[ \t]*" + _VALUE + rb"[ \t]*)*)"
)
# Field names (lower case, after the CRLF that starts their line) that need the full parse.
_ACTED_ON: Final = (
    b"\r\nx-forwarded-for:",
    b"\r\ncontent-length:",
    b"\r\ntransfer-encoding:",
)
# Connection needs it too, but for the one form every libtorrent-based client sends.
_CONNECTION: Final = b"\r\nconnection:"
_CONNECTION_CLOSE: Final = b"\r\nconnection: close"


def keeps_alive(connection: list[bytes], http11: bool) -> bool:
    """Whether the connection stays open after the answer, from the request's `Connection`
    tokens (lower case): HTTP/1.1 unless told to close, HTTP/1.0 only when asked to."""
    return b"close" not in connection and (http11 or b"keep-alive" in connection)


def parse_request_head(head: bytes) -> HttpRequestHead:
    """One request line and its header lines, CRLF-separated, without the final blank line."""
    plain = _PLAIN_GET.fullmatch(head)
    if plain is not None:
        target, minor, fields = plain.groups()
        # Field values hold no CR or LF, so "\r\nname:" can only start a field line.
        names = fields.lower()
        if not any(name in names for name in _ACTED_ON):
            closing = False
            if _CONNECTION in names:
                # Exactly one field, exactly `close`: anything else takes the full parse.
                at = names.find(_CONNECTION_CLOSE)
                end = at + len(_CONNECTION_CLOSE)
                if (
                    at < 0
                    or names.count(_CONNECTION) != 1
                    or (end != len(names) and names[end : end + 2] != b"\r\n")
                ):
                    return _parse_request_head(head)
                closing = True
            hosts = names.count(b"\r\nhost:")
            http11 = minor == b"1"
            if hosts == 1 or (hosts == 0 and not http11):
                return HttpRequestHead(
                    target=target, keep_alive=http11 and not closing, forwarded_for=None
                )
    return _parse_request_head(head)


def _parse_request_head(head: bytes) -> HttpRequestHead:
    lines = head.split(b"\r\n")
    request_line = _REQUEST_LINE.fullmatch(lines[0])
    if request_line is None:
        raise HttpRequestError(400, "malformed request line")
    method, target, minor = request_line.groups()
    if method != b"GET":
        raise HttpRequestError(405, "only GET is served here")
    connection: list[bytes] = []
    forwarded: list[bytes] = []
    hosts = 0
    for line in lines[1:]:
        header = FIELD_LINE.fullmatch(line)
        if header is None:
            # Bare CR or LF, control bytes, space before the colon, obsolete line folding.
            raise HttpRequestError(400, "malformed header line")
        name = header.group(1).lower()
        value = header.group(2)
        if name == b"connection":
            connection += (token.strip().lower() for token in value.split(b","))
        elif name == b"x-forwarded-for":
            forwarded.append(value)
        elif name == b"host":
            hosts += 1
        elif name == b"content-length":
            # A body would have to be framed and skipped; announces never have one.
            if value != b"0":
                raise HttpRequestError(400, "request bodies are not accepted")
        elif name == b"transfer-encoding":
            raise HttpRequestError(400, "request bodies are not accepted")
    http11 = minor == b"1"
    if hosts > 1 or (http11 and hosts == 0):
        raise HttpRequestError(400, "HTTP/1.1 needs exactly one Host header")
    # HTTP/1.1 keeps the connection unless told to close; HTTP/1.0 closes unless asked not to.
    keep_alive = keeps_alive(connection, http11)
    return HttpRequestHead(
        target=target,
        keep_alive=keep_alive,
        forwarded_for=b",".join(forwarded).decode("latin-1") if forwarded else None,
    )


class RequestHeadReader:
    """Bytes in, request heads out, in order; never holds more than one request's bound.

    `feed` any split of the stream; `next_request` returns the next complete head, None
    while it is incomplete, and raises only `HttpRequestError`. After an error the stream
    has no request boundary to resume from, so every later call raises it again.
    """

    __slots__ = ("_buffer", "_error", "_max", "_skipped", "_start")

    def __init__(self, max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES) -> None:
        self._buffer = bytearray()
        self._start = 0  # consumed prefix, dropped lazily so pipelined input stays linear
        self._max = max_request_bytes
        self._error: HttpRequestError | None = None
        self._skipped = 0  # what the last skip consumed (unskip gives it back)

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as part of a request."""
        return len(self._buffer) - self._start

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def pending_head(self) -> bytes | None:
        """The next complete request head (without its blank line), not consumed; None
        while it is incomplete or beyond the bound (`buffered` tells which)."""
        buffer, start = self._buffer, self._start
        end = buffer.find(b"\r\n\r\n", start, start + self._max)
        return None if end < 0 else bytes(buffer[start:end])

    def startswith(self, prefix: bytes) -> bool:
        """Whether what is buffered starts with `prefix` (or with its beginning, if shorter)."""
        start = self._start
        return self._buffer[start : start + len(prefix)] == prefix[: self.buffered]

    def body_after(self, head: bytes, length: int) -> bytes | None:
        """The `length` bytes that follow `head` (from `pending_head`) and its blank line,
        not consumed; None while fewer have arrived."""
        begin = self._start + len(head) + 4
        if len(self._buffer) - begin < length:
            return None
        return bytes(self._buffer[begin : begin + length])

    def skip(self, head: bytes, body: int = 0) -> None:
        """Consume `head` (from `pending_head`), its blank line and `body` bytes after it.

        What earlier skips consumed is dropped here (only the last skip can be undone), so
        a keep-alive connection holds at most its last request and what followed it,
        however many requests it makes (a prefix delete moves the bytearray's start: no
        copy)."""
        start = self._start
        if start:
            del self._buffer[:start]
        self._start = self._skipped = len(head) + 4 + body

    def unskip(self) -> None:
        """Undo the last `skip`: its request is pending again, ahead of what followed."""
        assert self._start >= self._skipped
        self._start -= self._skipped
        self._skipped = 0

    def take(self) -> bytes:
        """Everything buffered and not consumed; the reader is empty afterwards."""
        rest = bytes(self._buffer[self._start :])
        self._buffer.clear()
        self._start = 0
        return rest

    def next_request(self) -> HttpRequestHead | None:
        if self._error is not None:
            raise self._error
        buffer, start = self._buffer, self._start
        if start:
            # What earlier requests took goes now, not only once no head is complete: a
            # client that always has its next request in flight would otherwise make this
            # hold every byte it sends (a prefix delete moves the start: no copy).
            del buffer[:start]
            start = self._start = 0
        end = buffer.find(b"\r\n\r\n", 0, self._max)
        if end < 0:
            if len(buffer) >= self._max:
                self._error = HttpRequestError(431, "request head too large")
                raise self._error
            return None
        self._start = end + 4
        try:
            return parse_request_head(bytes(buffer[start:end]))
        except HttpRequestError as error:
            self._error = error
            raise


_REASONS: Final = {
    200: b"OK",
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    503: b"Service Unavailable",
}
_OK_HEAD: Final = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "


def encode_response(status: int, body: bytes, *, keep_alive: bool) -> bytes:
    """A complete response: status line, Content-Type and Content-Length, then `body`."""
    if status == 200:
        head = _OK_HEAD
    else:
        reason = _REASONS.get(status, b"Error")
        head = b"HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: " % (status, reason)
    connection = b"\r\n\r\n" if keep_alive else b"\r\nConnection: close\r\n\r\n"
    return b"".join((head, b"%d" % len(body), connection, body))


def error_response(error: HttpRequestError) -> bytes:
    return encode_response(error.status, error.reason.encode("ascii") + b"\n", keep_alive=False)


_NOT_FOUND: Final = encode_response(404, b"not found\n", keep_alive=True)
_NOT_FOUND_CLOSE: Final = encode_response(404, b"not found\n", keep_alive=False)
_BUSY: Final = encode_response(503, b"too many connections\n", keep_alive=False)
_INTERNAL: Final = encode_response(500, b"internal error\n", keep_alive=False)
_UNAVAILABLE_BODY: Final = b"the tracker is not available; try again\n"
_UNAVAILABLE: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nRetry-After: 1\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
    % (len(_UNAVAILABLE_BODY), _UNAVAILABLE_BODY)
)


# --- asyncio adapter -----------------------------------------------------------------------


class LeanTrackerProtocol(asyncio.Protocol):
    """One client connection: parse heads, answer each in order, honour keep-alive."""

    def __init__(self, server: LeanHttpTracker) -> None:
        self._server = server
        self._service = server.service
        self._clock = server.clock
        self._reader = RequestHeadReader(server.limits.max_request_bytes)
        self._transport: asyncio.Transport | None = None
        self._remote = ""
        self._busy = False  # an answer is being computed by a task
        self._write_paused = False
        self._read_paused = False
        self._closing = False
        self._eof = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_request = 0.0
        self._idle_timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Future[Any] | None = None
        self._requests = 0  # heads read
        self._requests_seen = 0  # as of the gate's last look (served_since_last_look)
        # Set by a subclass that gives the rest of the connection to another protocol.
        self._hand_over_next = False

    @property
    def answering(self) -> bool:
        """An answer is owed or being computed (False: waiting for a request head)."""
        return self._busy

    def served_since_last_look(self) -> bool:
        """Whether a request came since the last call (answers made at once leave no
        busy phase for the gate to see, and its header deadline must restart)."""
        fresh = self._requests != self._requests_seen
        self._requests_seen = self._requests
        return fresh

    # -- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        if not self._server.admit(self):
            self._transport.write(_BUSY)
            self.close()
            return
        peer = transport.get_extra_info("peername")
        self._remote = str(peer[0]) if peer else ""
        self._loop = loop = asyncio.get_running_loop()
        self._last_request = loop.time()
        self._idle_timer = loop.call_later(self._server.limits.idle_timeout, self._check_idle)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._transport = None
        self._server.release(self)
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        if self._task is not None:
            self._task.cancel()

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        self._reader.feed(data)
        self._answer_ready_requests()

    def eof_received(self) -> bool | None:
        # The client half-closed: answer the requests it sent, then close.
        self._eof = True
        self._answer_ready_requests()
        return True  # keep our half open until the answers are written

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._answer_ready_requests()

    # -- requests

    def _answer_ready_requests(self) -> None:
        # Answers that are ready at once go out in one write, in request order.
        out: list[bytes] = []
        while not (self._busy or self._write_paused or self._closing):
            try:
                head = self._next_head()
            except HttpRequestError as error:
                out.append(error_response(error))
                self._closing = True
                break
            if head is None:
                if self._eof and not self._hand_over_next:
                    self._closing = True  # nothing more can come, and nothing is owed
                break
            assert self._loop is not None
            self._last_request = self._loop.time()
            self._requests += 1
            answer = self._dispatch(head)
            if answer is not None:
                out.append(answer)
                if not head.keep_alive:
                    self._closing = True
        self._flush(out)
        self._throttle_reading()

    def _next_head(self) -> HttpRequestHead | None:
        return self._reader.next_request()

    def _dispatch(self, head: HttpRequestHead) -> bytes | None:
        """The answer if it is ready now; None if a task will write it."""
        path, _, query = head.target.partition(b"?")
        forwarded = head.forwarded_for
        remote = (
            self._remote if forwarded is None else self._service.client_ip(self._remote, forwarded)
        )
        if path.endswith(b"/announce"):
            start = self._server.start_announce
            if start is not None:
                try:
                    started = start(query, remote, self._clock())
                except Exception:
                    log.exception("lean tracker request failed")
                    self._closing = True
                    return _INTERNAL
                return self._started(started, head)
            coro = self._service.handle_http_announce(query, remote, self._clock())
        elif path.endswith(b"/scrape"):
            coro = self._service.handle_http_scrape(query, remote, self._clock())
        else:
            return _NOT_FOUND if head.keep_alive else _NOT_FOUND_CLOSE
        try:
            begun = start_eagerly(coro) if self._server.eager else coro
        except Exception:
            log.exception("lean tracker request failed")
            self._closing = True
            return _INTERNAL
        return self._started(
            begun if isinstance(begun, bytes) else asyncio.ensure_future(begun), head
        )

    def _started(
        self, started: bytes | asyncio.Future[bytes], head: HttpRequestHead
    ) -> bytes | None:
        if isinstance(started, bytes):
            return encode_response(200, started, keep_alive=head.keep_alive)
        self._busy = True
        task = started
        self._task = task
        # The answer is written by the callback, with any requests pipelined behind it.
        task.add_done_callback(lambda done: self._finish(done, head.keep_alive))
        return None

    def _finish(self, task: asyncio.Future[bytes], keep_alive: bool) -> None:
        self._task = None
        self._busy = False
        if task.cancelled():
            return
        if self._transport is None:
            task.exception()  # retrieved: the client went away, nothing is owed
            return
        answer, keeps = answer_of(task, keep_alive)
        if not keeps:
            self._closing = True
            self._flush([answer])
            return
        self._transport.write(answer)
        self._answer_ready_requests()

    def _flush(self, out: list[bytes]) -> None:
        transport = self._transport
        if transport is None:
            return
        if out:
            transport.write(b"".join(out) if len(out) > 1 else out[0])
        if self._closing:
            self.close()

    def _throttle_reading(self) -> None:
        # Input beyond one request's bound waits in the kernel (and the client) while we
        # cannot consume it: a slow reader of answers cannot make us buffer without end.
        transport = self._transport
        if transport is None or self._closing:
            return
        blocked = self._busy or self._write_paused
        bound = self._server.limits.max_request_bytes
        if blocked and not self._read_paused and self._reader.buffered > bound:
            transport.pause_reading()
            self._read_paused = True
        elif self._read_paused and not blocked:
            transport.resume_reading()
            self._read_paused = False

    def _check_idle(self) -> None:
        # One timer per connection, re-armed only when it fires: requests just move the
        # deadline, which keeps timer churn off the per-request path.
        self._idle_timer = None
        if self._transport is None or self._loop is None:
            return
        remaining = self._last_request + self._server.limits.idle_timeout - self._loop.time()
        if remaining <= 0 and not self._busy:
            # Idle between requests, or a request head that never completed: done either way.
            self.close()
            return
        self._idle_timer = self._loop.call_later(max(remaining, 0.05), self._check_idle)

    def close(self) -> None:
        """Close after what was written so far; no further requests are read."""
        self._closing = True
        if self._transport is not None:
            self._transport.close()  # flushes what was written, then closes


class LeanHttpTracker:
    """The listener: owns the open connections and their cap."""

    def __init__(
        self,
        service: TrackerAnswers,
        clock: Callable[[], float] = time.monotonic,
        limits: LeanHttpLimits | None = None,
        *,
        eager: bool = False,
        gate: ConnectionGate | None = None,
    ) -> None:
        # The clock must be the one the UDP adapter and the aiohttp route pass as `now`:
        # peers from every transport share the registry and expire on one timeline.
        self.service = service
        self.clock = clock
        self.limits = limits or LeanHttpLimits()
        # Start answers inline rather than in a task per request. Only for a registry that
        # needs no current task (the in-memory one); Redis's client uses asyncio.timeout.
        self.eager = eager
        self.start_announce: AnnounceStarter | None = getattr(service, "start_http_announce", None)
        # The owner worker's main-listener front only: passes a connection that keeps
        # announcing to another worker (handoff.HandoffServer.give).
        self.give_away: Callable[[int], bool] | None = None
        self.connections: set[LeanTrackerProtocol] = set()
        # Connections answered from their first read (`answer_at_once`) whose answer is on
        # its way: socket and slot, closed with the listener.
        self.at_once: dict[socket.socket, Slot] = {}
        # How `answer_at_once` reads a head: None for one this listener does not answer
        # (the main listener's front routes by path and query: `front._answered_here`).
        self.at_once_head: Callable[[bytes], HttpRequestHead | None] = _parsed_or_none
        self._sending: set[asyncio.Task[None]] = set()
        # The process's connection caps and accept back-off; without one (tests), a plain
        # asyncio server with only this listener's own cap.
        self.gate = gate
        self._server: asyncio.AbstractServer | None = None

    def admit(self, connection: LeanTrackerProtocol) -> bool:
        if len(self.connections) + len(self.at_once) >= self.limits.max_connections:
            return False
        self.connections.add(connection)
        return True

    def answer_at_once(self, sock: socket.socket, slot: Slot, first: bytes) -> bool:
        """Answer a new connection whose first read is one whole announce that asks to
        close after it, as every libtorrent-based client's does (`Connection: close`, one
        connection per announce), without a transport: the answer goes out with one `send`
        and the socket is closed. False leaves the connection to the protocol (anything
        else: keep-alive, pipelined, partial, malformed, not an announce, at the cap)."""
        start = self.start_announce
        end = len(first) - 4
        if (
            start is None
            or end < 0
            or first.find(b"\r\n\r\n") != end
            or len(self.connections) + len(self.at_once) >= self.limits.max_connections
        ):
            return False
        head = self.at_once_head(first[:end])
        if head is None or head.keep_alive:
            return False  # the protocol answers it as it would any other
        path, _, query = head.target.partition(b"?")
        if not path.endswith(b"/announce"):
            return False
        remote = slot.peer  # as accepted: no `getpeername` per connection
        if head.forwarded_for is not None:
            remote = self.service.client_ip(remote, head.forwarded_for)
        self.at_once[sock] = slot
        try:
            started = start(query, remote, self.clock())
        except Exception:
            log.exception("lean tracker request failed")
            self._send_and_close(sock, _INTERNAL)
            return True
        if isinstance(started, bytes):
            self._send_and_close(sock, encode_response(200, started, keep_alive=False))
        else:
            started.add_done_callback(lambda done: self._answered_at_once(sock, done))
        return True

    def _answered_at_once(self, sock: socket.socket, done: asyncio.Future[bytes]) -> None:
        if sock not in self.at_once:
            return  # closed with the listener meanwhile
        if done.cancelled():
            self._send_and_close(sock, _UNAVAILABLE)
            return
        self._send_and_close(sock, answer_of(done, keep_alive=False)[0])

    def _send_and_close(self, sock: socket.socket, answer: bytes) -> None:
        try:
            sent = sock.send(answer, _MSG_MORE)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            sent = len(answer)  # the client went away: nothing is owed
        if sent < len(answer):
            # A fresh socket's send buffer holds far more than an answer; should it not,
            # the rest goes out from a task, bounded by the idle timeout.
            task = asyncio.get_running_loop().create_task(self._send_rest(sock, answer[sent:]))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)
            return
        self._close_at_once(sock)

    async def _send_rest(self, sock: socket.socket, rest: bytes) -> None:
        try:
            async with asyncio.timeout(self.limits.idle_timeout):
                await asyncio.get_running_loop().sock_sendall(sock, rest)
        except (OSError, TimeoutError):
            pass
        finally:
            self._close_at_once(sock)

    def _close_at_once(self, sock: socket.socket) -> None:
        slot = self.at_once.pop(sock, None)
        sock.close()
        if slot is not None:
            slot.release()

    def release(self, connection: LeanTrackerProtocol) -> None:
        self.connections.discard(connection)

    async def start(
        self, host: str, port: int, *, reuse_port: bool = False
    ) -> asyncio.AbstractServer:
        """Listen on host:port; returns the server (its sockets tell the bound port).
        With reuse_port, the workers of one machine take the port's connections together."""
        if self.gate is not None:
            self._server = await self.gate.start_listener(
                lambda: LeanTrackerProtocol(self),
                host,
                port,
                phase=lean_phase,
                name=f"http tracker {host}:{port}",
                refusal=_BUSY,
                reuse_port=reuse_port,
                at_once=AtOnce(self.answer_at_once, self.limits.max_request_bytes),
            )
            return self._server
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: LeanTrackerProtocol(self),
            host,
            port,
            backlog=1024,
            reuse_address=True,
            reuse_port=reuse_port or None,
        )
        return self._server

    async def close(self) -> None:
        """Stop listening and close every connection (answers already written go out)."""
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            connection.close()
        for task in list(self._sending):
            task.cancel()  # its socket closes as the task ends
        for sock in list(self.at_once):
            self._close_at_once(sock)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None


def answer_of(done: asyncio.Future[bytes], keep_alive: bool) -> tuple[bytes, bool]:
    """The response to a finished (not cancelled) announce or scrape, and whether the
    connection stays open after it: an owner that cannot answer now is a 503 to come back
    later, any other failure a 500, both closing."""
    error = done.exception()
    if isinstance(error, AnswerUnavailable):
        log.debug("tracker answer unavailable: %s", error)
        return _UNAVAILABLE, False
    if error is not None:
        log.error("lean tracker request failed", exc_info=error)
        return _INTERNAL, False
    return encode_response(200, done.result(), keep_alive=keep_alive), keep_alive


def _parsed_or_none(head: bytes) -> HttpRequestHead | None:
    try:
        return parse_request_head(head)
    except HttpRequestError:
        return None


def lean_phase(connection: LeanTrackerProtocol) -> ConnectionPhase:
    """The gate's view of a lean tracker connection (no request bodies here).

    A request answered since the gate last looked counts as busy once: the gate's header
    deadline then starts again from its next look, as after an aiohttp answer.
    """
    if connection.answering or connection.served_since_last_look():
        return ConnectionPhase.BUSY
    return ConnectionPhase.IDLE
