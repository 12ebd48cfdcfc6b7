"""What every part of the SQL metadata store shares: the database and the event bus."""

from __future__ import annotations

import json

from s3torrent.events import Event, EventBus, ObjectWritten
from s3torrent.store import queries as q
from s3torrent.store.database import Database
from s3torrent.store.rows import Bucket, ObjectVersion, Replaced, TorrentHashes


class SqlStoreBase:
    """The database the store writes to, and the bus its events go out on after each commit."""

    # Set where the workers of one machine relay events (events_local): an inline write then
    # reads its key's torrent mark in its own transaction, on SQLite only, where the one
    # write lock orders that read against a publication's mark (ObjectWritten.written_unmarked).
    marks_at_commit: bool = False

    def __init__(self, db: Database, events: EventBus) -> None:
        self.db = db
        self.events = events

    async def _bucket(self, name: str) -> Bucket | None:
        """A bucket row, from the exact cache of bucket rows while none changed (writes of
        objects keep it: every PUT looks its bucket up, twice)."""
        return await self.db.lookup_unchanged(
            ("bucket", name), lambda rows: q.get_bucket(rows, name), _bucket_weight, "buckets"
        )

    def _published(self, event: Event) -> None:
        # Always after the commit that made the change durable: subscribers (tracker,
        # seeder, caches, other nodes) may read the database again at once.
        self.events.publish(event)

    def _written(
        self,
        obj: ObjectVersion,
        replaced: Replaced | None,
        hashed: bool,
        bucket: Bucket | None = None,
        hashes: TorrentHashes | None = None,
        unmarked: bool = False,
    ) -> None:
        """ObjectWritten for obj, as committed; `bucket`: the row the commit read; `hashes`:
        the torrent hashes it stored; `unmarked`: see ObjectWritten.written_unmarked."""
        old_id = replaced.version_id if replaced is not None else None
        self._published(
            ObjectWritten(
                obj.bucket,
                obj.key,
                obj.version_id,
                old_id,
                hashed,
                written=obj,
                written_bucket=bucket,
                written_hashes=hashes,
                written_unmarked=unmarked,
            )
        )


def _bucket_weight(found: Bucket | None) -> int:
    """Roughly the bytes a cached bucket row holds (its policy and settings may be large)."""
    if found is None:
        return 256
    texts = (found.acl, found.policy, found.public_access_block)
    settings = len(json.dumps(found.settings)) if found.settings else 0
    return 1024 + sum(len(t) for t in texts if t) + settings
