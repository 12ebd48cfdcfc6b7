"""The WebSocket tracker's transport: aiohttp WebSockets around `WsTracker` (thin).

Every announce and scrape asks `admit` (the one access decision, with the peer's address,
through `PublicTorrents`) before the sans-IO core sees it; a revocation reaches `revoke`,
which stops relaying for the torrent at once and asks the decision again for each of its
sockets' addresses (a revocation may be an access change that leaves the torrent public):
those still admitted stay in its swarm, the others are told within `REDECIDE_TIMEOUT`,
and a socket left with no torrent is closed. Announces spend the HTTP tracker's budget per
address (`TokenBuckets`, `tracker.announce_rate_per_ip`): each may carry offers that every
receiving browser answers by setting up a WebRTC connection. Each connection has one
bounded outbox drained by its own writer, so a slow browser cannot hold up the relay to the
others: when its outbox is full (in messages or in characters) it is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import WSMsgType, web

from s3torrent.config import TrackerSettings
from s3torrent.tracker.protocol import TrackerError, normalize_ip
from s3torrent.tracker.registry import RATE_LIMITED, RegistryLimits, TokenBuckets, rate_limit_source
from s3torrent.tracker.ws_protocol import (
    Action,
    Close,
    Send,
    WsAnnounce,
    WsAnswer,
    WsLimits,
    WsProtocolError,
    WsRequest,
    WsTracker,
    failure,
    parse_message,
)

log = logging.getLogger(__name__)

WS_TRACKER_PATH = "/_tracker/ws"
NOT_PUBLIC = "unregistered torrent"
# Messages, and characters, waiting for one socket; a browser this far behind is dropped.
# The count alone let one socket that never reads hold 256 relayed offers of up to
# `ws_max_message_bytes` each (16 MiB at the default), per socket of every address.
OUTBOX_SIZE = 256
OUTBOX_CHARS = 1 << 20
# How long a revoked swarm's sockets may wait for the decision asked again; those not
# decided by then are told the torrent is no longer public.
REDECIDE_TIMEOUT = 0.8

# May a peer at this address use this swarm id now? (PublicTorrents.admit, as a bool)
Admit = Callable[[bytes, str | None], Awaitable[bool]]
ClientIp = Callable[[web.BaseRequest], str]


def _canonical(ip: str) -> str:
    """The client's address as the trackers write it: a dual-stack socket's IPv4-mapped
    IPv6 is its IPv4 address (one client, not one of a /64 that every IPv4 client shares)."""
    try:
        return normalize_ip(ip)
    except TrackerError:
        return ip  # not an address (no peer name): counted as it is


class _Socket:
    __slots__ = ("closing", "outbox", "queued", "ws")

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.outbox: asyncio.Queue[Action] = asyncio.Queue(OUTBOX_SIZE)
        self.queued = 0  # characters of the Sends in the outbox
        self.closing = False


class WebSocketTracker:
    """The handler of `/_tracker/ws`: one `WsTracker`, many sockets."""

    def __init__(
        self, core: WsTracker, admit: Admit, client_ip: ClientIp, rate: TokenBuckets
    ) -> None:
        self.core = core
        self.admit = admit
        self.client_ip = client_ip
        self.rate = rate
        self._sockets: dict[int, _Socket] = {}
        self._next = 0
        self._deciding: set[asyncio.Task[None]] = set()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        limits = self.core.limits
        ws = web.WebSocketResponse(
            max_msg_size=limits.max_message_bytes,
            heartbeat=limits.interval / 2,
            autoping=True,
        )
        if not ws.can_prepare(request).ok:
            return web.Response(status=426, text="a WebSocket tracker: connect with ws://\n")
        self._next += 1
        conn = self._next
        ip = _canonical(self.client_ip(request))
        if not self.core.connect(conn, ip):
            return web.Response(status=429, text="too many tracker connections from you\n")
        socket = _Socket(ws)
        self._sockets[conn] = socket
        writer = asyncio.get_running_loop().create_task(self._write(socket))
        try:
            await ws.prepare(request)
            await self._read(conn, socket, ip)
        finally:
            self.core.disconnect(conn)
            self._sockets.pop(conn, None)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            if not ws.closed:
                with contextlib.suppress(Exception):
                    await ws.close()
        return ws

    async def _read(self, conn: int, socket: _Socket, ip: str) -> None:
        ws = socket.ws
        while not socket.closing:
            try:
                msg = await ws.receive(timeout=self.core.limits.idle_timeout)
            except TimeoutError:
                await ws.close(code=1000, message=b"idle")
                return
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                return
            if msg.type is WSMsgType.ERROR:
                # Oversized frames and protocol errors: aiohttp has closed with 1009/1002.
                return
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                continue
            try:
                request = parse_message(msg.data, self.core.limits)
            except WsProtocolError as error:
                self._perform([Send(conn, failure(error.reason))])
                continue
            try:
                actions = await self._answer(conn, request, ip)
            except Exception:
                # The decision's store failed: this message gets an answer, the socket lives.
                log.exception("websocket tracker request failed")
                actions = [Send(conn, failure("internal error"))]
            self._perform(actions)

    async def _answer(self, conn: int, request: WsRequest, ip: str) -> list[Action]:
        if isinstance(request, WsAnswer):
            return self.core.answer(conn, request)
        if isinstance(request, WsAnnounce):
            # As the HTTP tracker's: leaving is never refused (the peer would linger).
            if request.event != "stopped" and not self.rate.allow(
                rate_limit_source(ip), time.monotonic()
            ):
                return self.core.refuse(conn, request, RATE_LIMITED)
            if not await self.admit(request.info_hash, ip):
                return self.core.refuse(conn, request, NOT_PUBLIC)
            return self.core.announce(conn, request)
        admitted = tuple([h for h in request.info_hashes if await self.admit(h, ip)])
        return self.core.scrape(conn, admitted)

    def counters(self, swarm_id: bytes) -> tuple[int, int, int]:
        """(completed, uploaded, downloaded) of this node's browser swarm, for metering."""
        stats = self.core.stats(swarm_id)
        return stats.completed, stats.uploaded, stats.downloaded

    def revoke(self, swarm_ids: tuple[bytes, ...]) -> None:
        """A torrent was revoked (revocation listener): nothing is relayed for it from now
        on, and its sockets are decided again."""
        for swarm_id in swarm_ids:
            generation = self.core.suspend(swarm_id)
            if generation is None:
                continue
            task = asyncio.get_running_loop().create_task(self._decide_again(swarm_id, generation))
            self._deciding.add(task)
            task.add_done_callback(self._deciding.discard)

    async def _decide_again(self, swarm_id: bytes, generation: int) -> None:
        """Ask the decision again for each address of a suspended swarm (one answer per
        address), and resume it: the admitted sockets' peers rejoin, the others are told."""
        admitted: list[int] = []
        try:
            async with asyncio.timeout(REDECIDE_TIMEOUT):
                decided: dict[str, bool] = {}
                for conn, ip in self.core.suspended_addresses(swarm_id).items():
                    if ip not in decided:
                        decided[ip] = await self.admit(swarm_id, ip)
                    if decided[ip]:
                        admitted.append(conn)
        except TimeoutError:
            log.warning("websocket tracker: deciding a revoked swarm again took too long")
        except Exception:
            log.exception("websocket tracker: deciding a revoked swarm again failed")
        finally:
            self._perform(self.core.resume(swarm_id, generation, admitted))

    def _perform(self, actions: list[Action]) -> None:
        for action in actions:
            socket = self._sockets.get(action.conn)
            if socket is None or socket.closing:
                continue
            if isinstance(action, Close):
                socket.closing = True
            size = len(action.text) if isinstance(action, Send) else 0
            try:
                if socket.queued + size > OUTBOX_CHARS:
                    raise asyncio.QueueFull
                socket.outbox.put_nowait(action)
                socket.queued += size
            except asyncio.QueueFull:
                socket.closing = True
                self.core.disconnect(action.conn)
                asyncio.get_running_loop().create_task(socket.ws.close(code=1008, message=b"slow"))

    async def _write(self, socket: _Socket) -> None:
        ws = socket.ws
        try:
            while True:
                action = await socket.outbox.get()
                if isinstance(action, Close):
                    await ws.close(code=1000, message=action.reason.encode()[:120])
                    return
                socket.queued -= len(action.text)
                await ws.send_str(action.text)
        except (ConnectionError, RuntimeError):
            return  # the browser went away; the reader sees the close

    async def close(self) -> None:
        for task in list(self._deciding):
            task.cancel()
        for socket in list(self._sockets.values()):
            socket.closing = True
            with contextlib.suppress(Exception):
                await socket.ws.close(code=1001, message=b"shutdown")


def websocket_tracker(
    settings: TrackerSettings, admit: Admit, client_ip: ClientIp
) -> WebSocketTracker:
    """The WebSocket tracker with the bounds from the tracker settings."""
    limits = WsLimits(
        max_message_bytes=settings.ws_max_message_bytes,
        max_offers=settings.ws_max_offers,
        max_peers_per_swarm=settings.ws_max_peers_per_swarm,
        max_connections_per_ip=settings.ws_max_connections_per_ip,
        max_scrape_hashes=settings.max_scrape_hashes,
        interval=settings.ws_interval,
        idle_timeout=settings.ws_idle_timeout,
    )
    rate = TokenBuckets(
        settings.announce_rate_per_ip,
        settings.announce_rate_burst,
        RegistryLimits().rate_table_size,
    )
    return WebSocketTracker(WsTracker(limits), admit, client_ip, rate)
