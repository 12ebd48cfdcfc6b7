"""asyncio adapter for the BEP 15 tracker: datagrams in, `TrackerService.handle_udp` answers out."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from typing import cast

from s3torrent.tracker.eager import start_eagerly
from s3torrent.tracker.service import TrackerService

log = logging.getLogger(__name__)

# Datagrams being answered at once; beyond this we drop, as UDP allows, instead of queueing.
DEFAULT_MAX_IN_FLIGHT = 1024


class UdpTrackerProtocol(asyncio.DatagramProtocol):
    """Reads the clock, hands each datagram to the service, sends back what it returns."""

    def __init__(
        self,
        service: TrackerService,
        clock: Callable[[], float] = time.monotonic,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        *,
        eager: bool = False,
    ) -> None:
        # The clock must be the one the HTTP glue passes as `now`: peers announced over either
        # transport share the registry and expire against the same timeline.
        self._service = service
        self._clock = clock
        self._max_in_flight = max_in_flight
        self._transport: asyncio.DatagramTransport | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # Answer inline, without a task per datagram, up to the first suspension: only for a
        # registry that needs no current task (the in-memory one; see http_lean.start_eagerly).
        self._eager = eager

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector loop's datagram transport does not subclass DatagramTransport, uvloop's
        # does; both have sendto, which is all we use.
        self._transport = cast(asyncio.DatagramTransport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        for task in self._tasks:
            task.cancel()

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if len(self._tasks) >= self._max_in_flight:
            return
        # IPv6 addresses arrive as (host, port, flowinfo, scope_id); the service needs two.
        host, port = str(addr[0]), int(addr[1])
        coro = self._service.handle_udp(data, (host, port), self._clock())
        if self._eager:
            try:
                started = start_eagerly(coro)
            except Exception:
                log.exception("udp tracker request failed")
                return
            if started is None:
                return  # nothing to answer
            if isinstance(started, bytes):
                if self._transport is not None:
                    self._transport.sendto(started, addr)
                return
            answer: Awaitable[bytes | None] = started
        else:
            answer = coro
        task = asyncio.get_running_loop().create_task(self._send(answer, addr))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors from earlier sends (port unreachable): the client went away; nothing to do.
        log.debug("udp tracker socket error: %s", exc)

    async def _send(self, answering: Awaitable[bytes | None], addr: tuple[str | int, ...]) -> None:
        answer = await answering
        if answer is not None and self._transport is not None:
            self._transport.sendto(answer, addr)


async def start_udp_tracker(
    service: TrackerService,
    host: str,
    port: int,
    clock: Callable[[], float] = time.monotonic,
    *,
    eager: bool = False,
) -> asyncio.DatagramTransport:
    """Listen for BEP 15 requests on host:port (an IPv4 or IPv6 literal or name)."""
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_UNSPEC
    transport, _ = await loop.create_datagram_endpoint(
        lambda: UdpTrackerProtocol(service, clock, eager=eager),
        local_addr=(host, port),
        family=family,
    )
    return transport
