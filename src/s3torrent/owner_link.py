"""Requests that need the owner worker's memory, forwarded to it over a Unix socket.

The owner (worker 0 of `serve --workers N`) holds the tracker's in-memory registry, the
WebSocket tracker's browser swarms and the seeder with its per-torrent offload policy, on
which the web seed depends. Another worker that receives such a request sends it, as it
came, to the owner's HTTP application on `data_dir/owner.sock` and streams the answer back
unchanged (status, headers, body), with bounded buffers both ways; WebSockets are relayed
message by message. The client's address rides in `FORWARDED_CLIENT`, which the owner
believes only on its Unix socket (`trusted_client_middleware`): on TCP anyone could send it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from s3torrent.config import Settings
from s3torrent.events import Event
from s3torrent.events_local import REVOKED_HERE, EventHub, EventLink
from s3torrent.forwarding import client_address, client_secure
from s3torrent.roles import (
    FORWARDED_CLIENT,
    FORWARDED_CONNECTION,
    FORWARDED_SCHEME,
    Role,
    client_connection,
    on_unix_socket,
)
from s3torrent.s3.server import S3Application
from s3torrent.tracker.ws import WS_TRACKER_PATH
from s3torrent.webseed import WEB_SEED_PREFIX, WebSeed

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CHUNK: Final = 256 * 1024
# Headers of one connection, not of the message (RFC 9110 7.6.1), and our own.
HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        FORWARDED_CLIENT.lower(),
        FORWARDED_CONNECTION.lower(),
        FORWARDED_SCHEME.lower(),
    }
)
# Admin endpoints that read the tracker's registry or the seeder.
ADMIN_OWNER_PATHS: Final = frozenset({"/_admin/torrent/swarm", "/_admin/info"})
WORKER_HEADER: Final = "x-s3torrent-worker"
# What a relayed WebSocket handshake carries to the owner besides the client's address.
WS_HEADERS: Final = ("Host", "Origin", "User-Agent", "X-Forwarded-For")


def trusted_client_middleware() -> Callable[..., Awaitable[web.StreamResponse]]:
    """The owner's outermost middleware: a request that came over the Unix socket (from
    another worker) is handled as from the client address that worker saw."""

    @web.middleware
    async def trusted_client(request: web.Request, handler: Handler) -> web.StreamResponse:
        if on_unix_socket(request.transport):
            client = request.headers.get(FORWARDED_CLIENT)
            if client:
                scheme = request.headers.get(FORWARDED_SCHEME)
                if scheme in ("http", "https"):
                    request = request.clone(remote=client, scheme=scheme)
                else:
                    request = request.clone(remote=client)
        return await handler(request)

    return trusted_client


SETTLE_TIMEOUT: Final = 1.0


def settle_middleware(
    relay: EventHub | EventLink, held: Callable[[Event], Awaitable[bool]]
) -> Callable[..., Awaitable[web.StreamResponse]]:
    """A request is answered once what it changed has taken effect in every worker: a
    worker's revocations on the owner's seeder and tracker, the owner's user changes in
    every worker's user directory (bounded by SETTLE_TIMEOUT). `held(event)`: whether a
    revoking event may take back something some worker published (False: nothing to wait
    for; asked after the request's commit, see PublicTorrents.may_hold)."""

    hub = isinstance(relay, EventHub)

    @web.middleware
    async def settle(request: web.Request, handler: Handler) -> web.StreamResponse:
        revoked: list[tuple[int, Event]] = []
        token = REVOKED_HERE.set(revoked)
        try:
            response = await handler(request)
        finally:
            REVOKED_HERE.reset(token)
        marks = [mark for mark, event in revoked if await held(event)]
        if (
            hub
            and request.method not in ("GET", "HEAD")
            and request.path.startswith("/_admin/users")
            and response.status < 300
            and isinstance(relay, EventHub)
        ):
            marks.append(relay.broadcast("users"))
        if marks and not await relay.settled(max(marks), SETTLE_TIMEOUT):
            log.warning("%s: not every worker confirmed the change", request.path[:100])
        return response

    return settle


def route_to_owner(
    s3: S3Application,
    link: OwnerLink,
    admin: Handler,
    role: Role,
    settings: Settings,
    web_seed: WebSeed,
) -> None:
    """On a worker other than the owner: forward the paths that need the owner's memory
    (registered after the local routes, whose places in the table they take)."""
    if settings.tracker.websocket:
        s3.add_route(WS_TRACKER_PATH, link.forward_websocket)
    if settings.redis_url is None:  # else every worker shares the registry in Redis
        s3.add_route("/_tracker", link.forward)
        for path, (params, _local) in list(s3.query_routes.items()):
            s3.add_query_route(path, params, link.forward)
    s3.add_route(WEB_SEED_PREFIX, functools.partial(web_seed.relay, forward=link.forward))
    if settings.seeder.enabled:
        s3.add_route("/_seeder/stats", link.forward)
    if settings.metering.enabled:
        # The node's counters are summed at the owner (metering/worker_totals.py).
        s3.add_route("/_metrics", link.forward)

    async def admin_here_or_owner(request: web.Request) -> web.StreamResponse:
        # Changes go to the owner: one replay memory, and user changes it broadcasts.
        if request.path in ADMIN_OWNER_PATHS or request.method not in ("GET", "HEAD"):
            return await link.forward(request)
        return await admin(request)

    s3.add_route("/_admin", admin_here_or_owner)


def tag_worker(handler: Handler, role: Role) -> Handler:
    """`/_health` names the worker that answered (index/pid): which one served is visible."""
    tag = f"{role.index}/{os.getpid()}"

    async def tagged(request: web.Request) -> web.StreamResponse:
        response = await handler(request)
        response.headers[WORKER_HEADER] = tag
        return response

    return tagged


def _unavailable() -> web.Response:
    # The owner is (re)starting: the client tries again, as after any 503.
    return web.Response(
        status=503,
        headers={"Retry-After": "1", "Content-Type": "text/plain"},
        text="the server's owner worker is restarting; try again\n",
    )


class OwnerLink:
    """A non-owner worker's client of the owner's Unix socket."""

    def __init__(self, path: Path, *, max_ws_message: int, max_connections: int = 1024) -> None:
        self.path = path
        self.max_ws_message = max_ws_message
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self.forwarded = 0

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(str(self.path), limit=self.max_connections),
                auto_decompress=False,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
                # The client's own requests, not aiohttp's: no cookies kept, none added.
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    @staticmethod
    def _url(request: web.BaseRequest) -> URL:
        return URL("http://owner" + request.raw_path, encoded=True)

    async def forward(self, request: web.Request) -> web.StreamResponse:
        """Send request to the owner as it came; stream its answer back as it is."""
        headers: CIMultiDict[str] = CIMultiDict(
            (k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP
        )
        headers[FORWARDED_CLIENT] = client_address(request) or ""
        headers[FORWARDED_SCHEME] = "https" if client_secure(request) else "http"
        headers[FORWARDED_CONNECTION] = client_connection(request.transport, {}) or ""
        body = request.content.iter_chunked(CHUNK) if request.body_exists else None
        self.forwarded += 1
        try:
            upstream_cm = self.session.request(
                request.method,
                self._url(request),
                headers=headers,
                data=body,
                allow_redirects=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept", "Content-Type"),
            )
            upstream = await upstream_cm.__aenter__()
        except (aiohttp.ClientConnectionError, OSError) as exc:
            log.warning("forwarding %s to the owner worker failed: %s", request.path[:100], exc)
            return _unavailable()
        try:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            if upstream.headers.get("Connection", "").lower() == "close":
                # The owner closes after this answer (the web seed's refusals): the
                # client's connection closes too, and what it pipelined behind goes unanswered.
                response.force_close()
            for name, value in upstream.raw_headers:
                key = name.decode("latin-1")
                if key.lower() not in HOP_BY_HOP:
                    response.headers.add(key, value.decode("latin-1"))
            await response.prepare(request)
            try:
                async for chunk in upstream.content.iter_chunked(CHUNK):
                    await response.write(chunk)
            except aiohttp.ClientError:
                # The owner cut its answer short (the web seed does, at a piece boundary)
                # and closed: so do we, and the client sees the same short answer.
                response.force_close()
                if request.transport is not None:
                    request.transport.close()
                return response
            await response.write_eof()
            return response
        finally:
            await upstream_cm.__aexit__(None, None, None)

    async def forward_websocket(self, request: web.Request) -> web.StreamResponse:
        """Relay a WebSocket to the owner, message by message, both ways."""
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return await self.forward(request)
        headers = {k: request.headers[k] for k in WS_HEADERS if k in request.headers}
        headers[FORWARDED_CLIENT] = client_address(request) or ""
        headers[FORWARDED_SCHEME] = "https" if client_secure(request) else "http"
        try:
            upstream = await self.session.ws_connect(
                self._url(request),
                headers=headers,
                max_msg_size=self.max_ws_message,
                autoping=True,
            )
        except aiohttp.WSServerHandshakeError as exc:
            return web.Response(status=exc.status, text=f"{exc.message}\n")
        except (aiohttp.ClientConnectionError, OSError):
            return _unavailable()
        client = web.WebSocketResponse(max_msg_size=self.max_ws_message, autoping=True)
        try:
            await client.prepare(request)
            down = asyncio.create_task(_pump(upstream, client))
            up = asyncio.create_task(_pump(client, upstream))
            try:
                await asyncio.wait({down, up}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (down, up):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                        await task
            code = upstream.close_code or client.close_code or aiohttp.WSCloseCode.OK
            await client.close(code=code)
        finally:
            await upstream.close()
        return client

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


async def _pump(
    source: aiohttp.ClientWebSocketResponse | web.WebSocketResponse,
    sink: aiohttp.ClientWebSocketResponse | web.WebSocketResponse,
) -> None:
    async for msg in source:
        if msg.type == aiohttp.WSMsgType.TEXT:
            await sink.send_str(msg.data)
        elif msg.type == aiohttp.WSMsgType.BINARY:
            await sink.send_bytes(msg.data)
        else:
            break
