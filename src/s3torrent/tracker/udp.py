"""asyncio adapter for the BEP 15 tracker: datagrams in, `TrackerService.handle_udp` answers out.

The socket is read straight from the event loop (`add_reader`), not through a datagram
transport: each wake-up drains up to `DRAIN` datagrams and answers each with one `sendto`,
so a busy tracker pays one loop iteration per batch instead of one per datagram (the loop,
not the tracker, was most of an announce's cost). Each datagram is answered by a plain call
(`TrackerService.answer_udp_now`), with no coroutine; only one whose answer must wait (a
registry in Redis, a torrent resolved from the database) gets a task. An answer the socket
cannot take at once is dropped, as UDP allows; the client asks again.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

from s3torrent.tracker.service import LATER, TrackerService

log = logging.getLogger(__name__)

# Datagrams being answered at once by tasks; beyond this we drop, as UDP allows.
DEFAULT_MAX_IN_FLIGHT = 1024
# Datagrams read per wake-up of the loop: bounds how long other work waits behind a flood.
DRAIN = 64
# Every valid request fits (a scrape of the most hashes allowed is 1,496 bytes); anything
# longer is cut here and refused by the parser.
MAX_DATAGRAM = 2048


class UdpTracker:
    """One bound socket: reads the clock, hands each datagram to the service, answers."""

    def __init__(
        self,
        sock: socket.socket,
        service: TrackerService,
        clock: Callable[[], float] = time.monotonic,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    ) -> None:
        # The clock must be the one the HTTP glue passes as `now`: peers announced over either
        # transport share the registry and expire against the same timeline.
        self._sock: socket.socket | None = sock
        self._service = service
        self._clock = clock
        self._max_in_flight = max_in_flight
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop = asyncio.get_running_loop()
        sock.setblocking(False)
        self._loop.add_reader(sock.fileno(), self._readable)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """As a transport's: `sockname` and `socket`."""
        if self._sock is None:
            return default
        if name == "sockname":
            return self._sock.getsockname()
        if name == "socket":
            return self._sock
        return default

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        self._loop.remove_reader(sock.fileno())
        sock.close()
        for task in self._tasks:
            task.cancel()

    def is_closing(self) -> bool:
        return self._sock is None

    def _readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        answers: list[tuple[bytes, tuple[Any, ...]]] = []
        # One reading of the clock per wake-up: a batch is read within microseconds.
        now = self._clock()
        try:
            for _ in range(DRAIN):
                try:
                    data, addr = sock.recvfrom(MAX_DATAGRAM)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError as exc:
                    # ICMP errors from earlier sends (port unreachable): the client went away.
                    log.debug("udp tracker socket error: %s", exc)
                    continue
                answer = self._received(data, addr, now)
                if answer is not None:
                    answers.append((answer, addr))
        finally:
            # Sent together once the socket is drained: a client waiting for answers is
            # woken once for them all, not once per answer (on loopback the sender pays
            # for the wake-up, which cost more than the rest of an announce).
            for answer, addr in answers:
                self._send(answer, addr)

    def _received(self, data: bytes, addr: tuple[Any, ...], now: float) -> bytes | None:
        """The answer to send at once, if any."""
        # IPv6 addresses arrive as (host, port, flowinfo, scope_id); the service needs two.
        peer = addr if len(addr) == 2 else (addr[0], addr[1])
        answer = self._service.answer_udp_now(data, peer, now)
        if answer is LATER:
            # The registry waits (Redis) or the torrent is resolved from the database.
            if len(self._tasks) < self._max_in_flight:
                self._spawn(self._service.handle_udp(data, peer, self._clock()), addr)
            return None
        return answer

    def _spawn(self, answering: Awaitable[bytes | None], addr: tuple[Any, ...]) -> None:
        task = self._loop.create_task(self._answer_later(answering, addr))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer_later(
        self, answering: Awaitable[bytes | None], addr: tuple[Any, ...]
    ) -> None:
        answer = await answering
        if answer is not None:
            self._send(answer, addr)

    def _send(self, answer: bytes, addr: tuple[Any, ...]) -> None:
        sock = self._sock
        if sock is None:
            return
        try:
            sock.sendto(answer, addr)
        except OSError as exc:  # a full send buffer (BlockingIOError) included: dropped
            log.debug("udp tracker answer dropped: %s", exc)


async def start_udp_tracker(
    service: TrackerService,
    host: str,
    port: int,
    clock: Callable[[], float] = time.monotonic,
) -> UdpTracker:
    """Listen for BEP 15 requests on host:port (an IPv4 or IPv6 literal or name)."""
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_UNSPEC
    infos = await loop.getaddrinfo(host, port, family=family, type=socket.SOCK_DGRAM)
    if not infos:
        raise OSError(f"cannot resolve {host}")
    error: OSError | None = None
    for af, kind, proto, _, address in infos:
        sock = socket.socket(af, kind, proto)
        try:
            if af == socket.AF_INET6:
                # As the TCP listeners (listeners.py, asyncio): '[::]' takes IPv6 only, so
                # '0.0.0.0:6969,[::]:6969' binds both; dual-stack, '[::]' took the IPv4
                # port too and the second address could not be bound (the server did not
                # start).
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        return UdpTracker(sock, service, clock)
    assert error is not None
    raise error
