"""A lifecycle pass acts under the rules in force: a rule removed while a pass walks its
bucket stops expiring at the next batch (S3: once a rule is removed, objects it had
scheduled are not deleted), and a bucket deleted and made again under its name (perhaps by
another owner) is never walked, or written, under the old bucket's rules."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from s3torrent.lifecycle.worker import LifecycleWorker
from s3torrent.store.metastore import SqlMetadataStore
from s3torrent.store.objects import ObjectStore
from tests.unit import test_lifecycle_worker as lw
from tests.unit.test_lifecycle_worker import DAY, T0, Clock, obj, run, settings, setup

# The metadata store, object store and event bus of the worker's own tests.
events, meta, store = lw.events, lw.meta, lw.store


def _between_batches(worker: LifecycleWorker, act: Callable[[], Awaitable[None]]) -> None:
    """Run `act` once, after the pass's first batch of keys, before its second."""
    hold = worker._hold_lease
    calls = 0

    async def holding() -> bool:
        nonlocal calls
        calls += 1
        if calls == 3:  # the pass's start, the first batch, then the second batch
            await act()
        return await hold()

    worker._hold_lease = holding  # type: ignore[method-assign]


def test_a_rule_removed_during_a_pass_expires_nothing_more(
    meta: SqlMetadataStore, store: ObjectStore
) -> None:
    async def scenario() -> None:
        keys = [f"k{i}" for i in range(6)]
        await setup(meta, *(obj(k, f"{i:032d}") for i, k in enumerate(keys)))
        worker = LifecycleWorker(store, settings(batch_size=2), "n1", Clock(T0 + 2 * DAY))

        async def remove_rules() -> None:
            await meta.set_bucket_setting("bk", "lifecycle", None)

        _between_batches(worker, remove_rules)
        assert await worker.run_pass()
        assert worker.progress.objects_expired == 2  # the first batch only
        for key in keys[2:]:
            assert await meta.object("bk", key) is not None, key
        assert await meta.lifecycle_cursor("bk") is None

    run(scenario())


def test_a_bucket_made_again_under_its_name_is_not_walked_under_the_old_rules(
    meta: SqlMetadataStore, store: ObjectStore
) -> None:
    async def scenario() -> None:
        keys = [f"k{i}" for i in range(4)]
        await setup(meta, *(obj(k, f"{i:032d}") for i, k in enumerate(keys)))
        worker = LifecycleWorker(store, settings(batch_size=2), "n1", Clock(T0 + 2 * DAY))

        async def made_again() -> None:
            for key in keys:
                await store.delete("bk", key)
            while not (await meta.delete_bucket("bk"))[1]:
                pass
            await meta.create_bucket("bk", "someone-else", "us-east-1", None)
            for i in range(5, 9):
                await meta.commit_version(obj(f"k{i}", f"{i:032d}"))

        _between_batches(worker, made_again)
        assert await worker.run_pass()
        for i in range(5, 9):
            assert await meta.object("bk", f"k{i}") is not None, i

    run(scenario())
