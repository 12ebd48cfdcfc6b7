"""The metadata store: the one way to read and change metadata.

Every change (object versions, ACLs, policies, Block Public Access, buckets, uploads, users,
usage counters, hashing jobs) is a method here that commits and then publishes the event
that goes with it. Handlers, the CLI, metering and the torrent jobs never run SQL or
publish by hand, so a new endpoint that changes what is public cannot forget to revoke a
torrent: it has no other way to write.

`MetadataStore` is the Protocol the rest of the code depends on; `SqlMetadataStore` is its
implementation on SQLAlchemy Core, for SQLite and PostgreSQL alike (the few dialect
differences live in the queries: ON CONFLICT, RETURNING, SKIP LOCKED).
"""

from __future__ import annotations

from typing import Protocol

from s3torrent.events import EventBus
from s3torrent.store.database import Database
from s3torrent.store.meta_buckets import BucketMetadata, SqlBuckets
from s3torrent.store.meta_lifecycle import LifecycleMetadata, SqlLifecycle
from s3torrent.store.meta_objects import ObjectMetadata, SqlObjects
from s3torrent.store.meta_sealing import SealMetadata, SqlSeals
from s3torrent.store.meta_torrents import SqlTorrents, TorrentMetadata
from s3torrent.store.meta_uploads import SqlUploads, UploadMetadata
from s3torrent.store.meta_usage import SqlUsage, UsageMetadata
from s3torrent.store.meta_users import SqlUsers, UserMetadata


class MetadataStore(
    BucketMetadata,
    ObjectMetadata,
    UploadMetadata,
    TorrentMetadata,
    UserMetadata,
    UsageMetadata,
    SealMetadata,
    LifecycleMetadata,
    Protocol,
):
    """Every metadata read and write; each write commits, then publishes its event."""

    def close(self) -> None: ...


class SqlMetadataStore(
    SqlBuckets, SqlObjects, SqlUploads, SqlTorrents, SqlUsers, SqlUsage, SqlSeals, SqlLifecycle
):
    """The metadata store on SQLAlchemy Core (SQLite or PostgreSQL)."""

    def __init__(self, db: Database, events: EventBus) -> None:
        super().__init__(db, events)

    def close(self) -> None:
        self.db.close()


def open_metadata_store(
    url: str, events: EventBus, *, max_batch: int = 256, durable: bool = True
) -> SqlMetadataStore:
    """The store for a SQLAlchemy URL (migrating the schema to the newest revision);
    `durable`: storage.fsync (schema.create_engine)."""
    return SqlMetadataStore(Database(url, max_batch=max_batch, durable=durable), events)
