"""The wire of worker_totals.py: a worker's push loop and the owner's handler.

A worker POSTs its totals (minus its baseline) to `TOTALS_PATH` on the owner's Unix socket,
naming its index, its incarnation and the owner incarnation it counts for. The owner keeps
them and answers 204 with its incarnation; a push that counts for another owner
incarnation gets 409 with the owner's, and the worker rebases (counts from now) before its
next push. The path exists only on the Unix socket: on TCP it is not found.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final

import aiohttp
from aiohttp import web

from s3torrent.metering.worker_totals import (
    PUSH_INTERVAL,
    Totals,
    WorkerTotals,
    decode,
    encode,
    totals_of,
)
from s3torrent.roles import on_unix_socket

if TYPE_CHECKING:
    from s3torrent.metering.meter import Meter

__all__ = ["TOTALS_PATH", "incarnation", "push_forever", "totals_handler"]

log = logging.getLogger(__name__)

TOTALS_PATH: Final = "/_internal/meter-totals"
MAX_BODY: Final = 1 << 20
WORKER: Final = "X-S3torrent-Worker-Index"
INCARNATION: Final = "X-S3torrent-Incarnation"
OWNER: Final = "X-S3torrent-Owner"


def incarnation() -> str:
    """This process's name among the ones that held its index."""
    return f"{os.getpid()}-{time.time_ns()}"


def totals_handler(others: WorkerTotals) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        if not on_unix_socket(request.transport):
            return web.Response(status=404)
        if request.method != "POST":
            return web.Response(status=405, headers={"Allow": "POST"})
        if request.content_length is None or request.content_length > MAX_BODY:
            return web.Response(status=413)
        try:
            worker = int(request.headers.get(WORKER, ""))
            born = request.headers[INCARNATION][:100]
            totals = decode(await request.content.readexactly(request.content_length))
        except (ValueError, KeyError, asyncio.IncompleteReadError):
            return web.Response(status=400)
        counted_for = request.headers.get(OWNER, "")
        answer = {OWNER: others.incarnation}
        if counted_for and counted_for != others.incarnation:
            return web.Response(status=409, headers=answer)
        if not others.update(worker, born, totals):
            return web.Response(status=503, headers=answer)
        return web.Response(status=204, headers=answer)

    return handle


async def push_forever(
    meter: Meter,
    session: Callable[[], aiohttp.ClientSession],
    worker: int,
    interval: float = PUSH_INTERVAL,
) -> None:
    """A non-owner worker's loop: its totals to the owner every `interval` (cancel to stop:
    what it counted since its last push is not shown)."""
    state = _PushState(worker)
    while True:
        await state.push(meter, session())
        await asyncio.sleep(interval)


class _PushState:
    def __init__(self, worker: int) -> None:
        self.worker = worker
        self.born = incarnation()
        self.owner = ""  # the owner incarnation our counts are for
        self.baseline = Totals()

    async def push(self, meter: Meter, session: aiohttp.ClientSession) -> None:
        current = totals_of(meter)
        headers = {WORKER: str(self.worker), INCARNATION: self.born, OWNER: self.owner}
        try:
            async with session.post(
                "http://owner" + TOTALS_PATH,
                data=encode(current.minus(self.baseline)),
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=5),
            ) as resp:
                owner = resp.headers.get(OWNER, "")
                if resp.status == 409 and owner:
                    # Another owner since our last push: what the old one showed is gone
                    # with it; count from now for this one.
                    self.baseline = totals_of(meter)
                    self.owner = owner
                elif resp.status == 204:
                    self.owner = owner
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.debug("meter totals to the owner: %s", exc)
