"""Anonymous responses in flight, by object version, so that a revocation can cut them.

The seeder closes a revoked torrent's peer connections; a web-seed range GET or a plain
anonymous GET already streaming would otherwise go on to its end. The edges register each
such response here with a way to cut it and a way to ask the one decision again; a
revocation (``PublicTorrents.on_revoked``) or any change of access to its bucket or key
(``PublicTorrents.on_access_changed``, in every process, whether or not it published the
torrent) asks every response concerned, after the same short grace as the seeder (an access
change that keeps the object public revokes and republishes at once), and cuts those that
may no longer go on; so does the next time boundary of its bucket's policy, per response.
Until 2026-12-07 only a process's own revocations did: with two workers, the GETs the
worker that had not published the torrent served ran to their end.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import logging
import socket
import struct
import termios
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

__all__ = [
    "REVOCATION_GRACE",
    "AnonymousReads",
    "cut_transport",
    "reset_on_close",
    "reset_transport",
]

log = logging.getLogger(__name__)

REVOCATION_GRACE = 0.5  # seconds, as the seeder's
# A time boundary further off than this is not waited for by a response (none lasts a day).
MAX_RECHECK_IN = 86400.0


@dataclass(frozen=True, slots=True)
class _Read:
    cut: Callable[[], None]
    still_allowed: Callable[[], Awaitable[bool]]
    bucket: str | None = None
    key: str | None = None
    # Seconds to its bucket policy's next time boundary, read afresh (None: none ahead).
    next_boundary_in: Callable[[], Awaitable[float | None]] | None = None


def cut_transport(transport: asyncio.BaseTransport | None) -> None:
    """End a response now: shut the socket down so a write (or sendfile) in progress fails.

    A shutdown, not close(): the descriptor stays valid while a sendfile may be using it.
    """
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    else:
        transport.close()


def reset_transport(transport: asyncio.BaseTransport | None) -> int:
    """Close a revoked response's connection with a reset, once nothing writes to it; the
    bytes counted as sent that it drops (to take off what was metered).

    After `cut_transport` the kernel still sends what it holds (up to a send buffer, 4 MiB
    by default on Linux) at the client's pace, and a slow client went on receiving a
    revoked object for seconds. A reset drops what the kernel holds for the client, and
    what the transport still buffered, and those bytes never reach it."""
    if transport is None:
        return 0
    # What the transport still buffers (a closing one too, until it is flushed).
    dropped = transport.get_write_buffer_size() if isinstance(transport, asyncio.Transport) else 0
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.fileno() != -1:
        dropped += reset_on_close(sock)
    if isinstance(transport, asyncio.WriteTransport):
        transport.abort()
    else:
        transport.close()
    return dropped


# TCP states (linux/tcp_states.h) in which our FIN is sent or queued and not acknowledged.
_FIN_UNACKNOWLEDGED = frozenset({4, 9, 11})  # FIN_WAIT1, LAST_ACK, CLOSING
_TCP_INFO = getattr(socket, "TCP_INFO", None)  # Linux only


def _fin_unacknowledged(sock: socket.socket, tcp_info: int) -> bool:
    return sock.getsockopt(socket.IPPROTO_TCP, tcp_info, 1)[0] in _FIN_UNACKNOWLEDGED


def reset_on_close(sock: socket.socket) -> int:
    """Make the socket's close a reset (SO_LINGER 0), which drops what the kernel still
    holds for the peer; how many data bytes that is (those it has not acknowledged:
    SIOCOUTQ, less the FIN a shutdown queued, which takes a sequence number too)."""
    queued = 0
    with contextlib.suppress(OSError):
        queued = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]
        if queued > 0 and _TCP_INFO is not None and _fin_unacknowledged(sock, _TCP_INFO):
            queued -= 1
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return max(0, queued)


class AnonymousReads:
    """The registry of anonymous responses in flight."""

    def __init__(self, grace: float = REVOCATION_GRACE) -> None:
        self.grace = grace
        self._reads: dict[str, dict[int, _Read]] = {}
        self._tokens = itertools.count()
        self._tasks: set[asyncio.Task[None]] = set()
        # Per response: its re-decision at its bucket policy's next time boundary.
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self.cut_count = 0

    def track(
        self,
        version_id: str,
        cut: Callable[[], None],
        still_allowed: Callable[[], Awaitable[bool]],
        *,
        bucket: str | None = None,
        key: str | None = None,
        recheck_in: float | None = None,
        next_boundary_in: Callable[[], Awaitable[float | None]] | None = None,
    ) -> int:
        """Register one response (of bucket/key: a change of access there re-decides it;
        recheck_in: seconds to its policy's next time boundary, where it is re-decided too,
        and after each re-decision that keeps it, at the boundary next_boundary_in finds);
        pass the token to done() when it ends."""
        token = next(self._tokens)
        self._reads.setdefault(version_id, {})[token] = _Read(
            cut, still_allowed, bucket, key, next_boundary_in
        )
        self._arm(version_id, token, recheck_in)
        return token

    def _arm(self, version_id: str, token: int, delay: float | None) -> None:
        old = self._timers.pop(token, None)
        if old is not None:
            old.cancel()
        if delay is not None and delay < MAX_RECHECK_IN:
            self._timers[token] = asyncio.get_running_loop().call_later(
                max(0.0, delay), self._time_boundary, version_id, token
            )

    def _time_boundary(self, version_id: str, token: int) -> None:
        self._timers.pop(token, None)
        self._spawn(self._recheck(version_id, (token,), grace=0.0))

    def access_changed(self, bucket: str, key: str | None) -> None:
        """A change of access to a bucket (key None) or a key, made by any process: re-decide
        the responses it may concern, after the grace."""
        for version_id, reads in list(self._reads.items()):
            if any(r.bucket == bucket and (key is None or r.key == key) for r in reads.values()):
                self.revoked(version_id)

    def recheck_all(self) -> None:
        """Changes of access may have been missed (an event relay's gap): re-decide every
        response, after the grace."""
        for version_id in list(self._reads):
            self.revoked(version_id)

    def done(self, version_id: str, token: int) -> None:
        timer = self._timers.pop(token, None)
        if timer is not None:
            timer.cancel()
        reads = self._reads.get(version_id)
        if reads is not None:
            reads.pop(token, None)
            if not reads:
                del self._reads[version_id]

    def running(self, version_id: str) -> int:
        return len(self._reads.get(version_id, ()))

    def revoked(self, version_id: str) -> None:
        """The version's torrent was revoked: re-decide its responses after the grace."""
        if version_id not in self._reads:
            return
        self._spawn(self._recheck(version_id, None, self.grace))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _recheck(self, version_id: str, tokens: tuple[int, ...] | None, grace: float) -> None:
        if grace:
            await asyncio.sleep(grace)
        for token, read in list(self._reads.get(version_id, {}).items()):
            if tokens is not None and token not in tokens:
                continue
            try:
                allowed = await read.still_allowed()
            except Exception:
                log.exception("re-deciding an anonymous response failed: cutting it")
                allowed = False
            if not allowed:
                self.cut_count += 1
                read.cut()
                self.done(version_id, token)
            elif read.next_boundary_in is not None and token in self._reads.get(version_id, {}):
                # Kept: its next boundary, from the policy as it is now.
                try:
                    delay = await read.next_boundary_in()
                except Exception:
                    log.exception("reading an anonymous response's next time boundary failed")
                    continue
                if token in self._reads.get(version_id, {}):
                    self._arm(version_id, token, delay)

    async def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in list(self._tasks):
            task.cancel()
