"""ListMultipartUploads' scan in the metadata store, on a real database: a common prefix
costs one seek past its uploads, never a read of each of them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from s3torrent.events import EventBus
from s3torrent.store import queries
from s3torrent.store.meta_uploads import scan_uploads
from s3torrent.store.metastore import SqlMetadataStore, open_metadata_store
from s3torrent.store.rows import Upload
from tests.conftest import metadata_env


@pytest.fixture
def meta(tmp_path: Path) -> Iterator[SqlMetadataStore]:
    url = metadata_env().get("S3TORRENT_METADATA_URL", f"sqlite:///{tmp_path / 'm.sqlite3'}")
    store = open_metadata_store(url, EventBus())
    yield store
    store.close()


def _uploads(meta: SqlMetadataStore, keys: list[str]) -> None:
    ups = [Upload(f"u{i:06d}", "bk", key, "owner", 1000.0 + i) for i, key in enumerate(keys)]

    async def fill() -> None:
        await meta.create_bucket("bk", "owner", "us-east-1", None)
        await meta.db.write(lambda c: [queries.insert_upload(c, up) for up in ups])

    asyncio.run(fill())


def _scan(
    meta: SqlMetadataStore, monkeypatch: pytest.MonkeyPatch, **kw: Any
) -> tuple[list[Upload | str], bool, int]:
    """scan_uploads' answer, and how many upload rows it read to give it."""
    read = [0]
    real = queries.list_uploads

    def counted(*args: Any) -> list[Upload]:
        rows = real(*args)
        read[0] += len(rows)
        return rows

    monkeypatch.setattr(queries, "list_uploads", counted)
    args = {"prefix": "", "delimiter": "/", "key_marker": "", "upload_id_marker": "", "limit": 2}
    args |= kw
    entries, truncated = asyncio.run(
        meta.db.read(
            lambda c: scan_uploads(
                c,
                "bk",
                args["prefix"],
                args["delimiter"],
                args["key_marker"],
                args["upload_id_marker"],
                args["limit"],
            )
        )
    )
    return entries, truncated, read[0]


def test_common_prefixes_are_skipped_with_a_seek(
    meta: SqlMetadataStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    _uploads(meta, [f"a/{i:05d}" for i in range(3000)] + ["b", "c/1", "c/2", "d"])
    entries, truncated, read = _scan(meta, monkeypatch)
    assert [e if isinstance(e, str) else e.key for e in entries] == ["a/", "b"]
    assert truncated
    assert read < 100
    entries, truncated, read = _scan(meta, monkeypatch, key_marker="a/", limit=10)
    assert [e if isinstance(e, str) else e.key for e in entries] == ["b", "c/", "d"]
    assert not truncated
    assert read < 100
