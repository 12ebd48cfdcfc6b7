"""Metadata store: the torrents of object versions (stored piece hashes) and hashing jobs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from sqlalchemy.engine import Connection

from s3torrent.events import TorrentHashed
from s3torrent.store import hash_queries as hq
from s3torrent.store import job_queries as jq
from s3torrent.store.meta_base import SqlStoreBase
from s3torrent.store.queries import get_object_by_version
from s3torrent.store.rows import ObjectVersion, TorrentHashes


class TorrentMetadata(Protocol):
    async def torrent_hashes(self, version_id: str) -> TorrentHashes | None: ...

    async def version_by_swarm_id(self, swarm_id: bytes) -> ObjectVersion | None: ...

    async def record_hashes(self, obj: ObjectVersion, hashes: TorrentHashes) -> bool: ...

    async def versions_without_hashes(self, max_size: int, limit: int) -> list[ObjectVersion]: ...

    async def versions_and_hashes(
        self, bucket: str | None
    ) -> list[tuple[ObjectVersion, TorrentHashes | None]]: ...

    async def add_hash_jobs(self, version_ids: Sequence[str], now: float) -> None: ...

    async def claim_hash_jobs(
        self, node: str, now: float, ttl: float, limit: int, version_id: str | None = None
    ) -> list[str]: ...

    async def renew_hash_claims(self, node: str, ids: list[str], until: float) -> set[str]: ...

    async def release_hash_claims(self, node: str, ids: list[str]) -> None: ...

    async def drop_hash_job(self, version_id: str) -> None: ...

    async def finish_hash_job(self, obj: ObjectVersion, hashes: TorrentHashes) -> bool: ...


class SqlTorrents(SqlStoreBase):
    async def torrent_hashes(self, version_id: str) -> TorrentHashes | None:
        """A version's stored hashes (a point read: every ?torrent and announce asks)."""
        return await self.db.lookup(lambda rows: hq.load_hashes(rows, version_id))

    async def version_by_swarm_id(self, swarm_id: bytes) -> ObjectVersion | None:
        """The current version whose torrent has this 20-byte swarm id, if any."""
        return await self.db.read(lambda c: hq.find_by_swarm_id(c, swarm_id))

    async def record_hashes(self, obj: ObjectVersion, hashes: TorrentHashes) -> bool:
        """Store hashes computed after the commit, if obj is still current (False if not)."""
        return await self._record_if_current(obj, hashes, finish_job=False)

    async def versions_without_hashes(self, max_size: int, limit: int) -> list[ObjectVersion]:
        """Current versions up to max_size whose hashes were never stored."""
        return await self.db.read(lambda c: hq.versions_without_hashes(c, max_size, limit))

    async def versions_and_hashes(
        self, bucket: str | None
    ) -> list[tuple[ObjectVersion, TorrentHashes | None]]:
        """Every current version (of one bucket, or all) with its stored hashes, if any."""
        return await self.db.read(lambda c: hq.versions_and_hashes(c, bucket))

    # ---- hashing jobs (one row per version; one node's claim at a time) ----

    async def add_hash_jobs(self, version_ids: Sequence[str], now: float) -> None:
        """A job for each version that has none (an existing job keeps its claim)."""
        ids = list(version_ids)
        if ids:
            await self.db.write(lambda c: jq.add_jobs(c, ids, now))

    async def claim_hash_jobs(
        self, node: str, now: float, ttl: float, limit: int, version_id: str | None = None
    ) -> list[str]:
        """Claim up to limit free or expired jobs (only version_id's, if given) until now+ttl."""
        return await self.db.write(lambda c: jq.claim_jobs(c, node, now, ttl, limit, version_id))

    async def renew_hash_claims(self, node: str, ids: list[str], until: float) -> set[str]:
        """Extend node's claims on ids; returns the ids it still holds."""
        return await self.db.write(lambda c: jq.renew_claims(c, node, ids, until))

    async def release_hash_claims(self, node: str, ids: list[str]) -> None:
        """Hand node's claims back so that any node may take the jobs at once."""
        await self.db.write(lambda c: jq.release_claims(c, node, ids))

    async def drop_hash_job(self, version_id: str) -> None:
        """Remove a job without recording anything (its version is gone or too large)."""
        await self.db.write(lambda c: jq.finish_job(c, version_id))

    async def finish_hash_job(self, obj: ObjectVersion, hashes: TorrentHashes) -> bool:
        """Remove obj's job and record its hashes if it is still current, in one commit."""
        return await self._record_if_current(obj, hashes, finish_job=True)

    async def _record_if_current(
        self, obj: ObjectVersion, hashes: TorrentHashes, *, finish_job: bool
    ) -> bool:
        def txn(conn: Connection) -> bool:
            if finish_job:
                jq.finish_job(conn, obj.version_id)
            # An overwritten or deleted version's hashes would be an orphan row.
            if get_object_by_version(conn, obj.version_id) is None:
                return False
            hq.record_hashes(conn, hashes)
            return True

        recorded = await self.db.write(txn)
        if recorded:
            self._published(TorrentHashed(obj.bucket, obj.key, obj.version_id))
        return recorded
