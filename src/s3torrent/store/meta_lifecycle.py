"""Metadata store: what the lifecycle worker reads and keeps (a key's versions, the cursor
of each bucket's pass)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from s3torrent.store import queries as q
from s3torrent.store.meta_base import SqlStoreBase
from s3torrent.store.rows import ObjectVersion
from s3torrent.store.schema import lifecycle_cursors
from s3torrent.store.sql import insert_if_absent


@dataclass(frozen=True, slots=True)
class KeyVersion:
    """One version of a key as lifecycle rules see it. `obj` is the stored version (None for
    a delete marker); `noncurrent_since` is when a newer version replaced it (None while it
    is the latest)."""

    version_id: str
    is_latest: bool
    is_delete_marker: bool
    noncurrent_since: float | None
    obj: ObjectVersion | None


class LifecycleMetadata(Protocol):
    async def key_versions(self, bucket: str, key: str) -> list[KeyVersion]: ...

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
        """A key's versions, newest first. Today's schema keeps one version per key (the
        current one, never a delete marker); the versioned schema lists them all."""
        obj = await self.db.lookup(lambda rows: q.get_object(rows, bucket, key))
        if obj is None:
            return []
        return [KeyVersion(obj.version_id, True, False, None, obj)]

    async def lifecycle_cursor(self, bucket: str) -> str | None:
        """The last key a bucket's unfinished lifecycle pass evaluated (None: start over)."""
        return await self.db.read(lambda c: _cursor(c, bucket))

    async def save_lifecycle_cursor(self, bucket: str, after: str | None) -> None:
        """Record how far a bucket's pass got (None: the pass finished)."""
        await self.db.write(lambda c: _save_cursor(c, bucket, after))
