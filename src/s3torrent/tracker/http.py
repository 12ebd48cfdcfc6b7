"""The tracker's HTTP transport: aiohttp handlers around TrackerService (thin)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from s3torrent.tracker.service import TrackerService

BENCODE = "text/plain"


def tracker_handler(
    service: TrackerService, clock: Callable[[], float] = time.monotonic
) -> Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]:
    """One handler for .../announce and .../scrape (routed, or a bare `web.Server`)."""

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        path, _, raw_query = request.raw_path.partition("?")
        remote = service.client_ip(request.remote or "", request.headers.get("X-Forwarded-For"))
        query = raw_query.encode("latin-1", "replace")
        if path.endswith("/announce"):
            body = await service.handle_http_announce(query, remote, clock())
        elif path.endswith("/scrape"):
            body = await service.handle_http_scrape(query, remote, clock())
        else:
            raise web.HTTPNotFound()
        return web.Response(body=body, content_type=BENCODE)

    return handle
