"""Metadata store: usage counters (the meter's flushes and samples) and the reports' reads."""

from __future__ import annotations

from typing import Protocol

from s3torrent.store import usage_queries as uq
from s3torrent.store.meta_base import SqlStoreBase
from s3torrent.store.queries import hold_lease
from s3torrent.store.usage_rows import HourlyUsage, SwarmHour, Traffic, UsageCounts


class UsageMetadata(Protocol):
    async def add_usage(self, counts: UsageCounts) -> None: ...

    async def bucket_sizes(self) -> dict[str, int]: ...

    async def bucket_sizes_created(self) -> dict[tuple[str, float], int]: ...

    async def hold_lease(self, name: str, holder: str, now: float, ttl: float) -> bool: ...

    async def hourly_usage(
        self, start: int | None, end: int | None, buckets: frozenset[str] | None
    ) -> list[HourlyUsage]: ...

    async def swarm_hours(
        self, start: int | None, end: int | None, buckets: frozenset[str] | None
    ) -> list[SwarmHour]: ...

    async def traffic(
        self, buckets: frozenset[str] | None, key: str | None, current_only: bool = False
    ) -> Traffic: ...


class SqlUsage(SqlStoreBase):
    async def add_usage(self, counts: UsageCounts) -> None:
        """Add one flush's counters to the stored ones, in one transaction."""
        await self.db.write(lambda c: uq.add_counts(c, counts))

    async def bucket_sizes(self) -> dict[str, int]:
        """Stored bytes per bucket: current versions plus parts of unfinished uploads."""
        return await self.db.read(uq.bucket_sizes)

    async def bucket_sizes_created(self) -> dict[tuple[str, float], int]:
        """bucket_sizes by (name, created_at) of the bucket that has the name now."""
        return await self.db.read(uq.bucket_sizes_created)

    async def hold_lease(self, name: str, holder: str, now: float, ttl: float) -> bool:
        """Take or renew the lease `name` for holder until now + ttl (False: another holds it)."""
        return await self.db.write(lambda c: hold_lease(c, name, holder, now, ttl))

    async def hourly_usage(
        self, start: int | None, end: int | None, buckets: frozenset[str] | None
    ) -> list[HourlyUsage]:
        """Stored hourly counters of the hours overlapping [start, end), of buckets (None: all)."""
        return await self.db.read(lambda c: uq.hourly_usage(c, start, end, buckets))

    async def swarm_hours(
        self, start: int | None, end: int | None, buckets: frozenset[str] | None
    ) -> list[SwarmHour]:
        """The tracker's swarm counters by hour and bucket (for savings over time)."""
        return await self.db.read(lambda c: uq.swarm_hours(c, start, end, buckets))

    async def traffic(
        self, buckets: frozenset[str] | None, key: str | None, current_only: bool = False
    ) -> Traffic:
        """Per-object origin traffic and swarm totals (for the savings report); of the keys
        that are objects now only, with `current_only`."""
        return await self.db.read(lambda c: uq.traffic(c, buckets, key, current_only))
