"""Metadata store: what the lifecycle worker reads and keeps (a key's versions, pages of keys
with all their versions, the cursor of each bucket's pass)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from s3torrent.store import lifecycle_queries as lq
from s3torrent.store.meta_base import SqlStoreBase
from s3torrent.store.rows import ObjectVersion
from s3torrent.store.schema import lifecycle_cursors
from s3torrent.store.sql import insert_if_absent


@dataclass(frozen=True, slots=True)
class KeyVersion:
    """One version of a key as lifecycle rules see it. `version_id` is the store's id (unique:
    it names exactly this version), `s3_version_id` the id S3 gives it ("null" for a null
    version); `obj` is the stored version (None for a delete marker); `noncurrent_since` is
    when a newer version replaced it (the newer one's last_modified; None while it is the
    latest)."""

    version_id: str
    is_latest: bool
    is_delete_marker: bool
    noncurrent_since: float | None
    obj: ObjectVersion | None
    s3_version_id: str = ""
    last_modified: float = 0.0
    """When this version (a delete marker too) was made."""


@dataclass(frozen=True, slots=True)
class KeyVersionsPage:
    """One step of a lifecycle pass: keys in order, each with all its versions."""

    keys: list[tuple[str, list[KeyVersion]]]
    truncated: bool

    @property
    def last(self) -> str | None:
        """Where the next page starts after (the pass's cursor)."""
        return self.keys[-1][0] if self.keys else None


def key_versions_of(stored: list[ObjectVersion]) -> list[KeyVersion]:
    """A key's stored versions (newest first) as lifecycle rules see them."""
    out: list[KeyVersion] = []
    newer_made: float | None = None
    for i, v in enumerate(stored):
        obj = None if v.delete_marker else v
        out.append(
            KeyVersion(
                v.version_id,
                i == 0,
                v.delete_marker,
                newer_made,
                obj,
                v.s3_version_id,
                v.last_modified,
            )
        )
        newer_made = v.last_modified
    return out


class LifecycleMetadata(Protocol):
    async def key_versions(self, bucket: str, key: str) -> list[KeyVersion]: ...

    async def key_versions_page(
        self, bucket: str, prefix: str, after: str | None, limit: int
    ) -> KeyVersionsPage: ...

    async def lifecycle_cursor(self, bucket: str) -> str | None: ...

    async def save_lifecycle_cursor(self, bucket: str, after: str | None) -> None: ...


def _cursor(conn: Connection, bucket: str) -> str | None:
    row = conn.execute(
        sa.select(lifecycle_cursors.c.after_key).where(lifecycle_cursors.c.bucket == bucket)
    ).first()
    return bytes(row[0]).decode("utf-8") if row is not None and row[0] is not None else None


def _save_cursor(conn: Connection, bucket: str, after: str | None) -> None:
    values = {
        "after_key": after.encode("utf-8") if after is not None else None,
        "updated_at": time.time(),
    }
    where = lifecycle_cursors.c.bucket == bucket
    if conn.execute(lifecycle_cursors.update().where(where).values(**values)).rowcount:
        return
    if not insert_if_absent(conn, lifecycle_cursors, {"bucket": bucket, **values}):
        conn.execute(lifecycle_cursors.update().where(where).values(**values))


class SqlLifecycle(SqlStoreBase):
    async def key_versions(self, bucket: str, key: str) -> list[KeyVersion]:
        """All of a key's versions, newest first: the current one (`objects`), then the
        noncurrent versions and delete markers (`object_versions`)."""
        return key_versions_of(await self.db.read(lambda c: lq.key_history(c, bucket, key)))

    async def key_versions_page(
        self, bucket: str, prefix: str, after: str | None, limit: int
    ) -> KeyVersionsPage:
        """The next `limit` keys under `prefix` after `after` that have any version (a key
        whose latest version is a delete marker included), each with all its versions."""
        found, truncated = await self.db.read(
            lambda c: lq.history_page(c, bucket, prefix, after, limit)
        )
        return KeyVersionsPage([(k, key_versions_of(vs)) for k, vs in found], truncated)

    async def lifecycle_cursor(self, bucket: str) -> str | None:
        """The last key a bucket's unfinished lifecycle pass evaluated (None: start over)."""
        return await self.db.read(lambda c: _cursor(c, bucket))

    async def save_lifecycle_cursor(self, bucket: str, after: str | None) -> None:
        """Record how far a bucket's pass got (None: the pass finished)."""
        await self.db.write(lambda c: _save_cursor(c, bucket, after))
