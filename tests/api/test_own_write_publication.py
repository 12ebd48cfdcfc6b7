"""A write's own publication decides on the current row, never on the row its writer held.

The process that commits a version hands its publication the row it committed
(ObjectWritten.written), so the version is not read again. That row is a hint: by the time
the publication runs, the object's ACL or tags may have changed. These tests hold it to
deciding on the row it reads, and check the hint is used and never relayed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from fastbencode import bdecode, bencode  # type: ignore[attr-defined]

from s3torrent.events import ObjectWritten, decode_event, encode_event
from tests.conftest import make_client, node_in_process
from tests.seeding import fetch_torrent


async def _published(public: Any, version_id: str) -> None:
    """Wait (at most 2 s) until the version is published in this process."""
    for _ in range(100):
        if version_id in public.by_version:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{version_id} was not published")


def test_a_stale_public_row_never_publishes(tmp_path: Path) -> None:
    asyncio.run(asyncio.wait_for(_stale_public(tmp_path), 120))


async def _stale_public(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    async with node_in_process(tmp_path / "data") as (node, endpoint):
        s3 = make_client(endpoint)
        await loop.run_in_executor(None, lambda: s3.create_bucket(Bucket="hint"))
        await loop.run_in_executor(
            None,
            lambda: s3.put_object(Bucket="hint", Key="k", Body=b"p" * 40_000, ACL="public-read"),
        )
        public = node.svc.public
        row = await node.svc.meta.object("hint", "k")
        assert row is not None
        await _published(public, row.version_id)
        # Made private: revoked. The row the writer held said public-read.
        await loop.run_in_executor(
            None, lambda: s3.put_object_acl(Bucket="hint", Key="k", ACL="private")
        )
        assert row.version_id not in public.by_version
        assert await public.consider(row) is None  # the stale row, as a writer's hint
        assert row.version_id not in public.by_version
        # Public again: the ACL change's own event publishes the current row.
        await loop.run_in_executor(
            None, lambda: s3.put_object_acl(Bucket="hint", Key="k", ACL="public-read")
        )
        await _published(public, row.version_id)


def test_an_own_write_is_published_without_reading_its_version_again(tmp_path: Path) -> None:
    asyncio.run(asyncio.wait_for(_own_write(tmp_path), 120))


async def _own_write(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    async with node_in_process(tmp_path / "data") as (node, endpoint):
        s3 = make_client(endpoint)
        await loop.run_in_executor(None, lambda: s3.create_bucket(Bucket="own"))
        public = node.svc.public
        reads: list[str] = []
        hash_reads: list[str] = []
        meta: Any = public.meta
        by_version = meta.object_by_version
        torrent_hashes = meta.torrent_hashes

        async def counted(version_id: str) -> Any:
            reads.append(version_id)
            return await by_version(version_id)

        async def counted_hashes(version_id: str) -> Any:
            hash_reads.append(version_id)
            return await torrent_hashes(version_id)

        meta.object_by_version = counted
        meta.torrent_hashes = counted_hashes
        try:
            # Above the inline size (32 KiB) and public: its hashes are stored by its commit
            # and handed to its publication with the row, so neither is read back.
            await loop.run_in_executor(
                None,
                lambda: s3.put_object(Bucket="own", Key="k", Body=b"o" * 40_000, ACL="public-read"),
            )
            row = await node.svc.meta.object("own", "k")
            assert row is not None
            await _published(public, row.version_id)
            assert reads == [] and hash_reads == []
            # A small public write costs its publication nothing: its torrent is made, and
            # published, when first asked for.
            await loop.run_in_executor(
                None,
                lambda: s3.put_object(Bucket="own", Key="s", Body=b"s" * 4096, ACL="public-read"),
            )
            small = await node.svc.meta.object("own", "s")
            assert small is not None and small.inline is not None
            await asyncio.sleep(0.2)
            assert small.version_id not in public.by_version and not public._tasks
            assert reads == [] and hash_reads == []
            await loop.run_in_executor(None, lambda: fetch_torrent(endpoint, "own", "s"))
            await _published(public, small.version_id)
        finally:
            del meta.object_by_version
            del meta.torrent_hashes


def test_the_written_row_stays_in_its_process() -> None:
    row, bucket = object(), object()
    event = ObjectWritten(
        "b", "k", "v1", "v0", True, written=row, written_bucket=bucket, written_hashes=object()
    )
    raw = encode_event(event, "node-a")
    assert b"written" not in raw
    sender, back = decode_event(raw)
    assert sender == "node-a"
    assert isinstance(back, ObjectWritten) and back.written is None
    assert back.written_bucket is None and back.written_hashes is None
    assert back == event  # the hint is not part of the event's identity


def test_a_key_is_marked_before_its_first_torrent_is_published(tmp_path: Path) -> None:
    """What lets a write of a key that never had a torrent skip waiting for the other
    workers (owner_link.settle_middleware), even in a bucket full of public objects: no
    process may hold a publication of such a key, because a publication marks the key,
    durably, before it reads the version it publishes."""
    asyncio.run(asyncio.wait_for(_marked_first(tmp_path), 120))


async def _marked_first(tmp_path: Path) -> None:
    from s3torrent.events import AccessChanged, ObjectDeleted

    loop = asyncio.get_running_loop()
    async with node_in_process(tmp_path / "data") as (node, endpoint):
        s3 = make_client(endpoint)
        public = node.svc.public
        meta: Any = public.meta
        await loop.run_in_executor(None, lambda: s3.create_bucket(Bucket="quiet"))
        for key in ("k", "private"):
            await loop.run_in_executor(
                None, lambda key=key: s3.put_object(Bucket="quiet", Key=key, Body=b"q" * 40_000)
            )
        row = await node.svc.meta.object("quiet", "k")
        assert row is not None
        overwrite = ObjectWritten("quiet", "k", "v-new", row.version_id)
        delete = ObjectDeleted("quiet", "k", row.version_id)
        # Private objects only: nothing of the key was ever published anywhere.
        assert not await public.may_hold(overwrite) and not await public.may_hold(delete)
        assert await public.may_hold(AccessChanged("quiet", "k"))  # always waited for
        # A publication marks the key before it reads the row it publishes.
        order: list[str] = []
        mark, current = meta.mark_torrent, meta.object

        async def marking(bucket: str, key: str) -> None:
            order.append(f"mark {key}")
            await mark(bucket, key)

        async def reading(bucket: str, key: str) -> Any:
            order.append("read")
            return await current(bucket, key)

        meta.mark_torrent, meta.object = marking, reading
        try:
            await loop.run_in_executor(
                None, lambda: s3.put_object_acl(Bucket="quiet", Key="k", ACL="public-read")
            )
            await _published(public, row.version_id)
            # consider_key reads the row to start from; the currency read comes after.
            assert order.count("mark k") == 1
            assert "read" in order[order.index("mark k") + 1 :]
            assert await public.may_hold(overwrite) and await public.may_hold(delete)
            # The bucket now holds a published torrent; its other keys still wait for nothing.
            assert not await public.may_hold(ObjectWritten("quiet", "private", "v2", "v1"))
            assert not await public.may_hold(ObjectDeleted("quiet", "private", "v1"))
            # Marked once: the key's next publication (a new public version) writes nothing.
            order.clear()
            await loop.run_in_executor(
                None,
                lambda: s3.put_object(
                    Bucket="quiet", Key="k", Body=b"r" * 40_000, ACL="public-read"
                ),
            )
            row2 = await node.svc.meta.object("quiet", "k")
            assert row2 is not None
            await _published(public, row2.version_id)
            assert not any(step.startswith("mark") for step in order)
        finally:
            del meta.mark_torrent, meta.object
        # The marks go with their bucket: one made again under the name starts unmarked.
        for key in ("k", "private"):
            await loop.run_in_executor(
                None, lambda key=key: s3.delete_object(Bucket="quiet", Key=key)
            )
        await loop.run_in_executor(None, lambda: s3.delete_bucket(Bucket="quiet"))
        await loop.run_in_executor(None, lambda: s3.create_bucket(Bucket="quiet"))
        assert not await public.may_hold(delete)


def test_a_key_that_cannot_be_marked_publishes_nothing(tmp_path: Path) -> None:
    asyncio.run(asyncio.wait_for(_unmarkable(tmp_path), 120))


async def _unmarkable(tmp_path: Path) -> None:
    from s3torrent.store.errors import StorageFull

    loop = asyncio.get_running_loop()
    async with node_in_process(tmp_path / "data") as (node, endpoint):
        s3 = make_client(endpoint)
        public = node.svc.public
        meta: Any = public.meta

        async def full(_bucket: str, _key: str) -> None:
            raise StorageFull()

        meta.mark_torrent = full
        try:
            await loop.run_in_executor(None, lambda: s3.create_bucket(Bucket="full"))
            body = b"f" * 40_000
            await loop.run_in_executor(
                None, lambda: s3.put_object(Bucket="full", Key="k", Body=body, ACL="public-read")
            )
            row = await node.svc.meta.object("full", "k")
            assert row is not None
            assert await public.consider(row) is None
            assert row.version_id not in public.by_version
        finally:
            del meta.mark_torrent
        assert await public.consider(row) is not None  # marked now: published
        assert row.version_id in public.by_version


def test_a_write_refused_at_its_commit_costs_no_publication_task(tmp_path: Path) -> None:
    """Most writes are of private objects: their refusal is decided at once, on the rows the
    commit wrote and read (ObjectWritten.written and .written_bucket), with no task and no
    read. What may be public still goes through consider(), and so does a write into a
    bucket whose policy has a time boundary ahead (consider schedules it). A refused object
    that becomes public later is published when a request names it."""
    asyncio.run(asyncio.wait_for(_refused_at_commit(tmp_path), 120))


async def _refused_at_commit(tmp_path: Path) -> None:
    import hashlib
    import json
    import urllib.request
    from datetime import UTC, datetime, timedelta

    loop = asyncio.get_running_loop()
    async with node_in_process(tmp_path / "data") as (node, endpoint):
        s3 = make_client(endpoint)
        public = node.svc.public
        considered: list[str] = []
        consider = public.consider

        async def counted(obj: Any, **kw: Any) -> Any:
            considered.append(obj.key)
            return await consider(obj, **kw)

        public.consider = counted

        async def put(bucket: str, key: str, body: bytes, **kw: Any) -> str:
            await loop.run_in_executor(
                None, lambda: s3.put_object(Bucket=bucket, Key=key, Body=body, **kw)
            )
            for _ in range(5):  # let whatever the event spawned run
                await asyncio.sleep(0.01)
            row = await node.svc.meta.object(bucket, key)
            assert row is not None
            return row.version_id

        def torrent_of(bucket: str, key: str) -> bytes:
            with urllib.request.urlopen(f"{endpoint}/{bucket}/{key}?torrent", timeout=10) as r:
                return bytes(r.read())

        try:
            await loop.run_in_executor(None, lambda: s3.create_bucket(Bucket="quick"))
            private = await put("quick", "private", b"p" * 40_000)
            empty = await put("quick", "empty", b"", ACL="public-read")
            assert considered == [] and not public._tasks
            assert private not in public.by_version and empty not in public.by_version
            shared = await put("quick", "shared", b"s" * 40_000, ACL="public-read")
            assert considered == ["shared"]
            await _published(public, shared)
            # Made public later by a policy: published when a peer names its swarm.
            policy = {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": "*",
                        "Action": "s3:GetObject",
                        "Resource": "arn:aws:s3:::quick/*",
                    }
                ],
            }
            await loop.run_in_executor(
                None, lambda: s3.put_bucket_policy(Bucket="quick", Policy=json.dumps(policy))
            )
            torrent = await loop.run_in_executor(None, torrent_of, "quick", "private")
            info_hash = hashlib.sha1(bencode(bdecode(torrent)[b"info"])).digest()
            assert await public.resolve(info_hash) is not None
            assert private in public.by_version
            # A policy with a time boundary ahead: consider() decides, and schedules it.
            await loop.run_in_executor(None, lambda: s3.create_bucket(Bucket="timed"))
            until = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
            timed = {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": "*",
                        "Action": "s3:GetObject",
                        "Resource": "arn:aws:s3:::timed/public/*",
                        "Condition": {"DateLessThan": {"aws:CurrentTime": until}},
                    }
                ],
            }
            await loop.run_in_executor(
                None, lambda: s3.put_bucket_policy(Bucket="timed", Policy=json.dumps(timed))
            )
            considered.clear()
            await put("timed", "private/k", b"t" * 40_000)
            assert considered == ["private/k"]
            for _ in range(100):  # consider() schedules it once the bucket is read
                if "timed" in public._boundary_timers:
                    break
                await asyncio.sleep(0.02)
            assert "timed" in public._boundary_timers
        finally:
            del public.consider
