"""The workers' event relay (events_local): a write is answered once every worker applied
what it revoked, and waiting for that costs each waiter one wake-up."""

from __future__ import annotations

import asyncio
from pathlib import Path

from s3torrent.events import EventBus, ObjectDeleted
from s3torrent.events_local import EventHub, EventLink, _Marks


def _collect(bus: EventBus) -> list[object]:
    seen: list[object] = []
    bus.subscribe(seen.append)
    return seen


async def _hub_and_two_links(path: Path) -> tuple[EventHub, EventLink, EventLink]:
    """The owner's hub and two workers' links, each on a bus of its own, connected."""
    hub = EventHub(EventBus(), "hub", path)
    await hub.start()
    a = EventLink(EventBus(), "a", path)
    b = EventLink(EventBus(), "b", path)
    await a.start(5)
    await b.start(5)
    return hub, a, b


def test_a_mark_is_settled_once_every_worker_applied_it(tmp_path: Path) -> None:
    async def scenario() -> None:
        hub, a, b = await _hub_and_two_links(tmp_path / "events.sock")
        hub_bus, a_bus, b_bus = hub.bus, a.bus, b.bus
        at_hub, at_b, at_a = _collect(hub_bus), _collect(b_bus), _collect(a_bus)
        # A burst of writes in worker a, each waiting for its own line, as requests do.
        events = [ObjectDeleted("bkt", f"k{i}", f"v{i}") for i in range(300)]

        async def write(event: ObjectDeleted) -> bool:
            a_bus.publish(event)
            mark = a.mark()
            settled = await a.settled(mark, 10)
            assert event in at_hub and event in at_b  # applied everywhere before the answer
            return settled

        assert all(await asyncio.gather(*(write(e) for e in events)))
        assert at_b == events and at_hub == events
        # The owner's own event: settled once both links applied it.
        mine = ObjectDeleted("bkt", "own", "v-own")
        hub_bus.publish(mine)
        assert await hub.settled(hub.mark(), 10)
        assert at_a[-1] == mine and at_b[-1] == mine
        await a.close()
        await b.close()
        await hub.close()

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_a_worker_that_never_applies_holds_the_owner_only_until_the_timeout(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        path = tmp_path / "events.sock"
        hub_bus = EventBus()
        hub = EventHub(hub_bus, "hub", path)
        await hub.start()
        # A peer that reads nothing and acknowledges nothing.
        _reader, writer = await asyncio.open_unix_connection(str(path))
        for _ in range(50):
            if hub._peers:
                break
            await asyncio.sleep(0.01)
        hub_bus.publish(ObjectDeleted("bkt", "k", "v"))
        assert not await hub.settled(hub.mark(), 0.2)
        writer.close()  # gone: what it owed counts as applied
        assert await hub.settled(hub.mark(), 5)
        await hub.close()

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_marks_wake_each_waiter_once_at_its_mark() -> None:
    async def scenario() -> None:
        marks = _Marks()
        woken: list[int] = []

        async def wait(mark: int) -> None:
            assert await marks.reached(mark, 5)
            woken.append(mark)

        tasks = [asyncio.create_task(wait(m)) for m in (3, 1, 2, 5)]
        await asyncio.sleep(0)
        marks.advance(2)
        await asyncio.sleep(0.01)
        assert sorted(woken) == [1, 2]
        marks.advance(1)  # never backwards
        assert marks.count == 2
        marks.advance(5)
        await asyncio.gather(*tasks)
        assert sorted(woken) == [1, 2, 3, 5]
        assert await marks.reached(4, 0)  # already there
        assert not await marks.reached(9, 0.01)  # gave up

    asyncio.run(scenario())


def test_waiters_that_gave_up_are_pruned() -> None:
    async def scenario() -> None:
        import s3torrent.events_local as relay

        marks = _Marks()
        results = await asyncio.gather(
            *(marks.reached(10, 0.01) for _ in range(relay._MAX_STALE_WAITERS + 10))
        )
        assert not any(results)
        assert len(marks._waiting) <= relay._MAX_STALE_WAITERS

    asyncio.run(scenario())


def test_settle_waits_only_for_what_some_worker_may_hold() -> None:
    """owner_link.settle_middleware: a request's revoking events are waited for unless
    `held` says no worker can hold what they take back."""
    from typing import Any

    from s3torrent.events import AccessChanged, Event, ObjectWritten
    from s3torrent.events_local import REVOKED_HERE
    from s3torrent.owner_link import settle_middleware

    class Relay:
        def __init__(self) -> None:
            self.waited: list[int] = []

        async def settled(self, mark: int, timeout: float) -> bool:
            self.waited.append(mark)
            return True

    class Request:
        method = "PUT"
        path = "/b/k"

    async def run(events: list[Event], held: set[str]) -> list[int]:
        relay: Any = Relay()

        async def holds(event: Event) -> bool:
            return event.bucket in held

        settle = settle_middleware(relay, holds)

        async def handler(_request: Any) -> Any:
            marks = REVOKED_HERE.get()
            assert marks is not None
            marks.extend((n + 1, e) for n, e in enumerate(events))
            return "answer"

        assert await settle(Request(), handler) == "answer"
        return list(relay.waited)

    quiet = ObjectWritten("quiet", "k", "v2", "v1")
    public = ObjectWritten("public", "k", "v2", "v1")
    assert asyncio.run(run([quiet], {"public"})) == []
    assert asyncio.run(run([quiet, public], {"public"})) == [2]
    assert asyncio.run(run([public, quiet], {"public"})) == [1]
    assert asyncio.run(run([AccessChanged("public", None)], {"public"})) == [1]


def test_a_write_no_other_worker_needs_is_not_relayed(tmp_path: Path) -> None:
    """ObjectWritten.written_unmarked (an inline write of a key never published, read under
    the write lock) stays in its process, from a worker as from the owner; every other
    write, a revoking delete and the same write relayed without that fact still go
    everywhere, in order."""
    from s3torrent.events import ObjectWritten

    async def scenario() -> None:
        hub, a, b = await _hub_and_two_links(tmp_path / "events.sock")
        hub_bus, a_bus, b_bus = hub.bus, a.bus, b.bus
        at_hub, at_a, at_b = _collect(hub_bus), _collect(a_bus), _collect(b_bus)
        quiet = ObjectWritten("bkt", "q", "v2", "v1", True, written_unmarked=True)
        loud = ObjectWritten("bkt", "p", "v4", "v3", True)
        gone = ObjectDeleted("bkt", "p", "v4")
        for event in (quiet, loud, gone):
            a_bus.publish(event)
        assert await a.settled(a.mark(), 10)
        assert at_a == [quiet, loud, gone]  # its own subscribers see every event
        assert at_hub == [loud, gone] and at_b == [loud, gone]
        own_quiet = ObjectWritten("bkt", "q2", "v6", None, True, written_unmarked=True)
        own_loud = ObjectWritten("bkt", "p2", "v8", None, True)
        hub_bus.publish(own_quiet)
        hub_bus.publish(own_loud)
        assert await hub.settled(hub.mark(), 10)
        assert at_a[-1] == own_loud and at_b[-1] == own_loud
        assert own_quiet not in at_a[3:] and own_quiet not in at_b
        await a.close()
        await b.close()
        await hub.close()

    asyncio.run(asyncio.wait_for(scenario(), 60))
