"""Metadata store: buckets and their access settings (ACL, policy, Block Public Access)."""

from __future__ import annotations

import json
import time
from typing import Any, Protocol

from sqlalchemy.engine import Connection

from s3torrent.events import AccessChanged
from s3torrent.store import queries as q
from s3torrent.store.errors import BucketAlreadyExists, BucketNotEmpty
from s3torrent.store.meta_base import SqlStoreBase
from s3torrent.store.rows import Bucket
from s3torrent.store.schema import buckets


class BucketMetadata(Protocol):
    async def bucket(self, name: str) -> Bucket | None: ...

    async def list_buckets(self, owner_id: str | None) -> list[Bucket]: ...

    async def create_bucket(
        self,
        name: str,
        owner_id: str,
        region: str,
        acl: str | None,
        settings: dict[str, Any] | None = None,
    ) -> Bucket: ...

    async def delete_bucket(self, name: str) -> None: ...

    async def set_bucket_acl(self, name: str, acl: str) -> None: ...

    async def set_bucket_policy(self, name: str, policy: str | None) -> None: ...

    async def set_public_access_block(self, name: str, block: str | None) -> None: ...

    async def set_bucket_setting(self, name: str, setting: str, value: Any) -> None: ...

    async def mark_torrents_published(self, name: str) -> None: ...


class SqlBuckets(SqlStoreBase):
    async def bucket(self, name: str) -> Bucket | None:
        return await self._bucket(name)

    async def list_buckets(self, owner_id: str | None) -> list[Bucket]:
        return await self.db.read(lambda c: q.list_buckets(c, owner_id))

    async def create_bucket(
        self,
        name: str,
        owner_id: str,
        region: str,
        acl: str | None,
        settings: dict[str, Any] | None = None,
    ) -> Bucket:
        """Create a bucket (with its first settings, e.g. object lock, in the same
        transaction); BucketAlreadyExists (with the existing owner) if it exists."""
        bucket = Bucket(
            name=name,
            owner_id=owner_id,
            created_at=time.time(),
            region=region,
            acl=acl,
            settings=dict(settings or {}),
        )

        def txn(conn: Connection) -> None:
            existing = q.get_bucket(conn, name)
            if existing is not None:
                raise BucketAlreadyExists(name, existing.owner_id)
            conn.execute(
                buckets.insert().values(
                    name=name,
                    owner_id=owner_id,
                    created_at=bucket.created_at,
                    region=region,
                    acl=acl,
                    settings=json.dumps(settings, separators=(",", ":")) if settings else None,
                )
            )

        await self.db.write(txn)
        return bucket

    async def delete_bucket(self, name: str) -> None:
        """Delete an empty bucket (no objects, no uploads in progress)."""

        def txn(conn: Connection) -> None:
            if q.bucket_has_objects(conn, name) or q.bucket_has_uploads(conn, name):
                raise BucketNotEmpty(name)
            conn.execute(buckets.delete().where(buckets.c.name == name))

        await self.db.write(txn)
        self._published(AccessChanged(name, None))

    async def set_bucket_acl(self, name: str, acl: str) -> None:
        await self._set_access_column(name, acl=acl)

    async def set_bucket_policy(self, name: str, policy: str | None) -> None:
        await self._set_access_column(name, policy=policy)

    async def set_public_access_block(self, name: str, block: str | None) -> None:
        await self._set_access_column(name, public_access_block=block)

    async def _set_access_column(self, name: str, **values: Any) -> None:
        """One access setting of a bucket; every torrent in it is decided again."""

        def txn(conn: Connection) -> None:
            conn.execute(buckets.update().where(buckets.c.name == name).values(**values))

        await self.db.write(txn)
        self._published(AccessChanged(name, None))

    async def set_bucket_setting(self, name: str, setting: str, value: Any) -> None:
        """One entry of a bucket's settings (tags, ...); None removes it."""

        def txn(conn: Connection) -> None:
            bucket = q.get_bucket(conn, name)
            if bucket is not None:
                _write_setting(conn, bucket, setting, value)

        await self.db.write(txn)
        # Some settings decide torrents (a bucket's torrent switch): decide them again.
        self._published(AccessChanged(name, None))

    async def mark_torrents_published(self, name: str) -> None:
        """Record, durably, that a torrent of this bucket is about to be published (see
        TORRENTS_PUBLISHED). No event: nothing anyone may read changed."""

        def txn(conn: Connection) -> None:
            bucket = q.get_bucket(conn, name)
            if bucket is not None and not bucket.settings.get(TORRENTS_PUBLISHED):
                _write_setting(conn, bucket, TORRENTS_PUBLISHED, True)

        await self.db.write(txn)


# A bucket setting: set before the first torrent of the bucket is published in any process
# (PublicTorrents), never cleared. Until it is set no process holds a publication of the
# bucket, so a write that revokes one of its versions has nothing to wait for (the workers'
# settle middleware); a publication that sets it commits it before reading the version it
# publishes, so a writer that reads it unset after its own commit is never followed by a
# publication of the version it replaced.
TORRENTS_PUBLISHED = "torrents_published"


def _write_setting(conn: Connection, bucket: Bucket, setting: str, value: Any) -> None:
    """Set (None: remove) one entry of a bucket's settings, as read in this transaction."""
    settings = dict(bucket.settings)
    if value is None:
        settings.pop(setting, None)
    else:
        settings[setting] = value
    text = json.dumps(settings, separators=(",", ":")) if settings else None
    conn.execute(buckets.update().where(buckets.c.name == bucket.name).values(settings=text))
