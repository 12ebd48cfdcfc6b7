"""The lifecycle worker against a real metadata store (SQLite; PostgreSQL with
S3TORRENT_TEST_METADATA=postgres): expiry through the delete path, never of a version
overwritten after it was evaluated, one lease, and a pass that resumes from its cursor."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from s3torrent.config import LifecycleSettings
from s3torrent.events import Event, EventBus, ObjectDeleted
from s3torrent.lifecycle.rules import (
    Expiration,
    LifecycleConfiguration,
    LifecycleRule,
    RuleFilter,
    to_stored,
)
from s3torrent.lifecycle.worker import LifecycleWorker
from s3torrent.store.blobs.local import LocalBlobStore
from s3torrent.store.errors import StoreError
from s3torrent.store.metastore import SqlMetadataStore, open_metadata_store
from s3torrent.store.objects import ObjectStore
from s3torrent.store.rows import ObjectVersion, Upload
from tests.conftest import metadata_env

T0 = 1_700_000_000.0
DAY = 10.0


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def events() -> EventBus:
    return EventBus()


@pytest.fixture
def meta(tmp_path: Path, events: EventBus) -> Iterator[SqlMetadataStore]:
    url = metadata_env().get("S3TORRENT_METADATA_URL", f"sqlite:///{tmp_path / 'm.sqlite3'}")
    store = open_metadata_store(url, events)
    yield store
    store.close()


@pytest.fixture
def store(meta: SqlMetadataStore, tmp_path: Path) -> Iterator[ObjectStore]:
    pool = concurrent.futures.ThreadPoolExecutor(2)
    yield ObjectStore(meta, LocalBlobStore(tmp_path / "blobs"), executor=pool)
    pool.shutdown()


def settings(**kw: Any) -> LifecycleSettings:
    return LifecycleSettings(day_seconds=DAY, interval=1.0, **kw)


def obj(key: str, vid: str, made: float = T0, size: int = 1) -> ObjectVersion:
    return ObjectVersion("bk", key, vid, size, f'"{vid}"', made, "owner", inline=b"x" * size)


async def setup(meta: SqlMetadataStore, *objs: ObjectVersion, prefix: str = "") -> None:
    await meta.create_bucket("bk", "owner", "us-east-1", None)
    rules = LifecycleConfiguration(
        (LifecycleRule("r", True, RuleFilter(prefix=prefix), Expiration(days=1)),)
    )
    await meta.set_bucket_setting("bk", "lifecycle", to_stored(rules))
    for o in objs:
        await meta.commit_version(o)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_due_objects_expire_and_publish_object_deleted(
    meta: SqlMetadataStore, store: ObjectStore, events: EventBus
) -> None:
    deleted: list[Event] = []
    events.subscribe(lambda e: deleted.append(e) if isinstance(e, ObjectDeleted) else None)
    clock = Clock(T0 + 2 * DAY)

    async def scenario() -> None:
        await setup(
            meta, obj("tmp/a", "a" * 32), obj("tmp/b", "b" * 32), obj("keep", "c" * 32),
            prefix="tmp/",
        )  # fmt: skip
        worker = LifecycleWorker(store, settings(), "n1", clock)
        assert await worker.run_pass()
        assert worker.progress.objects_expired == 2
        assert worker.progress.objects_scanned == 2  # only the keys under tmp/
        assert await meta.object("bk", "tmp/a") is None
        assert await meta.object("bk", "keep") is not None
        # Not yet due: nothing happens.
        await meta.commit_version(obj("tmp/new", "d" * 32, made=clock.now))
        assert await worker.run_pass()
        assert await meta.object("bk", "tmp/new") is not None

    run(scenario())
    assert sorted(e.key for e in deleted if isinstance(e, ObjectDeleted)) == ["tmp/a", "tmp/b"]


def test_a_version_overwritten_after_evaluation_is_not_expired(
    meta: SqlMetadataStore, store: ObjectStore
) -> None:
    async def scenario() -> None:
        await setup(meta, obj("k", "a" * 32))
        worker = LifecycleWorker(store, settings(), "n1", Clock(T0 + 2 * DAY))
        page_of = meta.list_page

        async def page_then_overwrite(*args: Any) -> Any:
            page = await page_of(*args)
            # A client's PUT lands between the worker's read and its delete.
            await meta.commit_version(obj("k", "b" * 32, made=T0 + 2 * DAY))
            return page

        meta.list_page = page_then_overwrite  # type: ignore[method-assign]
        assert await worker.run_pass()
        current = await meta.object("bk", "k")
        assert current is not None and current.version_id == "b" * 32
        assert worker.progress.objects_expired == 0
        assert worker.progress.skipped_changed == 1

    run(scenario())


def test_only_the_lease_holder_runs_a_pass(meta: SqlMetadataStore, store: ObjectStore) -> None:
    async def scenario() -> None:
        await setup(meta, obj("k", "a" * 32))
        clock = Clock(T0 + 2 * DAY)
        one = LifecycleWorker(store, settings(lease_ttl=30), "n1", clock)
        two = LifecycleWorker(store, settings(lease_ttl=30), "n2", clock)
        assert await one.run_pass()
        assert not await two.run_pass()
        assert two.progress.objects_scanned == 0
        clock.now += 31  # n1's lease ran out: n2 takes over
        assert await two.run_pass()

    run(scenario())


def test_a_pass_taken_over_resumes_from_the_cursor(
    meta: SqlMetadataStore, store: ObjectStore
) -> None:
    async def scenario() -> None:
        keys = [f"k{i}" for i in range(5)]
        await setup(meta, *(obj(k, f"{i:032d}") for i, k in enumerate(keys)))
        clock = Clock(T0 + 2 * DAY)
        one = LifecycleWorker(store, settings(batch_size=2, lease_ttl=30), "n1", clock)
        renewals = 0
        hold = one._hold_lease

        async def lose_after_first_batch() -> bool:
            nonlocal renewals
            renewals += 1
            return renewals <= 2 and await hold()

        one._hold_lease = lose_after_first_batch  # type: ignore[method-assign]
        assert not await one.run_pass()
        assert one.progress.objects_scanned == 2
        assert await meta.lifecycle_cursor("bk") == "k1"
        clock.now += 31
        two = LifecycleWorker(store, settings(batch_size=2, lease_ttl=30), "n2", clock)
        assert await two.run_pass()
        assert two.progress.objects_scanned == 3  # k2..k4: the first batch is not read again
        assert two.progress.objects_expired == 3
        assert await meta.lifecycle_cursor("bk") is None  # finished: the next pass starts over

    run(scenario())


def test_a_refused_delete_is_counted_and_left(
    meta: SqlMetadataStore, store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Locked(StoreError):
        pass

    async def refuse(*args: Any, **kw: Any) -> None:
        raise Locked("object lock")

    async def scenario() -> None:
        await setup(meta, obj("k", "a" * 32))
        monkeypatch.setattr(store, "delete", refuse)
        worker = LifecycleWorker(store, settings(), "n1", Clock(T0 + 2 * DAY))
        assert await worker.run_pass()
        assert worker.progress.refused == 1
        assert await meta.object("bk", "k") is not None

    run(scenario())


def test_incomplete_uploads_are_aborted_with_their_parts(
    meta: SqlMetadataStore, store: ObjectStore
) -> None:
    async def scenario() -> None:
        await meta.create_bucket("bk", "owner", "us-east-1", None)
        rules = LifecycleConfiguration(
            (LifecycleRule("mpu", True, RuleFilter(prefix="big/"), abort_upload_days=1),)
        )
        await meta.set_bucket_setting("bk", "lifecycle", to_stored(rules))
        for uid, key in (("u1", "big/a"), ("u2", "small/a")):
            await meta.create_upload(Upload(uid, "bk", key, "owner", T0, {}))
        worker = LifecycleWorker(store, settings(), "n1", Clock(T0 + 2 * DAY))
        assert await worker.run_pass()
        assert worker.progress.uploads_aborted == 1
        assert await meta.upload("u1") is None
        assert await meta.upload("u2") is not None

    run(scenario())


def test_version_condition_holds_only_for_the_evaluated_version() -> None:
    from s3torrent.store.conditions import WriteCondition
    from s3torrent.store.errors import PreconditionFailed

    cond = WriteCondition(if_version="v1")
    assert cond  # a condition: the delete locks and checks the row
    cond.check("bk", "k", '"e"', "v1")
    cond.check("bk", "k", None)  # already gone: nothing to delete, no error
    with pytest.raises(PreconditionFailed):
        cond.check("bk", "k", '"e"', "v2")


def test_a_pass_reads_only_keys_under_the_rules_prefix(
    meta: SqlMetadataStore, store: ObjectStore
) -> None:
    async def scenario() -> None:
        await setup(
            meta, obj("a/1", "1" * 32), obj("tmp/x", "2" * 32), obj("z", "3" * 32),
            prefix="tmp/",
        )  # fmt: skip
        worker = LifecycleWorker(store, settings(), "n1", Clock(T0 + 2 * DAY))
        assert await worker.run_pass()
        assert worker.progress.objects_scanned == 1
        assert worker.progress.objects_expired == 1
        assert await meta.object("bk", "z") is not None

    run(scenario())
