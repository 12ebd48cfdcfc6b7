"""What every part of the SQL metadata store shares: the database and the event bus."""

from __future__ import annotations

from s3torrent.events import Event, EventBus, ObjectWritten
from s3torrent.store.database import Database
from s3torrent.store.rows import ObjectVersion, Replaced


class SqlStoreBase:
    """The database the store writes to, and the bus its events go out on after each commit."""

    def __init__(self, db: Database, events: EventBus) -> None:
        self.db = db
        self.events = events

    def _published(self, event: Event) -> None:
        # Always after the commit that made the change durable: subscribers (tracker,
        # seeder, caches, other nodes) may read the database again at once.
        self.events.publish(event)

    def _written(self, obj: ObjectVersion, replaced: Replaced | None, hashed: bool) -> None:
        old_id = replaced.version_id if replaced is not None else None
        self._published(ObjectWritten(obj.bucket, obj.key, obj.version_id, old_id, hashed))
