"""Events across the workers of one machine without Redis: a hub on a Unix socket.

The owner worker runs `EventHub` on a socket in the data directory; every other worker runs
`EventLink`, which connects to it (again, with back-off, when the hub goes away). Each side
subscribes to its own bus and sends every event its bus publishes, one JSON line
(`events.encode_event`); the hub publishes what a worker sent on the owner's bus and
sends it on to every other worker. An event received is published with the relay muted, so
no process sends back what it got. Besides events, the hub broadcasts named controls
(`!users`: reload the user directory).

Every line the hub sends a worker carries an id, which the worker acknowledges once it has
applied it (`+ID`); the hub acknowledges a worker's own line (`+`, in order) once the owner
has published it and every other worker has applied it. So `settled()` tells a worker, or
the owner, that what it published has taken effect everywhere: a request that revoked a
torrent is answered only then (bounded by a timeout). Queues are bounded: a worker that
falls too far behind is disconnected, and a link that reconnects calls `on_gap`, since it
may have missed a revocation.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

from s3torrent.events import (
    AccessChanged,
    Event,
    EventBus,
    ObjectDeleted,
    ObjectWritten,
    decode_event,
    encode_event,
    local_only,
)
from s3torrent.failures import logged_failure

log = logging.getLogger(__name__)

MAX_QUEUED = 10_000
MAX_LINE = 64 * 1024
# At most this many queued lines are joined into one write (bounded: at most 4 MiB).
_MAX_LINES_PER_WRITE = 64
Control = Callable[[], Awaitable[None]]
# Set by the request that is running (`owner_link.settle_middleware`): the marks of the
# revoking events it published, with the events, to wait for before it is answered.
REVOKED_HERE: ContextVar[list[tuple[int, Event]] | None] = ContextVar("revoked_here", default=None)


def revokes(event: Event) -> bool:
    """Events after which something public may have stopped being so."""
    if isinstance(event, ObjectWritten):
        return event.replaced_version_id is not None
    return isinstance(event, AccessChanged | ObjectDeleted)


class _Relay:
    """What the hub and the links share: applying a received line with the relay muted."""

    def __init__(self, bus: EventBus, node_id: str, controls: Mapping[str, Control]) -> None:
        self.bus = bus
        self.node_id = node_id
        self.controls = dict(controls)
        self._muted = False
        self.received = 0
        self.dropped = 0

    async def apply(self, payload: bytes) -> bool:
        """Publish an event line on our bus, or run a control; False if it is neither."""
        if payload.startswith(b"!"):
            control = self.controls.get(payload[1:].strip().decode(errors="replace"))
            if control is None:
                return False
            with logged_failure(log, f"event hub: control {payload[:40]!r}"):
                await control()
            return True
        try:
            sender, event = decode_event(payload)
        except ValueError:
            log.warning("event hub: ignoring a malformed message")
            return False
        if sender == self.node_id:
            return False
        self.received += 1
        self._muted = True
        try:
            self.bus.publish(event, relayed=True)
        finally:
            self._muted = False
        return True


async def _write_forever(queue: asyncio.Queue[bytes], writer: asyncio.StreamWriter) -> None:
    while True:
        line = await queue.get()
        if queue.empty():
            writer.write(line)
        else:
            # Lines queued meanwhile (a burst of writes, their acknowledgements) go out
            # together: one system call, not one each.
            lines = [line]
            while not queue.empty() and len(lines) < _MAX_LINES_PER_WRITE:
                lines.append(queue.get_nowait())
            writer.write(b"".join(lines))
        await writer.drain()


@dataclass(slots=True)
class _Peer:
    writer: asyncio.StreamWriter
    queue: asyncio.Queue[bytes] = field(default_factory=lambda: asyncio.Queue(MAX_QUEUED))
    acks_due: deque[int] = field(default_factory=deque)  # ids of its lines, in order


class EventHub(_Relay):
    """The owner's side: accepts the other workers and fans their events out."""

    def __init__(
        self,
        bus: EventBus,
        node_id: str,
        path: Path,
        controls: Mapping[str, Control] | None = None,
    ) -> None:
        super().__init__(bus, node_id, controls or {})
        self.path = path
        self._server: asyncio.AbstractServer | None = None
        self._peers: dict[asyncio.StreamWriter, _Peer] = {}
        self._seq = 0
        # id -> (workers yet to apply it, the worker it came from or None for ours)
        self._pending: dict[int, tuple[set[asyncio.StreamWriter], _Peer | None]] = {}
        # Our own lines (events and controls) not yet applied everywhere, oldest first (some
        # may be done already: dropped from the left as the oldest one completes).
        self._own: deque[int] = deque()
        self._settled = _Marks()

    async def start(self) -> None:
        self.bus.subscribe(self._on_local)
        self.path.unlink(missing_ok=True)
        self._server = await asyncio.start_unix_server(self._serve, self.path, limit=MAX_LINE)
        self.path.chmod(0o600)

    def _on_local(self, event: Event) -> None:
        if not self._muted and not local_only(event):
            self._send(encode_event(event, self.node_id), None)

    def broadcast(self, control: str) -> int:
        """Send a control to every worker; `settled(mark)` waits until all applied it."""
        return self._send(b"!" + control.encode(), None)

    def mark(self) -> int:
        return self._seq

    async def settled(self, mark: int, timeout: float) -> bool:
        """True once everything we sent up to mark was applied by every worker."""
        self._own_settled()  # lines from the workers moved _seq meanwhile
        return await self._settled.reached(mark, timeout)

    def _own_settled(self) -> None:
        """Wake the waiters whose lines all reached every worker."""
        own = self._own
        while own and own[0] not in self._pending:
            own.popleft()
        self._settled.advance(own[0] - 1 if own else self._seq)

    def _send(self, payload: bytes, origin: _Peer | None) -> int:
        self._seq += 1
        ident = self._seq
        waiting: set[asyncio.StreamWriter] = set()
        line = b"%d %s\n" % (ident, payload)
        for writer, peer in list(self._peers.items()):
            if peer is origin:
                continue
            try:
                peer.queue.put_nowait(line)
                waiting.add(writer)
            except asyncio.QueueFull:
                # It missed an event: cut it off; it reconnects and forgets its caches.
                self.dropped += 1
                log.warning("event hub: a worker is %d lines behind; disconnecting it", MAX_QUEUED)
                self._drop(writer)
        if origin is not None:
            origin.acks_due.append(ident)
        else:
            self._own.append(ident)
        self._pending[ident] = (waiting, origin)
        if not waiting:
            self._complete(ident)
        return ident

    def _complete(self, ident: int) -> None:
        _, origin = self._pending.pop(ident, (set(), None))
        if origin is not None:
            self._acknowledge(origin)
        else:
            self._own_settled()

    def _acknowledge(self, origin: _Peer) -> None:
        """Acknowledge the worker's lines in order, each once every other worker has it."""
        while origin.acks_due and origin.acks_due[0] not in self._pending:
            origin.acks_due.popleft()
            with contextlib.suppress(asyncio.QueueFull):
                origin.queue.put_nowait(b"+\n")

    def _applied(self, writer: asyncio.StreamWriter, ident: int) -> None:
        entry = self._pending.get(ident)
        if entry is not None:
            entry[0].discard(writer)
            if not entry[0]:
                self._complete(ident)

    def _drop(self, writer: asyncio.StreamWriter) -> None:
        if self._peers.pop(writer, None) is None:
            return
        writer.close()
        for ident, (waiting, _) in list(self._pending.items()):
            if writer in waiting:
                self._applied(writer, ident)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = _Peer(writer)
        self._peers[writer] = peer
        sender = asyncio.create_task(_write_forever(peer.queue, writer))
        try:
            while True:
                line = await reader.readline()
                if not line.endswith(b"\n"):
                    break  # closed (or a line past MAX_LINE)
                if line.startswith(b"+"):
                    with contextlib.suppress(ValueError):
                        self._applied(writer, int(line[1:]))
                elif await self.apply(line.rstrip(b"\n")):
                    self._send(line.rstrip(b"\n"), peer)
                else:  # nothing to pass on: acknowledged in its turn
                    self._seq += 1
                    peer.acks_due.append(self._seq)
                    self._acknowledge(peer)
        except (ConnectionError, ValueError, asyncio.LimitOverrunError, asyncio.QueueFull) as exc:
            log.warning("event hub: a worker's link failed (%s)", exc)
        finally:
            self._drop(writer)
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await sender

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._peers):
                self._drop(writer)
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
        controls: Mapping[str, Control] | None = None,
        on_gap: Callable[[], None] | None = None,
        reconnect_delay: float = 0.05,
        max_reconnect_delay: float = 1.0,
    ) -> None:
        super().__init__(bus, node_id, controls or {})
        self.path = path
        self.on_gap = on_gap
        self.reconnect_delay = reconnect_delay
        self.max_reconnect_delay = max_reconnect_delay
        self._outbox: asyncio.Queue[bytes] = asyncio.Queue(MAX_QUEUED)
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._queued = 0  # our own lines ever queued
        self._acked = 0  # of those, acknowledged by the hub (or lost with a connection)
        self._settled = _Marks()
        self.connects = 0

    def _on_local(self, event: Event) -> None:
        if self._muted or local_only(event):
            return
        try:
            self._outbox.put_nowait(encode_event(event, self.node_id) + b"\n")
        except asyncio.QueueFull:
            self.dropped += 1
            return
        self._queued += 1
        marks = REVOKED_HERE.get()
        if marks is not None and revokes(event):
            marks.append((self._queued, event))

    def mark(self) -> int:
        return self._queued

    async def settled(self, mark: int, timeout: float) -> bool:
        """True once the hub acknowledged our lines up to mark (applied everywhere)."""
        return await self._settled.reached(mark, timeout)

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
            # Lines written to a lost connection are never acknowledged: count them done.
            self._acked = self._queued - self._outbox.qsize()
            self._settled.advance(self._acked)
            if self.connects > 1:
                log.warning("event hub: reconnected; deciding cached torrents again")
                if self.on_gap is not None:
                    self.on_gap()
            self._connected.set()
            try:
                await self._serve(reader, writer)
            except (ConnectionError, ValueError, asyncio.LimitOverrunError) as exc:
                log.warning("event hub: link lost (%s)", exc)
            finally:
                writer.close()
            self._connected.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        acks: asyncio.Queue[bytes] = asyncio.Queue(MAX_QUEUED)
        tasks = [
            asyncio.create_task(_write_forever(self._outbox, writer)),
            asyncio.create_task(_write_forever(acks, writer)),
        ]
        try:
            while True:
                line = await reader.readline()
                if not line.endswith(b"\n"):
                    return
                if line == b"+\n":
                    self._acked += 1
                    self._settled.advance(self._acked)
                    continue
                ident, _, payload = line.rstrip(b"\n").partition(b" ")
                await self.apply(payload)
                acks.put_nowait(b"+%s\n" % ident)
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                    await task

    async def close(self, drain_timeout: float = 2.0) -> None:
        """Send what is queued (bounded), then stop."""
        await self.settled(self._queued, drain_timeout)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError), logged_failure(log, "event link"):
                await self._task


# Waiters that gave up stay in the heap until the counter passes their marks; past this
# many, one that gives up clears them out (the counter may be stuck: a link that is down).
_MAX_STALE_WAITERS = 1024


class _Marks:
    """Waiters for a counter that only grows (lines applied everywhere), each woken once,
    when the counter reaches its mark: not every waiter at every step, so a burst of N
    writes waiting for their revocations costs N wake-ups, not N squared."""

    def __init__(self) -> None:
        self.count = 0
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []  # a heap by mark
        self._order = 0

    async def reached(self, mark: int, timeout: float) -> bool:
        """True once the counter reaches mark; False if `timeout` seconds pass first."""
        if self.count >= mark:
            return True
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._order += 1
        heapq.heappush(self._waiting, (mark, self._order, fut))
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            if len(self._waiting) > _MAX_STALE_WAITERS:  # the counter is stuck: prune
                self._waiting = [w for w in self._waiting if not w[2].done()]
                heapq.heapify(self._waiting)
            return self.count >= mark
        return True

    def advance(self, count: int) -> None:
        self.count = max(self.count, count)
        waiting = self._waiting
        while waiting and waiting[0][0] <= self.count:
            fut = heapq.heappop(waiting)[2]
            if not fut.done():
                fut.set_result(None)
