"""Lanes: ordered work on a thread pool, a bounded number of steps ahead of the event loop.

An upload's bytes go through several consumers (the blob writer with MD5, the piece
hasher, a checksum). Each consumer is one lane: its steps run on the executor one after
another, in order, while the loop reads the next steps from the socket and the other lanes
hash the same buffers on other threads (hashlib and file writes release the GIL). A lane
holds at most `depth` steps waiting, so a slow lane makes the loop wait (back-pressure)
instead of buffering the body in memory, and a lane that is briefly descheduled does not
stall the others, as it would if every step waited for every lane (lockstep).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Lane(Generic[T]):
    """`fn(step)` for each step put, in order, on `executor`; at most `depth` waiting."""

    def __init__(
        self, executor: concurrent.futures.Executor, fn: Callable[[T], None], depth: int = 2
    ) -> None:
        self._executor = executor
        self._fn = fn
        self._depth = depth
        self._steps: deque[T] = deque()
        self._closed = False
        self._ready = asyncio.Event()  # steps are waiting, or the lane is closed
        self._room = asyncio.Event()  # a step left the queue, or the lane stopped
        self._room.set()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                while not self._steps:
                    if self._closed:
                        return
                    self._ready.clear()
                    await self._ready.wait()
                step = self._steps.popleft()
                self._room.set()
                await loop.run_in_executor(self._executor, self._fn, step)
        finally:
            self._room.set()

    async def put(self, step: T) -> None:
        """Queue a step, waiting while `depth` are queued; raises the lane's failure."""
        while True:
            if self._task.done():
                self._task.result()  # the failure that stopped the lane
                raise RuntimeError("put() on a closed lane")
            if len(self._steps) < self._depth:
                break
            self._room.clear()
            await self._room.wait()
        self._steps.append(step)
        self._ready.set()

    async def close(self) -> None:
        """Run every queued step, then stop; raises the lane's failure."""
        self._closed = True
        self._ready.set()
        await self._task

    async def abandon(self) -> None:
        """Drop the queued steps and wait for the one running (so nothing touches the
        lane's resources afterwards); failures are not raised."""
        self._steps.clear()
        self._closed = True
        self._ready.set()
        await asyncio.gather(self._task, return_exceptions=True)
