"""The lifecycle worker against a real metadata store (SQLite; PostgreSQL with
S3TORRENT_TEST_METADATA=postgres): expiry through the delete path, never of a version
overwritten after it was evaluated, one lease, and a pass that resumes from its cursor."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
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
    NoncurrentExpiration,
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


# ---- versioned buckets ----


def vobj(key: str, vid: str, made: float = T0, **kw: Any) -> ObjectVersion:
    return ObjectVersion(
        "bk", key, vid, 1, f'"{vid}"', made, "owner", inline=b"x", versioned=True, **kw
    )


async def versioned(meta: SqlMetadataStore, *rules: LifecycleRule) -> None:
    await meta.create_bucket("bk", "owner", "us-east-1", None)
    await meta.set_bucket_setting("bk", "versioning", "Enabled")
    await meta.set_bucket_setting("bk", "lifecycle", to_stored(LifecycleConfiguration(rules)))


def noncurrent_rule(days: int = 1, keep: int | None = None) -> LifecycleRule:
    return LifecycleRule(
        "nc", True, RuleFilter(), noncurrent_expiration=NoncurrentExpiration(days, keep)
    )


MARKER_RULE = LifecycleRule("dm", True, RuleFilter(), Expiration(expired_object_delete_marker=True))


async def ids(meta: SqlMetadataStore, key: str) -> list[tuple[str, bool, bool]]:
    """(version id, latest, delete marker) of each of a key's versions, newest first."""
    return [
        (v.version_id, v.is_latest, v.is_delete_marker) for v in await meta.key_versions("bk", key)
    ]


def test_expiring_a_current_version_in_a_versioned_bucket_adds_a_delete_marker(
    meta: SqlMetadataStore, store: ObjectStore, events: EventBus
) -> None:
    deleted: list[Event] = []
    events.subscribe(lambda e: deleted.append(e) if isinstance(e, ObjectDeleted) else None)

    async def scenario() -> None:
        await versioned(meta, LifecycleRule("r", True, RuleFilter(), Expiration(days=1)))
        await meta.commit_version(vobj("k", "a" * 32))
        worker = LifecycleWorker(store, settings(), "n1", Clock(T0 + 2 * DAY))
        assert await worker.run_pass()
        assert worker.progress.objects_expired == 1
        assert await meta.object("bk", "k") is None
        versions = await meta.key_versions("bk", "k")
        marker, old = versions
        assert marker.is_latest and marker.is_delete_marker and marker.obj is None
        assert not old.is_latest and old.version_id == "a" * 32 and old.obj is not None
        assert old.noncurrent_since is not None and old.noncurrent_since > T0
        stored = await meta.object_version("bk", "k", marker.s3_version_id)
        assert stored is not None and stored.owner_id == "owner"  # the bucket's owner
        # The next pass finds nothing current to expire: no second marker.
        assert await worker.run_pass()
        assert len(await meta.key_versions("bk", "k")) == 2
        assert worker.progress.objects_expired == 1

    run(scenario())
    assert [e.version_id for e in deleted if isinstance(e, ObjectDeleted)] == ["a" * 32]


def test_a_version_deleted_after_evaluation_gets_no_second_delete_marker(
    meta: SqlMetadataStore, store: ObjectStore
) -> None:
    async def scenario() -> None:
        await versioned(meta, LifecycleRule("r", True, RuleFilter(), Expiration(days=1)))
        await meta.commit_version(vobj("k", "a" * 32))
        # A versioned bucket's pass reads keys with their versions.
        page_of = meta.key_versions_page

        async def page_then_delete(*args: Any) -> Any:
            page = await page_of(*args)
            await store.delete("bk", "k")  # a client's DeleteObject: a delete marker
            return page

        meta.key_versions_page = page_then_delete  # type: ignore[method-assign]
        worker = LifecycleWorker(store, settings(), "n1", Clock(T0 + 2 * DAY))
        assert await worker.run_pass()
        assert worker.progress.skipped_changed == 1
        assert [m for _, _, m in await ids(meta, "k")] == [True, False]

    run(scenario())


def test_a_version_overwritten_after_evaluation_in_a_versioned_bucket_stays_current(
    meta: SqlMetadataStore, store: ObjectStore
) -> None:
    async def scenario() -> None:
        await versioned(meta, LifecycleRule("r", True, RuleFilter(), Expiration(days=1)))
        await meta.commit_version(vobj("k", "a" * 32))
        page_of = meta.key_versions_page

        async def page_then_overwrite(*args: Any) -> Any:
            page = await page_of(*args)
            await meta.commit_version(vobj("k", "b" * 32, made=T0 + 2 * DAY))
            return page

        meta.key_versions_page = page_then_overwrite  # type: ignore[method-assign]
        worker = LifecycleWorker(store, settings(), "n1", Clock(T0 + 2 * DAY))
        assert await worker.run_pass()
        assert worker.progress.skipped_changed == 1
        assert await ids(meta, "k") == [("b" * 32, True, False), ("a" * 32, False, False)]

    run(scenario())


def test_noncurrent_versions_expire_keeping_the_newest_noncurrent(
    meta: SqlMetadataStore, store: ObjectStore
) -> None:
    async def scenario() -> None:
        await versioned(meta, noncurrent_rule(days=1, keep=1))
        for i in range(4):  # v0 oldest ... v3 current
            await meta.commit_version(vobj("k", f"{i}" * 32, made=T0 + i))
        await meta.commit_version(vobj("other", "f" * 32))
        worker = LifecycleWorker(store, settings(), "n1", Clock(T0 + 3 * DAY))
        assert await worker.run_pass()
        assert worker.progress.noncurrent_versions_expired == 2
        assert worker.progress.objects_expired == 0
        assert await ids(meta, "k") == [("3" * 32, True, False), ("2" * 32, False, False)]
        assert len(await ids(meta, "other")) == 1

    run(scenario())


def test_noncurrent_versions_are_not_removed_before_their_days(
    meta: SqlMetadataStore, store: ObjectStore
) -> None:
    async def scenario() -> None:
        await versioned(meta, noncurrent_rule(days=5))
        await meta.commit_version(vobj("k", "a" * 32, made=T0))
        await meta.commit_version(vobj("k", "b" * 32, made=T0 + 3 * DAY))
        worker = LifecycleWorker(store, settings(), "n1", Clock(T0 + 6 * DAY))
        assert await worker.run_pass()  # noncurrent for 3 days only: stays
        assert len(await ids(meta, "k")) == 2
        worker.clock = Clock(T0 + 9 * DAY)
        assert await worker.run_pass()
        assert await ids(meta, "k") == [("b" * 32, True, False)]

    run(scenario())


def test_a_lone_delete_marker_is_removed(meta: SqlMetadataStore, store: ObjectStore) -> None:
    async def scenario() -> None:
        await versioned(meta, MARKER_RULE)
        await store.delete("bk", "ghost", owner_id="owner")  # a marker and nothing else
        await meta.commit_version(vobj("kept", "a" * 32))
        await store.delete("bk", "kept", owner_id="owner")  # a marker over a version
        worker = LifecycleWorker(store, settings(), "n1", Clock(T0 + 2 * DAY))
        assert await worker.run_pass()
        assert worker.progress.delete_markers_removed == 1
        assert worker.progress.objects_scanned == 2  # keys with no current version too
        assert await ids(meta, "ghost") == []
        assert [m for _, _, m in await ids(meta, "kept")] == [True, False]

    run(scenario())


def test_an_expiration_days_rule_removes_lone_delete_markers_old_enough(
    meta: SqlMetadataStore, store: ObjectStore
) -> None:
    """S3 cleans up expired object delete markers under an Expiration Days rule once they
    are old enough: the versioned pass reads keys whose latest version is a marker too."""

    async def scenario() -> None:
        await versioned(meta, LifecycleRule("r", True, RuleFilter(), Expiration(days=1)))
        await store.delete("bk", "ghost", owner_id="owner")  # a marker and nothing else
        made = time.time()
        young = LifecycleWorker(store, settings(), "n1", Clock(made))
        assert await young.run_pass()
        assert len(await ids(meta, "ghost")) == 1
        worker = LifecycleWorker(store, settings(), "n1", Clock(made + 2 * DAY))
        assert await worker.run_pass()
        assert worker.progress.delete_markers_removed == 1
        assert await ids(meta, "ghost") == []

    run(scenario())


def test_a_delete_marker_left_alone_by_noncurrent_expiry_goes(
    meta: SqlMetadataStore, store: ObjectStore
) -> None:
    async def scenario() -> None:
        await versioned(meta, MARKER_RULE, noncurrent_rule(days=1))
        await meta.commit_version(vobj("k", "a" * 32))
        await store.delete("bk", "k", owner_id="owner")
        # The marker was made now (the store's clock): a day of the worker's clock later.
        worker = LifecycleWorker(store, settings(), "n1", Clock(time.time() + 2 * DAY))
        for _ in range(2):  # the marker goes in the pass that removes its version, or the next
            assert await worker.run_pass()
        assert await ids(meta, "k") == []
        assert worker.progress.noncurrent_versions_expired == 1
        assert worker.progress.delete_markers_removed == 1

    run(scenario())


def test_locked_noncurrent_versions_are_refused_and_stay(
    meta: SqlMetadataStore, store: ObjectStore
) -> None:
    async def scenario() -> None:
        await versioned(meta, MARKER_RULE, noncurrent_rule(days=1))
        far = time.time() + 30 * 86400.0  # object lock is decided on the store's clock
        await meta.commit_version(vobj("k", "a" * 32, lock_mode="COMPLIANCE", lock_until=far))
        await meta.commit_version(vobj("k", "b" * 32, made=T0 + 1, legal_hold=True))
        await meta.commit_version(vobj("k", "c" * 32, made=T0 + 2))
        await store.delete("bk", "k", owner_id="owner")
        worker = LifecycleWorker(store, settings(), "n1", Clock(time.time() + 2 * DAY))
        assert await worker.run_pass()
        assert worker.progress.refused == 2
        assert worker.progress.noncurrent_versions_expired == 1  # c
        # The marker is not alone: removing it would bring a locked version back.
        assert worker.progress.delete_markers_removed == 0
        assert [v for v, _, _ in await ids(meta, "k")][1:] == ["b" * 32, "a" * 32]
        assert await meta.object("bk", "k") is None

    run(scenario())


def test_a_noncurrent_version_current_again_is_not_removed(
    meta: SqlMetadataStore, store: ObjectStore
) -> None:
    async def scenario() -> None:
        await versioned(meta, noncurrent_rule(days=1))
        await meta.commit_version(vobj("k", "a" * 32))
        await meta.commit_version(vobj("k", "b" * 32, made=T0 + 1))
        page_of = meta.key_versions_page

        async def page_then_remove_current(*args: Any) -> Any:
            page = await page_of(*args)
            # A client deletes the current version for good: "a" is current again.
            await store.delete_version("bk", "k", "b" * 32)
            return page

        meta.key_versions_page = page_then_remove_current  # type: ignore[method-assign]
        worker = LifecycleWorker(store, settings(), "n1", Clock(T0 + 3 * DAY))
        assert await worker.run_pass()
        assert worker.progress.skipped_changed == 1
        assert worker.progress.noncurrent_versions_expired == 0
        assert await ids(meta, "k") == [("a" * 32, True, False)]

    run(scenario())


def test_key_versions_pages_cover_keys_with_only_delete_markers(
    meta: SqlMetadataStore, store: ObjectStore
) -> None:
    async def scenario() -> None:
        await versioned(meta, noncurrent_rule())
        await meta.commit_version(vobj("p/a", "a" * 32))
        await store.delete("bk", "p/b")
        await meta.commit_version(vobj("p/c", "c" * 32))
        await meta.commit_version(vobj("p/c", "d" * 32, made=T0 + 5))
        await meta.commit_version(vobj("q", "e" * 32))
        first = await meta.key_versions_page("bk", "p/", None, 2)
        assert [k for k, _ in first.keys] == ["p/a", "p/b"] and first.truncated
        assert first.last == "p/b"
        second = await meta.key_versions_page("bk", "p/", first.last, 2)
        assert [k for k, _ in second.keys] == ["p/c"] and not second.truncated
        ((_, versions),) = second.keys
        assert [(v.version_id, v.is_latest) for v in versions] == [
            ("d" * 32, True),
            ("c" * 32, False),
        ]
        assert versions[0].noncurrent_since is None and versions[1].noncurrent_since == T0 + 5

    run(scenario())


def test_a_versioned_pass_resumes_from_the_cursor(
    meta: SqlMetadataStore, store: ObjectStore
) -> None:
    async def scenario() -> None:
        await versioned(meta, MARKER_RULE)
        for i in range(5):
            await store.delete("bk", f"k{i}")  # lone markers: no current version anywhere
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
        assert await meta.lifecycle_cursor("bk") == "k1"
        clock.now += 31
        two = LifecycleWorker(store, settings(batch_size=2, lease_ttl=30), "n2", clock)
        assert await two.run_pass()
        assert two.progress.objects_scanned == 3
        assert two.progress.delete_markers_removed == 3
        assert await meta.lifecycle_cursor("bk") is None

    run(scenario())
