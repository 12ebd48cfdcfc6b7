"""Run a coroutine inline up to its first suspension (no task per request when none is needed).

The in-memory registry never suspends, so most tracker answers are ready at once and cost no
task (a task per request is a good part of a small request's cost). One that suspends
(resolving an unknown info-hash from the database) is finished by a task. Until then there
is no current task, which `asyncio.timeout` and `TaskGroup` refuse: only code that uses
neither may start here (`LeanHttpTracker.eager`, the UDP adapter's `eager`).
"""

from __future__ import annotations

import types
from collections.abc import Coroutine, Generator
from typing import Any, TypeVar, cast

T = TypeVar("T")


def start_eagerly(coro: Coroutine[Any, Any, T]) -> T | Coroutine[Any, Any, T]:
    """`coro`'s result if it finishes without suspending, else the rest of it to await
    (a coroutine; callers tell them apart by the result's type)."""
    try:
        suspended_on = coro.send(None)
    except StopIteration as done:
        return cast(T, done.value)
    return _finish_later(coro, suspended_on)


async def _finish_later(coro: Coroutine[Any, Any, T], suspended_on: Any) -> T:
    return await _resume(coro, suspended_on)


@types.coroutine
def _resume(coro: Coroutine[Any, Any, T], suspended_on: Any) -> Generator[Any, Any, T]:
    # What a task does for any coroutine, from the point where `start_eagerly` stopped:
    # pass each yielded future up to the task and each wake-up (or exception) back down.
    while True:
        try:
            yield suspended_on
        except BaseException as exc:  # cancellation or an error the task throws in
            try:
                suspended_on = coro.throw(exc)
            except StopIteration as done:
                return cast(T, done.value)
        else:
            try:
                suspended_on = coro.send(None)
            except StopIteration as done:
                return cast(T, done.value)
