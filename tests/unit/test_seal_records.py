"""The key records of sealed versions: stored, found, re-wrapped and dropped with their versions."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from s3torrent.events import EventBus
from s3torrent.store.meta_sealing import SSE_S3, SealRecord
from s3torrent.store.metastore import SqlMetadataStore, open_metadata_store
from s3torrent.store.rows import ObjectVersion
from s3torrent.store.sealed_format import Segment
from tests.conftest import metadata_env


@pytest.fixture
def meta(tmp_path: Path) -> Iterator[SqlMetadataStore]:
    url = metadata_env().get("S3TORRENT_METADATA_URL", f"sqlite:///{tmp_path / 'm.sqlite3'}")
    store = open_metadata_store(url, EventBus())
    yield store
    store.close()


def test_records_of_gone_versions_are_dropped_but_recent_ones_wait(meta: SqlMetadataStore) -> None:
    async def run() -> None:
        await meta.create_bucket("bk", "owner", "us-east-1", None)
        live = ObjectVersion("bk", "k", "live1", 10, '"e"', time.time(), "owner")
        await meta.commit_version(live, None)
        segs = (Segment(1, 5), Segment(2, 5))
        await meta.put_seal_record(SealRecord("live1", SSE_S3, "key1", b"w", segments=segs))
        await meta.put_seal_record(SealRecord("gone1", SSE_S3, "key1", b"w"))
        assert (await meta.seal_record("live1")) == SealRecord(
            "live1", SSE_S3, "key1", b"w", segments=segs
        )
        # A record younger than the grace may belong to a write not committed yet.
        assert await meta.drop_unreferenced_seal_records(created_before=0.0) == 0
        assert await meta.drop_unreferenced_seal_records(created_before=time.time() + 1) == 1
        assert await meta.seal_record("gone1") is None
        assert await meta.seal_record("live1") is not None
        assert await meta.seal_key_ids() == {"key1"}
        moved = SealRecord("live1", SSE_S3, "key2", b"v", segments=segs)
        assert [r.owner for r in await meta.seal_records_not_wrapped_by("key2", 10)] == ["live1"]
        await meta.rewrap_seal_records([moved])
        assert await meta.seal_records_not_wrapped_by("key2", 10) == []
        assert await meta.seal_record("live1") == moved

    asyncio.run(run())
