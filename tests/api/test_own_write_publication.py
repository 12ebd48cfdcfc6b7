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

from s3torrent.events import ObjectWritten
from s3torrent.events_redis import decode_event, encode_event
from tests.conftest import make_client, node_in_process


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
        for _ in range(100):  # the write's own publication
            if row.version_id in public.by_version:
                break
            await asyncio.sleep(0.02)
        assert row.version_id in public.by_version
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
        for _ in range(100):
            if row.version_id in public.by_version:
                break
            await asyncio.sleep(0.02)
        assert row.version_id in public.by_version


def test_an_own_write_is_published_without_reading_its_version_again(tmp_path: Path) -> None:
    asyncio.run(asyncio.wait_for(_own_write(tmp_path), 120))


async def _own_write(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    async with node_in_process(tmp_path / "data") as (node, endpoint):
        s3 = make_client(endpoint)
        await loop.run_in_executor(None, lambda: s3.create_bucket(Bucket="own"))
        public = node.svc.public
        reads: list[str] = []
        meta: Any = public.meta
        by_version = meta.object_by_version

        async def counted(version_id: str) -> Any:
            reads.append(version_id)
            return await by_version(version_id)

        meta.object_by_version = counted
        try:
            await loop.run_in_executor(
                None,
                lambda: s3.put_object(Bucket="own", Key="k", Body=b"o" * 40_000, ACL="public-read"),
            )
            row = await node.svc.meta.object("own", "k")
            assert row is not None
            for _ in range(100):
                if row.version_id in public.by_version:
                    break
                await asyncio.sleep(0.02)
            assert row.version_id in public.by_version
            assert reads == []
        finally:
            del meta.object_by_version


def test_the_written_row_stays_in_its_process() -> None:
    row = object()
    event = ObjectWritten("b", "k", "v1", "v0", True, written=row)
    raw = encode_event(event, "node-a")
    assert b"written" not in raw
    sender, back = decode_event(raw)
    assert sender == "node-a"
    assert isinstance(back, ObjectWritten) and back.written is None
    assert back == event  # the hint is not part of the event's identity
