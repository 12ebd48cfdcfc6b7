"""Anonymous responses in flight, by object version, so that a revocation can cut them.

The seeder closes a revoked torrent's peer connections; a web-seed range GET or a plain
anonymous GET already streaming would otherwise go on to its end. The edges register each
such response here with a way to cut it and a way to ask the one decision again; a
revocation (``PublicTorrents.on_revoked``) asks every response of that version, after the
same short grace as the seeder (an access change that keeps the object public revokes and
republishes at once), and cuts those that may no longer go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

__all__ = ["REVOCATION_GRACE", "AnonymousReads", "cut_transport"]

log = logging.getLogger(__name__)

REVOCATION_GRACE = 0.5  # seconds, as the seeder's


@dataclass(frozen=True, slots=True)
class _Read:
    cut: Callable[[], None]
    still_allowed: Callable[[], Awaitable[bool]]


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


class AnonymousReads:
    """The registry of anonymous responses in flight."""

    def __init__(self, grace: float = REVOCATION_GRACE) -> None:
        self.grace = grace
        self._reads: dict[str, dict[int, _Read]] = {}
        self._tokens = itertools.count()
        self._tasks: set[asyncio.Task[None]] = set()
        self.cut_count = 0

    def track(
        self,
        version_id: str,
        cut: Callable[[], None],
        still_allowed: Callable[[], Awaitable[bool]],
    ) -> int:
        """Register one response; pass the token to done() when it ends."""
        token = next(self._tokens)
        self._reads.setdefault(version_id, {})[token] = _Read(cut, still_allowed)
        return token

    def done(self, version_id: str, token: int) -> None:
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
        task = asyncio.get_running_loop().create_task(self._recheck(version_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _recheck(self, version_id: str) -> None:
        await asyncio.sleep(self.grace)
        for token, read in list(self._reads.get(version_id, {}).items()):
            try:
                allowed = await read.still_allowed()
            except Exception:
                log.exception("re-deciding an anonymous response failed: cutting it")
                allowed = False
            if not allowed:
                self.cut_count += 1
                read.cut()
                self.done(version_id, token)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
