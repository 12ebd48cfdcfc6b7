"""The metadata store's torrent, hashing-job, user and usage methods, on a real database."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from s3torrent.events import AccessChanged, Event, EventBus, ObjectWritten, TorrentHashed
from s3torrent.provision import open_user_secrets
from s3torrent.store import hash_queries, queries
from s3torrent.store.errors import BucketNotEmpty
from s3torrent.store.master_key import MasterKeys
from s3torrent.store.meta_users import UserExists
from s3torrent.store.metastore import SqlMetadataStore, open_metadata_store
from s3torrent.store.rows import ObjectVersion, Part, TorrentHashes, Upload, UploadReceipt, User
from s3torrent.store.schema import parts, torrent_marks, upload_receipts, uploads
from s3torrent.store.usage_rows import OP_STORAGE, UsageCounts
from s3torrent.store.users import UserDirectory, UserError
from tests.conftest import metadata_env

H = 1_700_000_000 - 1_700_000_000 % 3600


@pytest.fixture
def meta(tmp_path: Path) -> Iterator[SqlMetadataStore]:
    """SQLite; a fresh PostgreSQL database with S3TORRENT_TEST_METADATA=postgres."""
    url = metadata_env().get("S3TORRENT_METADATA_URL", f"sqlite:///{tmp_path / 'm.sqlite3'}")
    store = open_metadata_store(url, EventBus())
    # Users' secrets are sealed with the master keys, as the server's start sets them up.
    open_user_secrets(store, MasterKeys.load_or_create(tmp_path / "keys.json"))
    yield store
    store.close()


def version(key: str, vid: str, size: int = 100) -> ObjectVersion:
    return ObjectVersion("bk", key, vid, size, '"e"', time.time(), "owner")


def hashes_of(vid: str, swarm: bytes) -> TorrentHashes:
    return TorrentHashes(vid, 16384, b"\x01" * 20, None, None, "v1", swarm, None)


async def with_objects(meta: SqlMetadataStore, *objs: ObjectVersion) -> None:
    await meta.create_bucket("bk", "owner", "us-east-1", None)
    for obj in objs:
        await meta.commit_version(obj)


# ---- torrents ----


def test_hashes_of_a_current_version_are_stored_then_announced(meta: SqlMetadataStore) -> None:
    """TorrentHashed goes out after the commit: a subscriber reading back finds the hashes."""
    obj = version("k", "v" * 32)
    seen: list[tuple[Event, bool]] = []

    async def scenario() -> None:
        await with_objects(meta, obj)

        def on_event(event: Event) -> None:
            if isinstance(event, TorrentHashed):
                vid = event.version_id
                stored = meta.db.read_sync(lambda c: hash_queries.load_hashes(c, vid))
                seen.append((event, stored is not None))

        meta.events.subscribe(on_event)
        assert await meta.record_hashes(obj, hashes_of(obj.version_id, b"s" * 20))
        assert await meta.torrent_hashes(obj.version_id) == hashes_of(obj.version_id, b"s" * 20)
        assert await meta.version_by_swarm_id(b"s" * 20) == obj
        assert await meta.version_by_swarm_id(b"x" * 20) is None

    asyncio.run(scenario())
    assert seen == [(TorrentHashed("bk", "k", obj.version_id), True)]


def test_an_inline_write_reads_its_keys_mark_under_the_write_lock(meta: SqlMetadataStore) -> None:
    """With the workers' relay (marks_at_commit), an inline write without hashes learns in
    its own transaction whether its key was ever published: ObjectWritten.written_unmarked,
    which keeps the event in its process. On SQLite only (one write lock orders it against
    a publication's mark); a blob, stored hashes, a marked key or no relay: False."""
    sqlite = meta.db.engine.dialect.name == "sqlite"
    seen: list[ObjectWritten] = []

    def small(key: str, vid: str) -> ObjectVersion:
        return dataclasses.replace(version(key, vid, 4), inline=b"abcd")

    async def scenario() -> None:
        await with_objects(meta)
        meta.events.subscribe(lambda e: seen.append(e) if isinstance(e, ObjectWritten) else None)
        await meta.commit_version(small("k", "a" * 32))  # no relay: not read
        meta.marks_at_commit = True
        await meta.commit_version(small("k", "b" * 32))
        await meta.commit_version(version("k", "c" * 32))  # a blob
        await meta.commit_version(small("h", "d" * 32), hashes_of("d" * 32, b"h" * 20))
        await meta.mark_torrent("bk", "k")
        await meta.commit_version(small("k", "e" * 32))
        await meta.commit_version(small("other", "f" * 32))

    asyncio.run(scenario())
    assert [e.written_unmarked for e in seen] == [False, sqlite, False, False, False, sqlite]


@pytest.mark.parametrize("versioning", [None, "Enabled"])
def test_an_overwrite_replaces_every_column_of_the_current_row(
    meta: SqlMetadataStore, versioning: str | None
) -> None:
    """The overwrite's UPDATE names the columns it sets (the key's own are left out of SET):
    none of the old version's values may survive it, nor may a value left unset turn NULL."""
    old = ObjectVersion(
        "bk", "k", "a" * 32, 4, '"old"', 1.0, "owner-a",
        headers={"Content-Type": "text/old"}, acl='{"old": 1}', checksum_algorithm="CRC32",
        checksum_value="AAAAAA==", checksum_type="FULL_OBJECT", inline=b"abcd",
        tags=(("t", "old"),), lock_mode="GOVERNANCE", lock_until=2.0, legal_hold=True,
    )  # fmt: skip
    new = ObjectVersion(
        "bk", "k", "b" * 32, 3, '"new"', 5.0, "owner-b", headers={"x-amz-meta-n": "1"},
        parts=[{"size": 3, "etag": '"p"'}], inline=b"xyz", tags=(("t", "new"), ("u", "v")),
    )  # fmt: skip
    read: list[ObjectVersion | None] = []

    async def scenario() -> None:
        await with_objects(meta)
        if versioning:
            await meta.set_bucket_setting("bk", "versioning", versioning)
        await meta.commit_version(dataclasses.replace(old, versioned=bool(versioning)))
        await meta.commit_version(dataclasses.replace(new, versioned=bool(versioning)))
        read.append(await meta.object("bk", "k"))

    asyncio.run(scenario())
    assert read[0] == dataclasses.replace(new, versioned=bool(versioning))


def test_hashes_of_a_replaced_version_are_dropped_silently(meta: SqlMetadataStore) -> None:
    old, new = version("k", "a" * 32), version("k", "b" * 32)
    events: list[Event] = []

    async def scenario() -> None:
        await with_objects(meta, old, new)
        meta.events.subscribe(events.append)
        assert not await meta.record_hashes(old, hashes_of(old.version_id, b"s" * 20))
        assert await meta.torrent_hashes(old.version_id) is None
        assert await meta.version_by_swarm_id(b"s" * 20) is None

    asyncio.run(scenario())
    assert events == []


def test_versions_without_hashes_are_the_unhashed_current_ones(meta: SqlMetadataStore) -> None:
    a, b, big = version("a", "a" * 32), version("b", "b" * 32), version("c", "c" * 32, 10**9)

    async def scenario() -> None:
        await with_objects(meta, a, b, big)
        await meta.record_hashes(a, hashes_of(a.version_id, b"s" * 20))
        assert await meta.versions_without_hashes(max_size=1000, limit=10) == [b]
        pairs = await meta.versions_and_hashes("bk")
        assert [(o.key, h is not None) for o, h in pairs] == [
            ("a", True),
            ("b", False),
            ("c", False),
        ]
        assert await meta.versions_and_hashes("other") == []

    asyncio.run(scenario())


# ---- hashing jobs ----


def test_a_claimed_job_waits_for_its_claim_to_expire(meta: SqlMetadataStore) -> None:
    async def scenario() -> None:
        await meta.add_hash_jobs(["v1", "v2"], now=1.0)
        await meta.add_hash_jobs(["v1"], now=2.0)  # already there: one job still
        assert await meta.claim_hash_jobs("a", now=10.0, ttl=30.0, limit=1) == ["v1"]
        assert await meta.claim_hash_jobs("b", now=11.0, ttl=30.0, limit=5) == ["v2"]
        assert await meta.claim_hash_jobs("b", now=12.0, ttl=30.0, limit=5, version_id="v1") == []
        assert await meta.renew_hash_claims("a", ["v1", "v2"], until=60.0) == {"v1"}
        assert await meta.claim_hash_jobs("b", now=50.0, ttl=30.0, limit=5, version_id="v1") == []
        # a's claim ran out at 60: another node takes the job over.
        assert await meta.claim_hash_jobs("b", now=61.0, ttl=30.0, limit=1, version_id="v1") == [
            "v1"
        ]
        await meta.release_hash_claims("b", ["v1", "v2"])
        assert sorted(await meta.claim_hash_jobs("c", now=62.0, ttl=30.0, limit=5)) == ["v1", "v2"]

    asyncio.run(scenario())


def test_a_job_is_retried_at_most_five_times(meta: SqlMetadataStore) -> None:
    async def scenario() -> list[list[str]]:
        await meta.add_hash_jobs(["v"], now=0.0)
        out = []
        for i in range(6):
            out.append(await meta.claim_hash_jobs("a", now=100.0 * (i + 1), ttl=1.0, limit=1))
        return out

    assert asyncio.run(scenario()) == [["v"]] * 5 + [[]]


def test_finishing_a_job_records_hashes_only_for_a_current_version(
    meta: SqlMetadataStore,
) -> None:
    gone, current = version("gone", "g" * 32), version("k", "k" * 32)
    events: list[Event] = []

    async def scenario() -> None:
        await meta.create_bucket("bk", "owner", "us-east-1", None)
        await meta.commit_version(current)
        meta.events.subscribe(events.append)
        await meta.add_hash_jobs([gone.version_id, current.version_id], now=0.0)
        assert not await meta.finish_hash_job(gone, hashes_of(gone.version_id, b"g" * 20))
        assert await meta.finish_hash_job(current, hashes_of(current.version_id, b"k" * 20))
        # Both jobs are gone, whatever happened to their versions.
        assert await meta.claim_hash_jobs("a", now=1.0, ttl=1.0, limit=5) == []
        await meta.add_hash_jobs(["x"], now=0.0)
        await meta.drop_hash_job("x")
        assert await meta.claim_hash_jobs("a", now=1.0, ttl=1.0, limit=5) == []

    asyncio.run(scenario())
    assert events == [TorrentHashed("bk", "k", current.version_id)]
    assert not any(isinstance(e, ObjectWritten) for e in events)


# ---- users ----


def user(name: str, key: str, *, root: bool = False) -> User:
    return User(name + "-id", name, key, "secret-" + key, root, 1.0)


def test_users_are_added_found_and_removed(meta: SqlMetadataStore) -> None:
    async def scenario() -> None:
        await meta.add_user(user("alice", "AK1"))
        with pytest.raises(UserExists):
            await meta.add_user(user("alice", "AK2"))
        assert await meta.user_by_access_key("AK1") == user("alice", "AK1")
        assert await meta.user_by_access_key("AK2") is None
        assert await meta.remove_user("alice")
        assert not await meta.remove_user("alice")
        assert await meta.user_by_access_key("AK1") is None

    asyncio.run(scenario())
    assert meta.all_users() == []


def test_ensure_root_keeps_the_root_identity_and_takes_new_keys(meta: SqlMetadataStore) -> None:
    first = meta.ensure_root(user("root", "R1", root=True))
    again = meta.ensure_root(User("other-id", "root", "R2", "s2", True, 5.0))
    assert first == user("root", "R1", root=True)
    assert (again.canonical_id, again.access_key, again.secret_key) == ("root-id", "R2", "s2")
    assert meta.all_users() == [again]


def test_the_directory_refuses_bad_names_duplicates_and_the_root(
    meta: SqlMetadataStore, tmp_path: Path
) -> None:
    users = UserDirectory(meta)
    root, generated = users.ensure_root(tmp_path, "ROOTKEY", "rootsecret")
    assert not generated and root.access_key == "ROOTKEY"

    async def scenario() -> None:
        bob = await users.add("bob")
        assert users.by_access_key(bob.access_key) == bob
        for bad, message in (("bob", "already exists"), ("root", "invalid"), ("a b", "invalid")):
            with pytest.raises(UserError, match=message):
                await users.add(bad)
        with pytest.raises(UserError, match="cannot be removed"):
            await users.remove("root")
        with pytest.raises(UserError, match="no user named"):
            await users.remove("carol")
        await users.remove("bob")
        assert users.by_access_key(bob.access_key) is None
        assert await users.refresh_if_unknown(bob.access_key) is None

    asyncio.run(scenario())
    assert [u.name for u in users.all()] == ["root"]


# ---- usage ----


def test_usage_flushes_add_up_and_read_back_by_bucket(meta: SqlMetadataStore) -> None:
    counts = UsageCounts()
    counts.usage[(H, "b1", None, "GetObject")] = [1, 10, 0]
    counts.usage[(H, "b2", None, "PutObject")] = [1, 0, 5]
    counts.storage[(H, "b1", None)] = 2.5
    counts.objects[("b1", None, "k", "GetObject")] = [1, 10]
    counts.swarms[(H, "ab" * 20)] = ("b1", None, "k", [1, 100, 200])

    async def scenario() -> None:
        await meta.add_usage(counts)
        await meta.add_usage(counts)
        b1 = await meta.hourly_usage(None, None, frozenset({"b1"}))
        assert sorted((h.operation, h.requests, h.bytes_out, h.byte_hours) for h in b1) == [
            ("GetObject", 2, 20, 0.0),
            (OP_STORAGE, 0, 0, 5.0),
        ]
        assert len(await meta.hourly_usage(H, H + 3600, None)) == 3
        assert await meta.hourly_usage(H + 3600, None, None) == []
        assert await meta.hourly_usage(None, None, frozenset()) == []
        traffic = await meta.traffic(frozenset({"b1"}), "k")
        assert [(t.operation, t.requests, t.bytes_out) for t in traffic.objects] == [
            ("GetObject", 2, 20)
        ]
        assert [(s.completed, s.uploaded, s.downloaded) for s in traffic.swarms] == [(2, 200, 400)]
        assert (await meta.traffic(frozenset({"b2"}), None)).objects == []

    asyncio.run(scenario())


def test_bucket_sizes_and_the_sampling_lease(meta: SqlMetadataStore) -> None:
    async def scenario() -> None:
        await with_objects(meta, version("a", "a" * 32, 7), version("b", "b" * 32, 5))
        assert await meta.bucket_sizes() == {"bk": 12}
        assert await meta.hold_lease("l", "n1", now=0.0, ttl=10.0)
        assert not await meta.hold_lease("l", "n2", now=5.0, ttl=10.0)
        assert await meta.hold_lease("l", "n1", now=9.0, ttl=10.0)
        assert await meta.hold_lease("l", "n2", now=20.0, ttl=10.0)

    asyncio.run(scenario())


# ---- deleting a bucket, in steps ----


def test_a_bucket_is_deleted_in_bounded_steps_with_all_its_rows(meta: SqlMetadataStore) -> None:
    """Uploads in progress (and their parts), receipts and torrent marks go in steps of
    at most `batch` rows of each kind, each its own transaction; the bucket goes with the
    last step, and only the last step announces it (AccessChanged)."""

    seen: list[Event] = []

    def count(table: Any) -> int:
        return int(
            meta.db.read_sync(
                lambda c: c.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            )
        )

    async def scenario() -> None:
        await meta.create_bucket("bk", "owner", "us-east-1", None)
        await meta.create_bucket("other", "owner", "us-east-1", None)
        for bucket in ("bk", "other"):
            for i in range(7):
                up = f"{bucket}-up-{i}"
                await meta.create_upload(Upload(up, bucket, f"k{i}", "owner", time.time()))
                for n in (1, 2):
                    await meta.put_part(Part(up, n, f"{up}-blob-{n}", 5, '"e"', time.time()))

            def fill(c: Any, bucket: str = bucket) -> None:
                for i in range(5):
                    queries.insert_receipt(
                        c,
                        UploadReceipt(f"{bucket}-done-{i}", bucket, f"d{i}", "x", b"r"),
                        time.time(),
                    )
                for i in range(8):
                    queries.mark_torrent(c, bucket, f"m{i}")

            await meta.db.write(fill)
        meta.events.subscribe(seen.append)
        blobs: list[str] = []
        steps = 0
        gone = False
        while not gone:
            step_blobs, gone = await meta.delete_bucket("bk", batch=3)
            assert len(step_blobs) <= 3 * 2
            blobs += step_blobs
            steps += 1
            # Nothing announced before the bucket itself is gone.
            assert [e for e in seen if isinstance(e, AccessChanged)] == (
                [AccessChanged("bk", None)] if gone else []
            )
        assert steps == 3  # 8 marks, 3 at a time
        assert sorted(blobs) == sorted(f"bk-up-{i}-blob-{n}" for i in range(7) for n in (1, 2))
        assert await meta.bucket("bk") is None

    asyncio.run(scenario())
    # The other bucket's rows are all there.
    assert count(uploads) == 7 and count(parts) == 14
    assert count(upload_receipts) == 5 and count(torrent_marks) == 8


def test_an_object_written_between_steps_stops_the_deletion(meta: SqlMetadataStore) -> None:
    """Each step checks again that the bucket holds no objects: a write between steps
    stops it with BucketNotEmpty, and the bucket and its object stay."""

    async def scenario() -> None:
        await meta.create_bucket("bk", "owner", "us-east-1", None)
        for i in range(5):
            await meta.create_upload(Upload(f"up-{i}", "bk", f"k{i}", "owner", time.time()))
        _, gone = await meta.delete_bucket("bk", batch=2)
        assert not gone
        await meta.commit_version(version("late", "v" * 32))
        with pytest.raises(BucketNotEmpty):
            await meta.delete_bucket("bk", batch=2)
        assert await meta.bucket("bk") is not None
        assert await meta.object("bk", "late") is not None

    asyncio.run(scenario())
