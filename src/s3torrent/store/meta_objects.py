"""Metadata store: object versions (the commit point of every write), listings, object ACLs."""

from __future__ import annotations

from typing import Protocol

from sqlalchemy.engine import Connection

from s3torrent.events import AccessChanged, ObjectDeleted
from s3torrent.store import hash_queries as hq
from s3torrent.store import queries as q
from s3torrent.store.conditions import NO_CONDITION, WriteCondition
from s3torrent.store.errors import NoSuchBucket
from s3torrent.store.listing import Page, list_page
from s3torrent.store.meta_base import SqlStoreBase
from s3torrent.store.rows import (
    Bucket,
    ObjectVersion,
    Replaced,
    Tags,
    TorrentHashes,
    encode_tags,
)
from s3torrent.store.schema import objects
from s3torrent.store.sql import Rows


class ObjectMetadata(Protocol):
    async def object(self, bucket: str, key: str) -> ObjectVersion | None: ...

    async def object_by_version(self, version_id: str) -> ObjectVersion | None: ...

    async def bucket_and_object(
        self, bucket: str, key: str | None
    ) -> tuple[Bucket | None, ObjectVersion | None]: ...

    async def list_page(
        self, bucket: str, prefix: str, delimiter: str, after: str | None, max_keys: int
    ) -> Page: ...

    async def commit_version(
        self,
        obj: ObjectVersion,
        hashes: TorrentHashes | None = None,
        condition: WriteCondition = NO_CONDITION,
    ) -> Replaced | None: ...

    async def delete_object(
        self, bucket: str, key: str, condition: WriteCondition = NO_CONDITION
    ) -> Replaced | None: ...

    async def set_object_acl(self, obj: ObjectVersion, acl: str) -> bool: ...

    async def set_object_tags(self, obj: ObjectVersion, tags: Tags) -> bool: ...

    def referenced_blob_ids(self) -> set[str]: ...


class SqlObjects(SqlStoreBase):
    async def object(self, bucket: str, key: str) -> ObjectVersion | None:
        return await self.db.lookup(lambda rows: q.get_object(rows, bucket, key))

    async def object_by_version(self, version_id: str) -> ObjectVersion | None:
        return await self.db.lookup(lambda rows: q.get_object_by_version(rows, version_id))

    async def bucket_and_object(
        self, bucket: str, key: str | None
    ) -> tuple[Bucket | None, ObjectVersion | None]:
        """A bucket and (when key is given) its current object for key, in one read."""

        def both(rows: Rows) -> tuple[Bucket | None, ObjectVersion | None]:
            b = q.get_bucket(rows, bucket)
            if b is None or key is None:
                return b, None
            return b, q.get_object(rows, bucket, key)

        return await self.db.lookup(both)

    async def list_page(
        self, bucket: str, prefix: str, delimiter: str, after: str | None, max_keys: int
    ) -> Page:
        return await self.db.read(
            lambda c: list_page(c, bucket, prefix, delimiter, after, max_keys)
        )

    async def commit_version(
        self,
        obj: ObjectVersion,
        hashes: TorrentHashes | None = None,
        condition: WriteCondition = NO_CONDITION,
    ) -> Replaced | None:
        """The commit point of a write: obj becomes current (with its torrent hashes, when
        they were computed in the upload stream) if `condition` holds in this transaction
        (else store.errors.PreconditionFailed, ObjectMissing or ConditionalConflict);
        returns the version it replaced."""

        def txn(conn: Connection) -> Replaced | None:
            if q.get_bucket(conn, obj.bucket) is None:
                raise NoSuchBucket(obj.bucket)
            replaced = q.upsert_object(conn, obj, condition)
            if hashes is not None:
                hq.record_hashes(conn, hashes)
            return replaced

        replaced = await self.db.write(txn)
        self._written(obj, replaced, hashes is not None)
        return replaced

    async def delete_object(
        self, bucket: str, key: str, condition: WriteCondition = NO_CONDITION
    ) -> Replaced | None:
        """Delete the current version of a key if `condition` holds; returns it, if there
        was one."""
        removed = await self.db.write(lambda c: q.delete_object(c, bucket, key, condition))
        if removed is not None:
            self._published(ObjectDeleted(bucket, key, removed.version_id))
        return removed

    async def set_object_acl(self, obj: ObjectVersion, acl: str) -> bool:
        """Set the ACL of exactly this version (False: it is no longer stored)."""

        def txn(conn: Connection) -> int:
            # The version the access check saw: an overwrite since then keeps its own ACL.
            result = conn.execute(
                objects.update().where(objects.c.version_id == obj.version_id).values(acl=acl)
            )
            return int(result.rowcount or 0)

        changed = await self.db.write(txn) > 0
        if changed:
            self._published(AccessChanged(obj.bucket, obj.key))
        return changed

    async def set_object_tags(self, obj: ObjectVersion, tags: Tags) -> bool:
        """Set the tags of exactly this version (False: it is no longer stored). Tags feed
        policy conditions (s3:ExistingObjectTag), so its torrent is decided again."""

        def txn(conn: Connection) -> int:
            result = conn.execute(
                objects.update()
                .where(objects.c.version_id == obj.version_id)
                .values(tags=encode_tags(tags))
            )
            return int(result.rowcount or 0)

        changed = await self.db.write(txn) > 0
        if changed:
            self._published(AccessChanged(obj.bucket, obj.key))
        return changed

    def referenced_blob_ids(self) -> set[str]:
        """Every blob id some metadata row still points at (blocking: at start only)."""
        return self.db.read_sync(q.referenced_blob_ids)
