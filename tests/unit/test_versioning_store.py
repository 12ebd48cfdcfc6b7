"""Versioning and object lock in the metadata store, on a real database (SQLite, or
PostgreSQL with S3TORRENT_TEST_METADATA=postgres)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from s3torrent.events import Event, EventBus, ObjectDeleted, ObjectWritten
from s3torrent.store import queries
from s3torrent.store.conditions import WriteCondition
from s3torrent.store.errors import ObjectLocked, PreconditionFailed
from s3torrent.store.metastore import SqlMetadataStore, open_metadata_store
from s3torrent.store.rows import ObjectVersion
from tests.conftest import metadata_env


@pytest.fixture
def meta(tmp_path: Path) -> Iterator[SqlMetadataStore]:
    url = metadata_env().get("S3TORRENT_METADATA_URL", f"sqlite:///{tmp_path / 'm.sqlite3'}")
    store = open_metadata_store(url, EventBus())
    yield store
    store.close()


_n = 0


def version(key: str = "k", size: int = 3, **kw: object) -> ObjectVersion:
    global _n
    _n += 1
    vid = f"{_n:032x}"
    return ObjectVersion("bk", key, vid, size, f'"{vid}"', time.time(), "owner", **kw)  # type: ignore[arg-type]


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


async def _bucket(meta: SqlMetadataStore, state: str | None) -> None:
    await meta.create_bucket("bk", "owner", "us-east-1", None)
    if state:
        await meta.set_bucket_setting("bk", "versioning", state)


def test_unversioned_bucket_keeps_one_null_version(meta: SqlMetadataStore) -> None:
    async def scenario() -> None:
        await _bucket(meta, None)
        a, b = version(), version()
        await meta.commit_version(a)
        done = await meta.commit_version(b)
        assert done.version.s3_version_id == "null"
        assert done.freed == (a.version_id,)
        page = await meta.list_versions_page("bk", "", "", "", None, 1000)
        assert [(v.version_id, latest) for v, latest in page.versions] == [(b.version_id, True)]

    run(scenario())


def test_versioned_overwrite_keeps_the_old_version_and_its_blob(meta: SqlMetadataStore) -> None:
    events: list[Event] = []

    async def scenario() -> None:
        await _bucket(meta, None)
        old = version()
        await meta.commit_version(old)  # written before versioning: the null version
        await meta.set_bucket_setting("bk", "versioning", "Enabled")
        meta.events.subscribe(events.append)
        new = version()
        done = await meta.commit_version(new)
        assert done.version.versioned and done.version.s3_version_id == new.version_id
        assert done.freed == ()
        assert events == [ObjectWritten("bk", "k", new.version_id, old.version_id, False)]
        assert (await meta.object("bk", "k")).version_id == new.version_id  # type: ignore[union-attr]
        null = await meta.object_version("bk", "k", "null")
        assert null is not None and null.version_id == old.version_id
        ids = meta.referenced_blob_ids()
        assert {old.version_id, new.version_id} <= ids
        page = await meta.list_versions_page("bk", "", "", "", None, 1000)
        assert [(v.s3_version_id, latest) for v, latest in page.versions] == [
            (new.version_id, True),
            ("null", False),
        ]

    run(scenario())


def test_delete_marker_then_its_removal_brings_the_version_back(meta: SqlMetadataStore) -> None:
    events: list[Event] = []

    async def scenario() -> None:
        await _bucket(meta, "Enabled")
        v = version()
        await meta.commit_version(v)
        meta.events.subscribe(events.append)
        removed = await meta.delete_object("bk", "k", owner_id="owner")
        assert removed.delete_marker and removed.s3_version_id not in (None, "null")
        assert events == [ObjectDeleted("bk", "k", v.version_id)]
        assert await meta.object("bk", "k") is None
        marker = await meta.latest_delete_marker("bk", "k")
        assert marker is not None and marker.s3_version_id == removed.s3_version_id
        assert removed.s3_version_id is not None
        gone = await meta.delete_version("bk", "k", removed.s3_version_id)
        assert gone.delete_marker and gone.promoted is not None
        assert events[-1] == ObjectWritten("bk", "k", v.version_id, None, False)
        assert (await meta.object("bk", "k")).version_id == v.version_id  # type: ignore[union-attr]

    run(scenario())


def test_suspended_writes_replace_the_null_version(meta: SqlMetadataStore) -> None:
    async def scenario() -> None:
        await _bucket(meta, "Enabled")
        a = version()
        await meta.commit_version(a)
        await meta.set_bucket_setting("bk", "versioning", "Suspended")
        n1, n2 = version(), version()
        await meta.commit_version(n1)
        done = await meta.commit_version(n2)
        assert done.version.s3_version_id == "null"
        assert done.freed == (n1.version_id,)
        page = await meta.list_versions_page("bk", "", "", "", None, 1000)
        assert [v.version_id for v, _ in page.versions] == [n2.version_id, a.version_id]
        # A delete in a suspended bucket: a null delete marker replaces the null version.
        removed = await meta.delete_object("bk", "k")
        assert removed.s3_version_id == "null" and removed.freed == (n2.version_id,)
        page = await meta.list_versions_page("bk", "", "", "", None, 1000)
        assert [(v.s3_version_id, v.delete_marker) for v, _ in page.versions] == [
            ("null", True),
            (a.version_id, False),
        ]

    run(scenario())


def test_conditions_compare_with_the_current_version(meta: SqlMetadataStore) -> None:
    async def scenario() -> None:
        await _bucket(meta, "Enabled")
        first = version()
        await meta.commit_version(first)
        with pytest.raises(PreconditionFailed):
            await meta.commit_version(version(), condition=WriteCondition(if_none_match=True))
        with pytest.raises(PreconditionFailed):
            await meta.commit_version(version(), condition=WriteCondition(if_match='"other"'))
        # A refused write moved nothing into the history: the first version is still the
        # only one, and current.
        page = await meta.list_versions_page("bk", "", "", "", None, 1000)
        assert [(v.version_id, latest) for v, latest in page.versions] == [(first.version_id, True)]
        done = await meta.commit_version(version(), condition=WriteCondition(if_match=first.etag))
        assert done.replaced is not None and done.replaced.version_id == first.version_id
        assert done.replaced.kept and done.freed == ()
        await meta.delete_object("bk", "k")
        # The latest version is a delete marker: the key is absent for a condition.
        await meta.commit_version(version(), condition=WriteCondition(if_none_match=True))

    run(scenario())


def test_listing_pages_through_many_versions_of_one_key(meta: SqlMetadataStore) -> None:
    async def scenario() -> None:
        await _bucket(meta, "Enabled")
        written = [version("a") for _ in range(7)] + [version("b") for _ in range(3)]
        for v in written:
            await meta.commit_version(v)
        seen: list[tuple[str, bool]] = []
        km, vm = "", None
        while True:
            page = await meta.list_versions_page("bk", "", "", km, vm, 3)
            seen += [(v.version_id, latest) for v, latest in page.versions]
            if not page.truncated:
                break
            km, vm = page.next_key or "", page.next_version_id
        expected_a = [v.version_id for v in reversed(written[:7])]
        expected_b = [v.version_id for v in reversed(written[7:])]
        assert [vid for vid, _ in seen] == expected_a + expected_b
        assert [latest for _, latest in seen] == [True] + [False] * 6 + [True, False, False]

    run(scenario())


def test_locked_version_cannot_be_removed_by_anyone(meta: SqlMetadataStore) -> None:
    async def scenario() -> None:
        await _bucket(meta, "Enabled")
        until = time.time() + 3600
        compliance = version(lock_mode="COMPLIANCE", lock_until=until)
        governance = version(lock_mode="GOVERNANCE", lock_until=until)
        held = version(legal_hold=True)
        for v in (compliance, governance, held):
            await meta.commit_version(v)
        for v in (compliance, held):
            with pytest.raises(ObjectLocked):
                await meta.delete_version("bk", "k", v.version_id, bypass_governance=True)
        with pytest.raises(ObjectLocked):
            await meta.delete_version("bk", "k", governance.version_id)
        await meta.delete_version("bk", "k", governance.version_id, bypass_governance=True)
        assert await meta.object_version("bk", "k", compliance.version_id) is not None

    run(scenario())


def test_bucket_with_only_old_versions_is_not_empty(meta: SqlMetadataStore) -> None:
    async def scenario() -> None:
        await _bucket(meta, "Enabled")
        await meta.commit_version(version())
        await meta.delete_object("bk", "k")
        sizes = await meta.db.read(lambda c: queries.bucket_has_objects(c, "bk"))
        assert sizes

    run(scenario())


def test_stored_bytes_count_every_version(meta: SqlMetadataStore) -> None:
    from s3torrent.store import usage_queries

    async def scenario() -> None:
        await _bucket(meta, "Enabled")
        for size in (10, 20, 30):
            await meta.commit_version(version(size=size))
        await meta.delete_object("bk", "k")  # a delete marker holds no bytes
        sizes = await meta.db.read(usage_queries.bucket_sizes)
        assert sizes["bk"] == 60

    run(scenario())


def test_concurrent_delete_markers_on_an_absent_key_all_land(meta: SqlMetadataStore) -> None:
    async def scenario() -> None:
        await _bucket(meta, "Enabled")
        removed = await asyncio.gather(*(meta.delete_object("bk", "nothing") for _ in range(20)))
        ids = {r.s3_version_id for r in removed}
        assert len(ids) == 20
        page = await meta.list_versions_page("bk", "", "", "", None, 1000)
        assert len(page.versions) == 20 and [latest for _, latest in page.versions].count(True) == 1

    run(scenario())


def test_version_pages_cross_batches_and_markers(meta: SqlMetadataStore) -> None:
    """Paging through a long history (more versions than one store batch) with key and
    version-id markers lists every version exactly once, in order, whatever the page size."""

    async def scenario() -> None:
        await _bucket(meta, "Enabled")
        written: dict[str, list[str]] = {"a": [], "hist": [], "hist/x": [], "z": []}
        for key, n in (("a", 3), ("hist", 600), ("hist/x", 2), ("z", 1)):
            for _ in range(n):
                v = version(key, versioned=True)
                written[key].append((await meta.commit_version(v)).version.version_id)
        marker = await meta.delete_object("bk", "hist/x")
        assert marker.s3_version_id is not None
        written["hist/x"].append(marker.s3_version_id)
        expected = [(k, vid) for k in sorted(written) for vid in reversed(written[k])]
        for size in (1, 7, 256, 257, 1000):
            got: list[tuple[str, str]] = []
            latest: list[bool] = []
            key_marker, vid_marker = "", None
            while True:
                page = await meta.list_versions_page("bk", "", "", key_marker, vid_marker, size)
                got += [(v.key, v.s3_version_id) for v, _ in page.versions]
                latest += [is_latest for _, is_latest in page.versions]
                if not page.truncated:
                    break
                assert page.next_key is not None
                key_marker, vid_marker = page.next_key, page.next_version_id
            assert got == expected, size
            assert sum(latest) == len(written)
        page = await meta.list_versions_page("bk", "hist", "/", "", None, 1000)
        assert page.prefixes == ["hist/"]
        assert [v.version_id for v, _ in page.versions] == written["hist"][::-1]
        assert page.versions[0][0].delete_marker is False

    run(scenario())


def test_bucket_and_object_is_one_read_of_both_rows(meta: SqlMetadataStore) -> None:
    """The request path's joined lookup (bucket and current version in one statement) gives
    exactly what the two separate lookups give: every field, an inline body, tags, and the
    absent cases."""

    async def scenario() -> None:
        assert await meta.bucket_and_object("bk", "k") == (None, None)
        await _bucket(meta, "Enabled")
        await meta.set_bucket_setting("bk", "cors", [{"AllowedOrigins": ["*"]}])
        bucket = await meta.bucket("bk")
        assert bucket is not None
        assert await meta.bucket_and_object("bk", "k") == (bucket, None)
        assert await meta.bucket_and_object("bk", None) == (bucket, None)
        rich = version(
            "k/é\n",
            inline=b"\x00body\xff",
            tags=(("a", "1"), ("b", "")),
            headers={"Content-Type": "text/plain", "x-amz-meta-m": "v"},
            acl='{"grants": []}',
            checksum_algorithm="CRC32",
            checksum_value="AAAAAA==",
            checksum_type="FULL_OBJECT",
            legal_hold=True,
        )
        await meta.commit_version(rich)
        blob = version("blob", size=10_000_000, parts=[{"n": 1}], lock_mode="GOVERNANCE")
        await meta.commit_version(blob)
        for key in ("k/é\n", "blob", "other"):
            expected = (await meta.bucket("bk"), await meta.object("bk", key))
            assert await meta.bucket_and_object("bk", key) == expected
        _, got = await meta.bucket_and_object("bk", "k/é\n")
        assert got is not None and got.inline == b"\x00body\xff" and got.versioned
        assert await meta.bucket_and_object("nope", "k/é\n") == (None, None)

    run(scenario())
