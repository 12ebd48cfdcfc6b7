"""Metadata store: object versions (the commit point of every write), listings, object ACLs."""

from __future__ import annotations

import time
from typing import Any, Protocol

from sqlalchemy.engine import Connection

from s3torrent.events import AccessChanged, ObjectDeleted, ObjectWritten
from s3torrent.store import hash_queries as hq
from s3torrent.store import queries as q
from s3torrent.store import version_queries as vq
from s3torrent.store.conditions import NO_CONDITION, WriteCondition
from s3torrent.store.listing import Page, list_page
from s3torrent.store.meta_base import SqlStoreBase
from s3torrent.store.retention import check_retention_change
from s3torrent.store.rows import (
    Bucket,
    Committed,
    ObjectVersion,
    Removed,
    Tags,
    TorrentHashes,
    encode_tags,
)
from s3torrent.store.version_listing import VersionPage, list_versions_page


class ObjectMetadata(Protocol):
    async def object(self, bucket: str, key: str) -> ObjectVersion | None: ...

    async def object_by_version(self, version_id: str) -> ObjectVersion | None: ...

    async def bucket_and_object(
        self, bucket: str, key: str | None
    ) -> tuple[Bucket | None, ObjectVersion | None]: ...

    async def list_page(
        self, bucket: str, prefix: str, delimiter: str, after: str | None, max_keys: int
    ) -> Page: ...

    async def list_versions_page(
        self,
        bucket: str,
        prefix: str,
        delimiter: str,
        key_marker: str,
        version_id_marker: str | None,
        max_keys: int,
    ) -> VersionPage: ...

    async def object_version(
        self, bucket: str, key: str, s3_version_id: str
    ) -> ObjectVersion | None: ...

    async def latest_delete_marker(self, bucket: str, key: str) -> ObjectVersion | None: ...

    async def commit_version(
        self,
        obj: ObjectVersion,
        hashes: TorrentHashes | None = None,
        condition: WriteCondition = NO_CONDITION,
    ) -> Committed: ...

    async def delete_object(
        self,
        bucket: str,
        key: str,
        condition: WriteCondition = NO_CONDITION,
        owner_id: str = "",
    ) -> Removed: ...

    async def delete_version(
        self,
        bucket: str,
        key: str,
        s3_version_id: str,
        bypass_governance: bool = False,
        noncurrent: str | None = None,
        condition: WriteCondition = NO_CONDITION,
    ) -> Removed: ...

    async def update_version(
        self, bucket: str, key: str, s3_version_id: str, **values: Any
    ) -> ObjectVersion | None: ...

    async def set_retention(
        self,
        bucket: str,
        key: str,
        s3_version_id: str,
        mode: str | None,
        until: float | None,
        bypass_governance: bool,
    ) -> ObjectVersion | None: ...

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

        if key is None:
            return await self._bucket(bucket), None
        # Every GET and HEAD: while nothing commits, the same rows are read again and again.
        return await self.db.lookup_unchanged(
            ("bucket_and_object", bucket, key),
            lambda rows: q.get_bucket_and_object(rows, bucket, key),
            _weight,
        )

    async def list_page(
        self, bucket: str, prefix: str, delimiter: str, after: str | None, max_keys: int
    ) -> Page:
        return await self.db.read(
            lambda c: list_page(c, bucket, prefix, delimiter, after, max_keys)
        )

    async def list_versions_page(
        self,
        bucket: str,
        prefix: str,
        delimiter: str,
        key_marker: str,
        version_id_marker: str | None,
        max_keys: int,
    ) -> VersionPage:
        return await self.db.read(
            lambda c: list_versions_page(
                c, bucket, prefix, delimiter, key_marker, version_id_marker, max_keys
            )
        )

    async def object_version(
        self, bucket: str, key: str, s3_version_id: str
    ) -> ObjectVersion | None:
        """The version of a key S3 names s3_version_id ("null" or an id), current or not;
        a delete marker too (its `delete_marker` is set)."""
        return await self.db.read(lambda c: vq.get_version(c, bucket, key, s3_version_id))

    async def latest_delete_marker(self, bucket: str, key: str) -> ObjectVersion | None:
        """The key's delete marker, when that is its latest version."""
        return await self.db.read(lambda c: vq.latest_delete_marker(c, bucket, key))

    async def commit_version(
        self,
        obj: ObjectVersion,
        hashes: TorrentHashes | None = None,
        condition: WriteCondition = NO_CONDITION,
    ) -> Committed:
        """The commit point of a write: obj becomes current (with its torrent hashes, when
        they were computed in the upload stream) if `condition` holds in this transaction
        (else store.errors.PreconditionFailed, ObjectMissing or ConditionalConflict). The
        bucket's versioning decides what happens to the version it replaces (see
        version_queries.commit_object); returns the version as stored."""

        read_mark = self.marks_at_commit and obj.inline is not None and hashes is None

        def txn(conn: Connection) -> tuple[Bucket, Committed, bool]:
            bucket = condition.check_bucket(obj.bucket, q.get_bucket(conn, obj.bucket))
            committed = vq.commit_object(conn, bucket, obj, condition, time.time())
            if hashes is not None:
                # obj's id is new (a fresh blob or row id): no hashes can be stored under it.
                hq.record_hashes(conn, hashes, new_version=True)
            # Read after this transaction's first write, so under the write lock: a
            # publication's mark committed before it is seen, and one committed after it
            # reads (then publishes) this version or a later one, never the one replaced.
            # Not on PostgreSQL, whose row locks do not order the two.
            unmarked = (
                read_mark
                and conn.dialect.name == "sqlite"
                and not q.torrent_marked(conn, obj.bucket, obj.key)
            )
            return bucket, committed, unmarked

        bucket, committed, unmarked = await self.db.write(txn)
        # An inline version needs no hashing job: it is hashed from its row when asked.
        hashed = hashes is not None or committed.version.inline is not None
        self._written(committed.version, committed.replaced, hashed, bucket, hashes, unmarked)
        return committed

    async def delete_object(
        self,
        bucket: str,
        key: str,
        condition: WriteCondition = NO_CONDITION,
        owner_id: str = "",
    ) -> Removed:
        """DeleteObject without a version id, if `condition` holds: in an unversioned bucket
        the current version goes; in a versioned or suspended one a delete marker (owned by
        owner_id) becomes the latest version."""

        def txn(conn: Connection) -> Removed:
            b = q.get_bucket(conn, bucket)
            if condition.bucket_created is not None:
                condition.check_bucket(bucket, b)
            if b is None or b.versioning is None:
                old = q.delete_object(conn, bucket, key, condition)
                return Removed(None, False, old, freed=vq.freed_by(old))
            return vq.add_delete_marker(conn, b, key, condition, time.time(), owner_id)

        removed = await self.db.write(txn)
        self._removed(bucket, key, removed)
        return removed

    async def delete_version(
        self,
        bucket: str,
        key: str,
        s3_version_id: str,
        bypass_governance: bool = False,
        noncurrent: str | None = None,
        condition: WriteCondition = NO_CONDITION,
    ) -> Removed:
        """Remove one version for good, unless object lock protects it (ObjectLocked, for
        everyone: this is the one way a version is removed). The newest remaining version
        becomes current again when the current one (or the latest delete marker) went.
        `noncurrent`: the lifecycle worker's delete, of exactly the version with this store
        id and only while it is noncurrent (see version_queries.delete_version).
        `condition`: If-Match on that version, decided in the delete's transaction."""

        def txn(conn: Connection) -> Removed:
            if condition.bucket_created is not None:
                condition.check_bucket(bucket, q.get_bucket(conn, bucket))
            return vq.delete_version(
                conn,
                bucket,
                key,
                s3_version_id,
                time.time(),
                bypass_governance,
                noncurrent,
                condition,
            )

        removed = await self.db.write(txn)
        self._removed(bucket, key, removed)
        return removed

    def _removed(self, bucket: str, key: str, removed: Removed) -> None:
        if removed.revoked is not None:
            self._published(ObjectDeleted(bucket, key, removed.revoked.version_id))
        if removed.promoted is not None:
            # Current again: decided anew for a torrent (its hashes are computed again).
            self._published(ObjectWritten(bucket, key, removed.promoted.version_id, None, False))

    async def update_version(
        self, bucket: str, key: str, s3_version_id: str, **values: Any
    ) -> ObjectVersion | None:
        """Set columns (acl, tags, lock settings) of one version, current or not; returns
        the version as it was (None: no such version; a delete marker is returned as is,
        unchanged)."""
        found = await self.db.write(
            lambda c: vq.update_version(c, bucket, key, s3_version_id, **values)
        )
        if found is not None and not found.delete_marker:
            self._published(AccessChanged(bucket, key))
        return found

    async def set_retention(
        self,
        bucket: str,
        key: str,
        s3_version_id: str,
        mode: str | None,
        until: float | None,
        bypass_governance: bool,
    ) -> ObjectVersion | None:
        """A version's retention, changed as object lock allows (ObjectLocked otherwise:
        decided under the row lock, so two changes cannot both shorten it)."""
        now = time.time()

        def allowed(version: ObjectVersion) -> None:
            check_retention_change(version, mode, until, now, bypass_governance)

        return await self.db.write(
            lambda c: vq.update_version(
                c, bucket, key, s3_version_id, allowed, lock_mode=mode, lock_until=until
            )
        )

    async def set_object_acl(self, obj: ObjectVersion, acl: str) -> bool:
        """Set the ACL of exactly this version (False: it is no longer stored)."""

        def txn(conn: Connection) -> int:
            # The version the access check saw (current or not): an overwrite since then
            # keeps its own ACL.
            return vq.set_by_version_id(conn, obj.version_id, acl=acl)

        changed = await self.db.write(txn) > 0
        if changed:
            self._published(AccessChanged(obj.bucket, obj.key))
        return changed

    async def set_object_tags(self, obj: ObjectVersion, tags: Tags) -> bool:
        """Set the tags of exactly this version (False: it is no longer stored). Tags feed
        policy conditions (s3:ExistingObjectTag), so its torrent is decided again."""

        def txn(conn: Connection) -> int:
            return vq.set_by_version_id(conn, obj.version_id, tags=encode_tags(tags))

        changed = await self.db.write(txn) > 0
        if changed:
            self._published(AccessChanged(obj.bucket, obj.key))
        return changed

    def referenced_blob_ids(self) -> set[str]:
        """Every blob id some metadata row still points at (blocking: at start only)."""
        return self.db.read_sync(q.referenced_blob_ids)


def _weight(found: tuple[Bucket | None, ObjectVersion | None]) -> int:
    """Roughly the bytes a cached (bucket, object) holds: its inline body and some rows."""
    obj = found[1]
    return 2048 + (len(obj.inline) if obj is not None and obj.inline is not None else 0)
