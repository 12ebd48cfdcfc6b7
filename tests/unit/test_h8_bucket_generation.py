"""A bucket name is global and reusable at once: what a request authorized against one
bucket does, and what a deleted bucket leaves behind, must not reach the next bucket of
its name (maybe another owner's).

CreateMultipartUpload carries the creation time of the bucket it was authorized against,
as every other write does: an upload authorized against a bucket deleted and created again
by someone else before its row was written must not be started in the new bucket (its
initiator could complete it there)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from s3torrent.events import EventBus
from s3torrent.store.errors import NoSuchBucket
from s3torrent.store.metastore import SqlMetadataStore, open_metadata_store
from s3torrent.store.rows import Upload
from tests.conftest import metadata_env

FIRST_OWNER = "1" * 64
SECOND_OWNER = "2" * 64


@pytest.fixture
def meta(tmp_path: Path) -> Iterator[SqlMetadataStore]:
    url = metadata_env().get("S3TORRENT_METADATA_URL", f"sqlite:///{tmp_path / 'm.sqlite3'}")
    store = open_metadata_store(url, EventBus())
    yield store
    store.close()


def test_an_upload_is_not_started_in_a_bucket_created_again(meta: SqlMetadataStore) -> None:
    async def scenario() -> None:
        name = f"h8-reborn-{time.time_ns()}"
        first = await meta.create_bucket(name, FIRST_OWNER, "us-east-1", None)
        # Authorized against `first`; the bucket is deleted and taken by another owner.
        await meta.delete_bucket(name)
        second = await meta.create_bucket(name, SECOND_OWNER, "us-east-1", None)
        assert second.created_at != first.created_at
        planted = Upload("h8-up-1", name, "k", FIRST_OWNER, time.time())
        with pytest.raises(NoSuchBucket):
            await meta.create_upload(planted, first.created_at)
        assert await meta.upload("h8-up-1") is None
        # The bucket it was authorized against takes it.
        await meta.create_upload(
            Upload("h8-up-2", name, "k", SECOND_OWNER, time.time()), second.created_at
        )
        assert await meta.upload("h8-up-2") is not None
        await meta.abort_upload("h8-up-2")
        await meta.delete_bucket(name)

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_a_bucket_created_again_starts_its_lifecycle_from_its_first_key(
    meta: SqlMetadataStore,
) -> None:
    """A deleted bucket's lifecycle cursor (where its last pass got to) goes with it: the
    next bucket of its name, maybe another owner's, must not begin its first pass after a
    key of the old one (every key before it would wait a whole pass to be evaluated)."""

    async def scenario() -> None:
        name = f"h8-cursor-{time.time_ns()}"
        await meta.create_bucket(name, FIRST_OWNER, "us-east-1", None)
        await meta.save_lifecycle_cursor(name, "m/half-way")
        await meta.delete_bucket(name)
        await meta.create_bucket(name, SECOND_OWNER, "us-east-1", None)
        assert await meta.lifecycle_cursor(name) is None
        await meta.delete_bucket(name)

    asyncio.run(asyncio.wait_for(scenario(), 30))
