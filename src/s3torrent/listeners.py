"""Listeners with admission: the asyncio adapter around `s3torrent.admission`.

One `ConnectionGate` per process owns the connection caps (shared by every listener,
since they share one file descriptor limit) and the per-connection deadlines:

* a request head (line and headers) must arrive within `header_read_timeout` of the
  connection's start, or of the end of the previous request on keep-alive;
* while a request body is being received, `body_idle_timeout` seconds without a byte
  close the connection (not while reading is paused for our own back-pressure).

`Listener` replaces `loop.create_server`: it runs its own accept loop, so a connection
over a cap is closed before any protocol exists, and running out of descriptors pauses
accepting with one log line instead of asyncio's traceback per attempt. Protocols are
wrapped in `AdmittedProtocol`, which learns from a `PhaseProbe` whether the inner
protocol is waiting for a request, receiving a body, or busy. aiohttp's site for it is
`s3torrent.http_site.AdmittedSite`.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import errno
import logging
import random
import resource
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, cast

from s3torrent.admission import (
    EXHAUSTION_ERRNOS,
    AcceptBackoff,
    Admission,
    AdmissionLimits,
    Evictability,
    Refusal,
    client_key,
    connection_cap,
)
from s3torrent.forwarding import TrustedProxies

if TYPE_CHECKING:
    from s3torrent.config import LimitSettings

log = logging.getLogger(__name__)

ACCEPTS_PER_WAKE: Final = 128  # then let other callbacks run
CAP_REPORT_INTERVAL: Final = 60.0
# Seconds after the last exhaustion before a lowered cap is back to the configured one
# (the descriptors may have been held by a passing burst of file reads).
CAP_RESTORE_AFTER: Final = 30.0
# Header deadlines are spread over this fraction of the timeout: thousands of connections
# opened together (a flood) then time out over a while instead of in one loop iteration
# that would hold up accepting everybody else.
HEADER_SPREAD: Final = 0.1
# An `AtOnce` listener's TCP_DEFER_ACCEPT, in seconds: the kernel keeps a new connection
# until its first bytes arrive (an HTTP client always speaks first), or until about this
# long has passed, and then hands it over anyway, so a silent connection still meets the
# header deadline, only later. Linux only; elsewhere connections are accepted at once.
DEFER_ACCEPT: Final = 1
_TCP_DEFER_ACCEPT: Final[int | None] = getattr(socket, "TCP_DEFER_ACCEPT", None)
HTTP_REFUSAL: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 21\r\nConnection: close\r\n\r\ntoo many connections\n"
)


class ConnectionPhase(enum.Enum):
    IDLE = "idle"  # waiting for a request head: evictable, under the header deadline
    BODY = "body"  # receiving a request body: under the body idle deadline
    BUSY = "busy"  # computing or sending an answer: left alone


PhaseProbe = Callable[[Any], ConnectionPhase]
"""Tells the phase of a wrapped protocol (the inner protocol is passed)."""


def raise_file_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; the soft limit now (-1: unlimited)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (OSError, ValueError) as exc:
            # E.g. macOS refuses an unlimited soft limit: keep what we have.
            log.warning("cannot raise the open file limit from %d to %d: %s", soft, hard, exc)
    return -1 if soft == resource.RLIM_INFINITY else int(soft)


class Slot:
    """One admitted connection, as the gate sees it; its owner attaches and releases it.

    `ip` is the client's key for the per-address cap: an IPv4 address, or an IPv6 /64;
    `peer` the client's address as accepted, so that a taker needs no `getpeername` of its
    own.
    """

    __slots__ = ("_close", "_evictability", "_gate", "ip", "peer")

    def __init__(self, gate: ConnectionGate, ip: str, peer: str) -> None:
        self._gate = gate
        self.ip = ip
        self.peer = peer
        self._close: Callable[[], None] | None = None
        self._evictability: Callable[[], Evictability] | None = None

    def attach(self, close: Callable[[], None], evictability: Callable[[], Evictability]) -> None:
        """Make the slot evictable: `close` ends the connection, `evictability` tells when."""
        self._close = close
        self._evictability = evictability

    def evictability(self) -> Evictability:
        return Evictability.BUSY if self._evictability is None else self._evictability()

    def evict(self) -> None:
        if self._close is not None:
            self._close()

    def detach(self) -> None:
        """Not evictable again until the next `attach` (a connection changing hands)."""
        self._close = None
        self._evictability = None

    def release(self) -> None:
        """The connection is closed: free its place (idempotent)."""
        self._gate.admission.release(self)


@dataclass(frozen=True, slots=True)
class AtOnce:
    """A listener's way to answer a connection from its first read, without a transport
    (`ConnectionGate.start_listener`): `take(sock, slot, first_bytes)` is True when it took
    the connection, and then closes the socket and releases the slot itself."""

    take: Callable[[socket.socket, Slot, bytes], bool]
    max_bytes: int


class FirstRead:
    """A new connection of an `AtOnce` listener whose first bytes have not arrived: the
    socket waits for them on the loop's selector, with no transport or protocol yet, under
    the gate's header deadline; an idle newcomer to the gate, which may close it for
    another. When they come they are offered to `at_once`, else a protocol gets them."""

    __slots__ = (
        "_at_once",
        "_fd",
        "_loop",
        "_parked",
        "_serve",
        "_since",
        "_slot",
        "_sock",
        "_timer",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        slot: Slot,
        gate: ConnectionGate,
        at_once: AtOnce,
        serve: Serve,
        parked: set[FirstRead],
    ) -> None:
        self._loop = loop
        # The header deadline runs from here, through the protocol that may follow.
        self._since = loop.time()
        self._parked = parked
        parked.add(self)
        self._sock = sock
        self._slot = slot
        self._at_once = at_once
        self._serve = serve
        self._fd = sock.fileno()
        slot.attach(self._close, _no_request)
        self._timer: asyncio.TimerHandle | None = loop.call_later(
            gate.header_timeout * (1 + HEADER_SPREAD * random.random()), self._expire, gate
        )
        loop.add_reader(self._fd, self._readable)

    def _stop_waiting(self) -> None:
        if self not in self._parked:
            return  # done already: its descriptor may be another connection's by now
        self._parked.discard(self)
        self._loop.remove_reader(self._fd)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._slot.detach()  # busy until its taker attaches it again

    def close(self) -> None:
        self._close()

    def _close(self) -> None:
        self._stop_waiting()
        self._sock.close()
        self._slot.release()

    def _expire(self, gate: ConnectionGate) -> None:
        self._timer = None
        gate.header_timeouts += 1
        log.debug("closing %s: no request head in time", self._slot.ip)
        self._close()

    def _readable(self) -> None:
        first = _first_bytes(self._sock, self._at_once.max_bytes)
        if first is None:
            return
        self._stop_waiting()
        _hand_over(self._sock, self._slot, first, self._at_once, self._serve, self._since)


def _first_bytes(sock: socket.socket, most: int) -> bytes | None:
    """A new connection's first bytes; None if none have arrived, empty if it is closed."""
    try:
        return sock.recv(most)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:
        return b""


def _hand_over(
    sock: socket.socket,
    slot: Slot,
    first: bytes,
    at_once: AtOnce,
    serve: Serve,
    since: float | None,
) -> None:
    """A new connection's first bytes to `at_once`, else with them to a protocol; closed
    (its slot freed) if it ended without a request or its taker failed."""
    if first:
        try:
            if not at_once.take(sock, slot, first):
                serve(sock, slot, first, since)
            return
        except Exception:
            log.exception("serving a new connection failed")
    sock.close()
    slot.release()


# Serves an admitted socket with a protocol: its first bytes if read already, and since
# when it has been waiting for a request head (None: from now).
Serve = Callable[[socket.socket, Slot, bytes, float | None], None]


def _no_request() -> Evictability:
    return Evictability.NO_REQUEST


class ConnectionGate:
    """The process's connection caps and deadlines, shared by all its listeners."""

    def __init__(
        self,
        limits: AdmissionLimits,
        *,
        header_timeout: float,
        body_idle_timeout: float,
        proxies: TrustedProxies | None = None,
    ) -> None:
        self.admission: Admission[Slot] = Admission(limits)
        # Trusted reverse proxies speak for many clients: no per-address cap for them.
        self.proxies = proxies if proxies else None
        self.configured = limits
        self._lowered_at: float | None = None
        self.header_timeout = header_timeout
        self.body_idle_timeout = body_idle_timeout
        self.header_timeouts = 0
        self.body_timeouts = 0
        self._cap_reported_at: float | None = None

    @classmethod
    def from_settings(
        cls, limits: LimitSettings, proxies: TrustedProxies | None = None
    ) -> ConnectionGate:
        """The gate for this process: raises the file limit, caps connections below it."""
        soft = raise_file_limit()
        cap = connection_cap(limits.max_connections, soft, limits.file_reserve)
        if cap < limits.max_connections:
            log.info(
                "connection cap %d (open file limit %d, %d kept for files)",
                cap,
                soft,
                limits.file_reserve,
            )
        return cls(
            AdmissionLimits(max_connections=cap, max_per_ip=limits.max_connections_per_ip),
            header_timeout=limits.header_read_timeout,
            body_idle_timeout=limits.body_idle_timeout,
            proxies=proxies,
        )

    def stats(self) -> dict[str, int]:
        a = self.admission
        return {
            "open": len(a),
            "cap": a.limits.max_connections,
            "refused_per_ip": a.refused_per_ip,
            "refused_total": a.refused_total,
            "evicted": a.evicted,
            "header_timeouts": self.header_timeouts,
            "body_timeouts": self.body_timeouts,
        }

    def admit(self, ip: str, now: float, peer: str) -> Slot | Refusal:
        """A slot for a newcomer from `peer` (`ip`: its cap's key), closing an idle
        connection if needed, or why not."""
        lowered = self._lowered_at
        if lowered is not None and now - lowered >= CAP_RESTORE_AFTER:
            self._lowered_at = None
            self.admission.limits = self.configured
        slot = Slot(self, ip, peer)
        proxies = self.proxies
        shared = proxies is not None and proxies.trusts(peer)
        decision = self.admission.admit(slot, ip, Slot.evictability, shared=shared)
        if decision.refused is not None:
            if decision.refused is Refusal.TOTAL:
                self._report_cap(now, "no idle connection to close, refusing newcomers")
            return decision.refused
        if decision.evicted is not None:
            self._report_cap(now, "closing the longest-idle connections for newcomers")
            decision.evicted.evict()
        return slot

    def relieve(self, now: float) -> int:
        """Out of descriptors: lower the cap, close idle connections; how many closed."""
        self._lowered_at = now
        victims = self.admission.shrink(Slot.evictability)
        for victim in victims:
            victim.evict()
        return len(victims)

    def _report_cap(self, now: float, what: str) -> None:
        last = self._cap_reported_at
        if last is not None and now - last < CAP_REPORT_INTERVAL:
            return
        self._cap_reported_at = now
        log.warning(
            "connection cap %d reached: %s (%s)",
            self.admission.limits.max_connections,
            what,
            ", ".join(f"{k} {v}" for k, v in self.stats().items()),
        )

    async def start_listener(
        self,
        protocol_factory: Callable[[], asyncio.Protocol],
        host: str | None,
        port: int,
        *,
        phase: PhaseProbe,
        name: str,
        refusal: bytes = b"",
        backlog: int = 1024,
        reuse_port: bool = False,
        at_once: AtOnce | None = None,
    ) -> Listener:
        """Listen on host:port and serve each admitted connection with a wrapped protocol.

        With reuse_port (SO_REUSEPORT), several processes bind the same address and the
        kernel spreads new connections over them (the server's workers).

        `at_once` (with the most bytes to read for it): a new connection's first bytes, if
        they have already arrived, are offered to it before any transport exists; True: it
        took the connection (its socket and slot are its own now). Otherwise the protocol
        gets them as its first data. Such a listener also asks the kernel to hand over a
        connection only once its first bytes are there (TCP_DEFER_ACCEPT, `DEFER_ACCEPT`):
        the first read then rarely finds nothing, and a connection costs no wake-up of its
        own before its request."""
        loop = asyncio.get_running_loop()

        def serve(
            sock: socket.socket, slot: Slot, first: bytes = b"", since: float | None = None
        ) -> None:
            def make() -> asyncio.Protocol:
                return AdmittedProtocol(protocol_factory(), slot, self, phase, first, since)

            listener.track(loop.create_task(loop.connect_accepted_socket(make, sock)), sock, slot)

        def first_read(sock: socket.socket, slot: Slot) -> None:
            assert at_once is not None
            first = _first_bytes(sock, at_once.max_bytes)
            if first is None:
                # Nothing yet: wait for it without a transport (`FirstRead`).
                FirstRead(loop, sock, slot, self, at_once, serve, listener.parked)
            else:
                _hand_over(sock, slot, first, at_once, serve, None)

        listener = Listener(
            self, serve if at_once is None else first_read, name=name, refusal=refusal
        )
        await listener.bind(
            host,
            port,
            backlog,
            reuse_port=reuse_port,
            defer_accept=DEFER_ACCEPT if at_once is not None else 0,
        )
        return listener

    async def start_socket_listener(
        self,
        on_socket: Callable[[socket.socket, Slot], None],
        host: str | None,
        port: int,
        *,
        name: str,
        backlog: int = 1024,
    ) -> Listener:
        """Listen on host:port and hand each admitted, non-blocking socket to `on_socket`.

        For servers that drive sockets themselves (the seeder). The owner must call
        `slot.attach(close, evictability)` to let an idle connection be evicted, and
        `slot.release()` when it closes the socket.
        """
        listener = Listener(self, on_socket, name=name, refusal=b"")
        await listener.bind(host, port, backlog)
        return listener


# What a refused connection's request may hold, read before it is closed.
REFUSED_READ: Final = 65536


def _discard_received(sock: socket.socket) -> None:
    """Read what a connection about to be closed has sent (at most REFUSED_READ bytes).

    Closing a socket with unread bytes sends a reset, and a client that gets it may lose
    the refusal sent just before. With TCP_DEFER_ACCEPT a request is there at accept."""
    with contextlib.suppress(OSError):
        sock.recv(REFUSED_READ)


class Listener(asyncio.AbstractServer):
    """Listening sockets and their accept loop; admission decides before any protocol."""

    def __init__(
        self,
        gate: ConnectionGate,
        on_socket: Callable[[socket.socket, Slot], None],
        *,
        name: str,
        refusal: bytes,
    ) -> None:
        self.gate = gate
        self.name = name
        self._on_socket = on_socket
        self._refusal = refusal
        self._loop = asyncio.get_running_loop()
        self._sockets: list[socket.socket] = []
        self._backoff: dict[int, AcceptBackoff] = {}
        self._retries: dict[int, asyncio.TimerHandle] = {}
        self._starting: set[asyncio.Task[Any]] = set()
        # New connections waiting for their first bytes without a transport (`AtOnce`).
        self.parked: set[FirstRead] = set()
        self._serving = False

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return tuple(self._sockets)

    async def bind(
        self,
        host: str | None,
        port: int,
        backlog: int,
        *,
        reuse_port: bool = False,
        defer_accept: int = 0,
    ) -> None:
        infos = await self._loop.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        seen: set[tuple[Any, ...]] = set()
        try:
            for family, kind, proto, _, addr in infos:
                if (family, addr) in seen:
                    continue
                seen.add((family, addr))
                sock = socket.socket(family, kind, proto)
                self._sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if reuse_port:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if family == socket.AF_INET6:
                    # As asyncio does: '::' must not also take the IPv4 port.
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                if defer_accept and _TCP_DEFER_ACCEPT is not None:
                    sock.setsockopt(socket.IPPROTO_TCP, _TCP_DEFER_ACCEPT, defer_accept)
                sock.bind(addr)
                sock.listen(backlog)
                sock.setblocking(False)
        except OSError:
            self.close()
            raise
        for sock in self._sockets:
            self._backoff[sock.fileno()] = AcceptBackoff()
            self._loop.add_reader(sock.fileno(), self._on_readable, sock)
        self._serving = True

    def track(self, task: asyncio.Task[Any], sock: socket.socket, slot: Slot) -> None:
        # A strong reference until the transport exists; a failure frees the slot.
        self._starting.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._starting.discard(t)
            if t.cancelled() or t.exception() is not None:
                slot.release()
                sock.close()

        task.add_done_callback(done)

    def _on_readable(self, listening: socket.socket) -> None:
        backoff = self._backoff[listening.fileno()]
        # `socket.accept` converts the listening socket's family and type to enums for every
        # connection; the descriptor is wrapped here with them read once per wake-up.
        family, proto = listening.family, listening.proto
        for _ in range(ACCEPTS_PER_WAKE):
            try:
                fd, addr = listening._accept()  # type: ignore[attr-defined]
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue  # the client gave up while queued
            except OSError as exc:
                self._pause(listening, backoff, exc)
                return
            backoff.accepted()
            sock = socket.socket(family, socket.SOCK_STREAM, proto, fd)
            peer = str(addr[0])
            self._admit(sock, client_key(peer), peer)

    def adopt(self, sock: socket.socket) -> None:
        """Serve a connection accepted elsewhere (another worker handed it over:
        handoff.py) as if this listener had accepted it, through the same gate."""
        try:
            peer = sock.getpeername()
        except OSError:
            sock.close()  # the client left meanwhile
            return
        address = str(peer[0])
        self._admit(sock, client_key(address), address)

    def _admit(self, sock: socket.socket, ip: str, peer: str) -> None:
        sock.setblocking(False)
        verdict = self.gate.admit(ip, self._loop.time(), peer)
        if isinstance(verdict, Refusal):
            if self._refusal:
                with contextlib.suppress(OSError):
                    sock.send(self._refusal)
            _discard_received(sock)
            sock.close()
            return
        try:
            self._on_socket(sock, verdict)
        except Exception:
            verdict.release()
            sock.close()
            raise

    def _pause(self, listening: socket.socket, backoff: AcceptBackoff, exc: OSError) -> None:
        # The connection stays queued in the kernel; retry once descriptors may be free.
        # Files or outgoing sockets took the reserve: an idle connection gives one back.
        now = self._loop.time()
        relieved = 0
        if exc.errno in EXHAUSTION_ERRNOS and not backoff.backing_off:
            # Once per streak: if descriptors stay short, something else holds them, and
            # closing more connections would only feed it.
            relieved = self.gate.relieve(now)
        step = backoff.exhausted(now)
        if step.report:
            kind = "out of file descriptors" if exc.errno in EXHAUSTION_ERRNOS else "failing"
            log.warning(
                "%s: accept %s (%s), pausing accepts up to %.2fs%s; %d such errors since the "
                "last report; %d connections open, cap %d",
                self.name,
                kind,
                errno.errorcode.get(exc.errno or 0, exc.strerror or "?"),
                backoff.max_delay,
                f", cap lowered, {relieved} idle connections closed" if relieved else "",
                step.failures,
                len(self.gate.admission),
                self.gate.admission.limits.max_connections,
            )
        fd = listening.fileno()
        self._loop.remove_reader(fd)
        self._retries[fd] = self._loop.call_later(step.delay, self._resume, listening)

    def _resume(self, listening: socket.socket) -> None:
        fd = listening.fileno()
        self._retries.pop(fd, None)
        if self._serving:
            self._loop.add_reader(fd, self._on_readable, listening)

    # -- asyncio.AbstractServer

    def close(self) -> None:
        """Stop accepting; open connections stay (their owners close them). Connections
        still waiting for their first bytes (`FirstRead`) have no owner yet: closed here."""
        self._serving = False
        for parked in list(self.parked):
            parked.close()
        for handle in self._retries.values():
            handle.cancel()
        self._retries.clear()
        for sock in self._sockets:
            if sock.fileno() >= 0:
                with contextlib.suppress(ValueError, OSError):
                    self._loop.remove_reader(sock.fileno())
                sock.close()
        self._sockets.clear()

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return self._serving

    async def start_serving(self) -> None:
        return None  # serving from `bind` on

    async def serve_forever(self) -> None:
        while self._serving:
            await asyncio.sleep(1)

    async def wait_closed(self) -> None:
        return None


class AdmittedProtocol(asyncio.Protocol):
    """Wraps a connection's protocol: its slot in the gate and its two deadlines."""

    __slots__ = (
        "_check_every",
        "_first",
        "_gate",
        "_header_timeout",
        "_idle_since",
        "_inner",
        "_last_received",
        "_loop",
        "_probe",
        "_served",
        "_slot",
        "_timer",
        "_transport",
        "_waiting_since",
    )

    def __init__(
        self,
        inner: asyncio.Protocol,
        slot: Slot,
        gate: ConnectionGate,
        probe: PhaseProbe,
        first: bytes = b"",
        since: float | None = None,
    ) -> None:
        self._inner = inner
        # Bytes read before the transport existed (`AtOnce`): the protocol's first data;
        # and since when the connection has waited for a head (`FirstRead`), if before.
        self._first = first
        self._waiting_since = since
        self._slot = slot
        self._gate = gate
        self._probe = probe
        self._transport: asyncio.Transport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle_since: float | None = 0.0
        self._served = False  # a complete request was received
        self._last_received = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._header_timeout = gate.header_timeout
        # How often a busy connection is looked at: how late the header deadline of a
        # keep-alive connection can start after its answer (aiohttp's own is exact).
        self._check_every = max(0.25, min(gate.header_timeout, gate.body_idle_timeout) / 4)

    @property
    def inner(self) -> asyncio.Protocol:
        return self._inner

    def phase(self) -> ConnectionPhase:
        return self._probe(self._inner)

    def evictability(self) -> Evictability:
        if self._probe(self._inner) is not ConnectionPhase.IDLE:
            return Evictability.BUSY
        return Evictability.IDLE if self._served else Evictability.NO_REQUEST

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._loop = loop = asyncio.get_running_loop()
        now = loop.time()
        self._last_received = now
        since = self._waiting_since
        self._idle_since = waiting = now if since is None else min(since, now)
        self._slot.attach(self._close, self.evictability)
        self._header_timeout = self._gate.header_timeout * (1 + HEADER_SPREAD * random.random())
        self._timer = loop.call_at(waiting + self._header_timeout, self._check)
        self._inner.connection_made(transport)
        first, self._first = self._first, b""
        if first and not self._transport.is_closing():
            self.data_received(first)

    def data_received(self, data: bytes) -> None:
        assert self._loop is not None
        self._last_received = self._loop.time()
        self._inner.data_received(data)
        if self._idle_since is not None and self._probe(self._inner) is not ConnectionPhase.IDLE:
            self._idle_since = None  # a request head is complete
            self._served = True

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._slot.release()
        self._inner.connection_lost(exc)

    def _close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _check(self) -> None:
        # One timer per connection, re-armed when it fires: data only moves deadlines.
        self._timer = None
        transport, loop = self._transport, self._loop
        if transport is None or loop is None or transport.is_closing():
            return
        now = loop.time()
        phase = self._probe(self._inner)
        if phase is ConnectionPhase.IDLE:
            if self._idle_since is None:
                self._idle_since = now  # the answer ended since the last look
            deadline = self._idle_since + self._header_timeout
            if now >= deadline:
                self._gate.header_timeouts += 1
                log.debug("closing %s: no request head in time", self._slot.ip)
                transport.close()
                return
        elif phase is ConnectionPhase.BODY:
            self._idle_since = None
            if not transport.is_reading():
                self._last_received = now  # our back-pressure, not the client's silence
            deadline = self._last_received + self._gate.body_idle_timeout
            if now >= deadline:
                self._gate.body_timeouts += 1
                log.debug("closing %s: request body stalled", self._slot.ip)
                transport.close()
                return
            deadline = min(deadline, now + self._check_every)
        else:
            self._idle_since = None
            deadline = now + self._check_every
        self._timer = loop.call_at(deadline, self._check)


__all__ = [
    "HEADER_SPREAD",
    "HTTP_REFUSAL",
    "AdmittedProtocol",
    "ConnectionGate",
    "ConnectionPhase",
    "Listener",
    "Slot",
    "raise_file_limit",
]
