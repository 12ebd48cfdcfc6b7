"""Metadata store: buckets and their access settings (ACL, policy, Block Public Access)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection
from typing import Any, Final, Protocol

from sqlalchemy.engine import Connection

from s3torrent.events import AccessChanged
from s3torrent.store import queries as q
from s3torrent.store import user_queries as uq
from s3torrent.store.conditions import WriteCondition
from s3torrent.store.errors import BucketAlreadyExists, BucketNotEmpty, NoSuchUser
from s3torrent.store.meta_base import SqlStoreBase
from s3torrent.store.rows import POLICY_USERS, Bucket
from s3torrent.store.schema import buckets, lifecycle_cursors

# Rows of each kind one step of a bucket's deletion drops (SqlBuckets.delete_bucket).
DELETE_BUCKET_BATCH: Final = 1000


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

    async def delete_bucket(self, name: str, batch: int = ...) -> tuple[list[str], bool]: ...

    async def set_bucket_acl(
        self, name: str, acl: str, created_at: float | None = None
    ) -> None: ...

    async def set_bucket_policy(
        self,
        name: str,
        policy: str | None,
        created_at: float | None = None,
        users: Collection[str] = (),
    ) -> None: ...

    async def set_public_access_block(
        self, name: str, block: str | None, created_at: float | None = None
    ) -> None: ...

    async def set_bucket_setting(
        self,
        name: str,
        setting: str,
        value: Any,
        created_at: float | None = None,
        check: Callable[[Bucket], None] | None = None,
    ) -> None: ...

    async def torrent_marked(self, bucket: str, key: str) -> bool: ...

    async def mark_torrent(self, bucket: str, key: str) -> None: ...


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

    async def delete_bucket(
        self, name: str, batch: int = DELETE_BUCKET_BATCH
    ) -> tuple[list[str], bool]:
        """One step of deleting a bucket with no objects (no versions, no delete markers):
        up to `batch` each of its uploads in progress (which go with it, as on S3, which
        deletes such a bucket), the receipts of its completed ones and its torrent marks
        (a bucket made again under this name starts with no publication); the bucket
        itself once none is left. Returns the removed parts' blob ids, for the caller to
        delete once this is committed, and whether the bucket is gone (else: call again).

        In steps, so that no one transaction holds the metadata's writer for as long as
        a bucket's rows take to drop (every other write waits for it): a bucket that had
        published a million keys kept a mark for each. Each step checks again that the
        bucket holds no objects; one written meanwhile stops it with BucketNotEmpty, and
        what the earlier steps dropped stays dropped."""

        def txn(conn: Connection) -> tuple[list[str], bool]:
            if q.bucket_has_objects(conn, name):
                raise BucketNotEmpty(name)
            blob_ids, more = q.delete_bucket_rows(conn, name, batch)
            if more:
                return blob_ids, False
            conn.execute(buckets.delete().where(buckets.c.name == name))
            # Where its last lifecycle pass got to: not where the next bucket of the name
            # (maybe another owner's) begins its first.
            conn.execute(lifecycle_cursors.delete().where(lifecycle_cursors.c.bucket == name))
            return blob_ids, True

        blob_ids, gone = await self.db.write(txn)
        if gone:
            self._published(AccessChanged(name, None))
        return blob_ids, gone

    async def set_bucket_acl(self, name: str, acl: str, created_at: float | None = None) -> None:
        await self._set_access_column(name, created_at, acl=acl)

    async def set_bucket_policy(
        self,
        name: str,
        policy: str | None,
        created_at: float | None = None,
        users: Collection[str] = (),
    ) -> None:
        """Store (None: remove) the bucket's policy, binding each of `users` (the names it
        gives by ARN) to the canonical id of the user of that name, read in the same
        transaction (rows.POLICY_USERS): as IAM binds them to unique ids, a user created
        later under a name is not the one the policy named. NoSuchUser if one has none."""

        def txn(conn: Connection) -> None:
            bucket = _current_bucket(conn, name, created_at)
            ids = uq.canonical_ids(conn, users)
            missing = sorted(set(users) - set(ids))
            if missing:
                raise NoSuchUser(missing[0])
            conn.execute(buckets.update().where(buckets.c.name == name).values(policy=policy))
            _write_setting(conn, bucket, POLICY_USERS, ids if policy is not None else None)

        await self.db.write(txn)
        self._published(AccessChanged(name, None))

    async def set_public_access_block(
        self, name: str, block: str | None, created_at: float | None = None
    ) -> None:
        await self._set_access_column(name, created_at, public_access_block=block)

    async def _set_access_column(self, name: str, created_at: float | None, **values: Any) -> None:
        """One access setting of a bucket; every torrent in it is decided again.
        `created_at` (every bucket setter's): only the bucket created then, not one of
        its name created again since (NoSuchBucket; WriteCondition.bucket_created)."""

        def txn(conn: Connection) -> None:
            _current_bucket(conn, name, created_at)
            conn.execute(buckets.update().where(buckets.c.name == name).values(**values))

        await self.db.write(txn)
        self._published(AccessChanged(name, None))

    async def set_bucket_setting(
        self,
        name: str,
        setting: str,
        value: Any,
        created_at: float | None = None,
        check: Callable[[Bucket], None] | None = None,
    ) -> None:
        """One entry of a bucket's settings (tags, ...); None removes it. `check` (which
        raises to refuse) is given the bucket as this transaction reads it, so a rule
        between settings holds against a change of the other one racing this."""

        def txn(conn: Connection) -> None:
            bucket = _current_bucket(conn, name, created_at)
            if check is not None:
                check(bucket)
            _write_setting(conn, bucket, setting, value)

        await self.db.write(txn)
        # Some settings decide torrents (a bucket's torrent switch): decide them again.
        self._published(AccessChanged(name, None))

    async def torrent_marked(self, bucket: str, key: str) -> bool:
        """Whether some process ever published a torrent of this key (schema.torrent_marks),
        read now: after a write's commit, False means that no process holds a publication
        of any version the write replaced or deleted."""
        return await self.db.lookup(lambda rows: q.torrent_marked(rows, bucket, key))

    async def mark_torrent(self, bucket: str, key: str) -> None:
        """Record, durably, that a torrent of this key is about to be published: before the
        publication reads the version it publishes. No event: nothing anyone reads changed."""
        await self.db.write(lambda conn: q.mark_torrent(conn, bucket, key))


def _current_bucket(conn: Connection, name: str, created_at: float | None) -> Bucket:
    """The bucket as this transaction reads it; NoSuchBucket if it is gone or (created_at
    given) is another bucket of the same name."""
    return WriteCondition(bucket_created=created_at).check_bucket(name, q.get_bucket(conn, name))


def _write_setting(conn: Connection, bucket: Bucket, setting: str, value: Any) -> None:
    """Set (None: remove) one entry of a bucket's settings, as read in this transaction."""
    settings = dict(bucket.settings)
    if value is None:
        settings.pop(setting, None)
    else:
        settings[setting] = value
    text = json.dumps(settings, separators=(",", ":")) if settings else None
    conn.execute(buckets.update().where(buckets.c.name == bucket.name).values(settings=text))
