"""aiohttp served through a `ConnectionGate`: its site, and its connections' phases.

aiohttp has no header-read timeout of its own and no public view of where a connection
is in its request; `aiohttp_phase` reads the `RequestHandler` state that says so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Final

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from s3torrent.listeners import (
    HEADER_SPREAD,
    HTTP_REFUSAL,
    AtOnce,
    ConnectionGate,
    ConnectionPhase,
    Listener,
)

# The RequestHandler state `aiohttp_phase` reads; checked at start so that an aiohttp
# that renamed them fails loudly instead of timing out busy connections.
_AIOHTTP_STATE: Final = ("_current_request", "_request_in_progress", "_messages")


def aiohttp_phase(handler: Any) -> ConnectionPhase:
    """The phase of an aiohttp `RequestHandler` (aiohttp has no public view of it)."""
    request = handler._current_request
    if request is not None:
        return ConnectionPhase.BUSY if request.content.is_eof() else ConnectionPhase.BODY
    if handler._request_in_progress or handler._messages:
        return ConnectionPhase.BUSY  # writing an answer, or a parsed request queued
    return ConnectionPhase.IDLE


def aiohttp_keepalive_timeout(header_timeout: float) -> float:
    """The runner's `keepalive_timeout` for a gate's header timeout.

    aiohttp arms that timer at the connection's start and after each answer and closes a
    connection still waiting for a request when it fires: a backstop for the gate's own
    header deadline, set just past its spread so that a flood's connections are closed
    by the gate's deadlines, spread out, not by aiohttp's, all in one loop iteration.
    """
    return header_timeout * (1 + 2.5 * HEADER_SPREAD)


async def finish_bodies(server: web.Server, timeout: float, poll: float = 0.05) -> None:
    """Before aiohttp's own shutdown: every connection answers the request it is in and
    reads no other; one still receiving a request body receives the rest, for up to
    `timeout` seconds, and is then closed at once (as a stalled upload is).

    aiohttp's shutdown (`BaseRunner.cleanup`) begins by closing every connection, and a
    closed `RequestHandler` drops every byte that arrives after (its `data_received`
    returns at once): an upload still arriving at SIGTERM never got the rest of its body,
    waited out the whole shutdown timeout and was cancelled. Here a connection is closed
    only once its request is whole (aiohttp then answers it and closes the connection, and
    what the client sends after is a request it will not get answered), or while it waits
    for one."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        receiving = []
        for handler in list(server.connections):
            if aiohttp_phase(handler) is ConnectionPhase.BODY:
                receiving.append(handler)
            else:
                handler.close()  # idle: now; answering: after its answer
        if not receiving:
            return
        if loop.time() >= end:
            for handler in receiving:
                handler.force_close()
            return
        await asyncio.sleep(poll)


def check_aiohttp_state() -> None:
    missing = [name for name in _AIOHTTP_STATE if not hasattr(RequestHandler, name)]
    if missing:
        raise RuntimeError(f"this aiohttp's RequestHandler has no {', '.join(missing)}")


# Wraps the aiohttp server's protocol factory and phase probe: a protocol that answers some
# requests itself before aiohttp (the tracker's, `front.TrackerFront`).
PhaseProbe = Callable[[Any], ConnectionPhase]
Front = Callable[
    [Callable[[], asyncio.Protocol], PhaseProbe], tuple[Callable[[], asyncio.Protocol], PhaseProbe]
]


class AdmittedSite(web.BaseSite):
    """An aiohttp site served through a gate's `Listener` (instead of `TCPSite`).

    Give the runner `keepalive_timeout=aiohttp_keepalive_timeout(...)` too: aiohttp then closes a
    connection idle between requests exactly on time (this adapter's check may be late by
    a quarter of the timeout).
    """

    __slots__ = ("_at_once", "_front", "_gate", "_host", "_port", "_reuse_port")

    def __init__(
        self,
        runner: web.BaseRunner,
        gate: ConnectionGate,
        host: str | None,
        port: int,
        *,
        backlog: int = 1024,
        reuse_port: bool = False,
        front: Front | None = None,
        at_once: AtOnce | None = None,
    ) -> None:
        super().__init__(runner, backlog=backlog)
        # New connections' first bytes, offered before any protocol (the front's announces).
        self._at_once = at_once
        self._reuse_port = reuse_port
        self._gate = gate
        self._host = host
        self._port = port
        self._front = front

    @property
    def name(self) -> str:
        return f"http://{self._host or '0.0.0.0'}:{self._port}"

    @property
    def listener(self) -> Listener:
        assert isinstance(self._server, Listener), "site not started"
        return self._server

    async def start(self) -> None:
        check_aiohttp_state()
        await super().start()
        server = self._runner.server
        assert server is not None
        factory: Callable[[], asyncio.Protocol] = server
        phase: PhaseProbe = aiohttp_phase
        if self._front is not None:
            factory, phase = self._front(server, aiohttp_phase)
        self._server = await self._gate.start_listener(
            factory,
            self._host,
            self._port,
            phase=phase,
            name=f"http {self._host}:{self._port}",
            refusal=HTTP_REFUSAL,
            backlog=self._backlog,
            reuse_port=self._reuse_port,
            at_once=self._at_once,
        )
