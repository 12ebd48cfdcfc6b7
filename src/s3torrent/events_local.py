"""Events across the workers of one machine without Redis: a hub on a Unix socket.

The owner worker runs `EventHub` on a socket in the data directory; every other worker runs
`EventLink`, which connects to it (again, with back-off, when the hub goes away). Each side
subscribes to its own bus and sends every event its bus publishes, one JSON line
(`events_redis.encode_event`); the hub publishes what a worker sent on the owner's bus and
sends it on to every other worker. An event received is published with the relay muted, so
no process sends back what it got. Queues are bounded: a link that cannot keep up loses
events (logged) and is closed, and its worker forgets what it cached (`on_gap`), since it
may have missed a revocation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

from s3torrent.events import Event, EventBus
from s3torrent.events_redis import decode_event, encode_event
from s3torrent.failures import logged_failure

log = logging.getLogger(__name__)

MAX_QUEUED = 10_000
MAX_LINE = 64 * 1024


class _Relay:
    """What the hub and the links share: the muted re-publication of received events."""

    def __init__(self, bus: EventBus, node_id: str) -> None:
        self.bus = bus
        self.node_id = node_id
        self._muted = False
        self.sent = 0
        self.received = 0
        self.dropped = 0

    def publish_received(self, raw: bytes) -> Event | None:
        try:
            sender, event = decode_event(raw)
        except ValueError:
            log.warning("event hub: ignoring a malformed message")
            return None
        if sender == self.node_id:
            return None
        self.received += 1
        self._muted = True
        try:
            self.bus.publish(event)
        finally:
            self._muted = False
        return event


async def _write_forever(queue: asyncio.Queue[bytes], writer: asyncio.StreamWriter) -> None:
    while True:
        line = await queue.get()
        writer.write(line)
        await writer.drain()


class EventHub(_Relay):
    """The owner's side: accepts the other workers and fans their events out."""

    def __init__(self, bus: EventBus, node_id: str, path: Path) -> None:
        super().__init__(bus, node_id)
        self.path = path
        self._server: asyncio.AbstractServer | None = None
        self._peers: dict[asyncio.StreamWriter, asyncio.Queue[bytes]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.bus.subscribe(self._on_local)
        self.path.unlink(missing_ok=True)
        self._server = await asyncio.start_unix_server(self._serve, self.path, limit=MAX_LINE)
        self.path.chmod(0o600)

    def _on_local(self, event: Event) -> None:
        if not self._muted:
            self._fan_out(encode_event(event, self.node_id) + b"\n", None)

    def _fan_out(self, line: bytes, source: asyncio.StreamWriter | None) -> None:
        for writer, queue in list(self._peers.items()):
            if writer is source:
                continue
            try:
                queue.put_nowait(line)
                self.sent += 1
            except asyncio.QueueFull:
                # It missed an event: cut it off; it reconnects and forgets its caches.
                self.dropped += 1
                log.warning("event hub: a worker is %d events behind; disconnecting it", MAX_QUEUED)
                writer.close()
                self._peers.pop(writer, None)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[bytes] = asyncio.Queue(MAX_QUEUED)
        self._peers[writer] = queue
        sender = asyncio.create_task(_write_forever(queue, writer))
        try:
            while True:
                line = await reader.readline()
                if not line.endswith(b"\n"):
                    break  # closed (or a line past MAX_LINE)
                if self.publish_received(line) is not None:
                    self._fan_out(line, writer)
        except (ConnectionError, ValueError, asyncio.LimitOverrunError) as exc:
            log.warning("event hub: a worker's link failed (%s)", exc)
        finally:
            self._peers.pop(writer, None)
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await sender
            writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._peers):
                writer.close()
            with logged_failure(log, "event hub: closing"):
                await asyncio.wait_for(self._server.wait_closed(), 5)
        self.path.unlink(missing_ok=True)


class EventLink(_Relay):
    """A non-owner worker's side: its events to the hub, everyone else's onto its bus."""

    def __init__(
        self,
        bus: EventBus,
        node_id: str,
        path: Path,
        *,
        on_gap: Callable[[], None] | None = None,
        reconnect_delay: float = 0.05,
        max_reconnect_delay: float = 1.0,
    ) -> None:
        super().__init__(bus, node_id)
        self.path = path
        self.on_gap = on_gap
        self.reconnect_delay = reconnect_delay
        self.max_reconnect_delay = max_reconnect_delay
        self._outbox: asyncio.Queue[bytes] = asyncio.Queue(MAX_QUEUED)
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.connects = 0

    def _on_local(self, event: Event) -> None:
        if self._muted:
            return
        try:
            self._outbox.put_nowait(encode_event(event, self.node_id) + b"\n")
        except asyncio.QueueFull:
            self.dropped += 1

    async def start(self, timeout: float = 30.0) -> None:
        """Start relaying; returns once connected to the hub (bounded by timeout)."""
        self.bus.subscribe(self._on_local)
        self._task = asyncio.create_task(self._run_forever())
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def _run_forever(self) -> None:
        delay = self.reconnect_delay
        while True:
            try:
                reader, writer = await asyncio.open_unix_connection(self.path, limit=MAX_LINE)
            except OSError:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_reconnect_delay)
                continue
            delay = self.reconnect_delay
            self.connects += 1
            if self.connects > 1:
                log.warning("event hub: reconnected; forgetting cached publication state")
                if self.on_gap is not None:
                    self.on_gap()
            self._connected.set()
            sender = asyncio.create_task(_write_forever(self._outbox, writer))
            try:
                while True:
                    line = await reader.readline()
                    if not line.endswith(b"\n"):
                        break
                    self.publish_received(line)
            except (ConnectionError, ValueError, asyncio.LimitOverrunError) as exc:
                log.warning("event hub: link lost (%s)", exc)
            finally:
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                    await sender
                writer.close()
            self._connected.clear()

    async def close(self, drain_timeout: float = 2.0) -> None:
        """Send what is queued (bounded), then stop."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain_timeout
        while not self._outbox.empty() and self._connected.is_set() and loop.time() < deadline:
            await asyncio.sleep(0.01)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError), logged_failure(log, "event link"):
                await self._task
