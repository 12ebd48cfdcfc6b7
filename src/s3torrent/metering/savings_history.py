"""Savings over time: per period and bucket, what the origin sent to torrent clients and what
their swarms reported downloading, from the stored hourly counters.

The per-object savings report is cumulative; this one is the same arithmetic by hour or day,
for plots. Its origin side is the torrent channels only (the web seed and the seeder's
pieces): an hour's plain GETs of a bucket may be of any object, torrent-able or not, so they
are reported beside it and not subtracted from what peers delivered.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from s3torrent.metering.meter import OP_BITTORRENT, OP_GET, OP_WEBSEED
from s3torrent.metering.usage import GIB, PERIOD, UsageQuery, iso
from s3torrent.store.usage_rows import HourlyUsage, SwarmHour

if TYPE_CHECKING:
    from s3torrent.store.meta_usage import UsageMetadata


@dataclass(frozen=True, slots=True)
class SavingsPeriod:
    """One bucket's torrent traffic in one period [start, end)."""

    bucket: str
    start: int
    end: int
    rest_bytes: int  # plain GETs (any object of the bucket)
    web_seed_bytes: int
    seeder_bytes: int
    swarm_downloaded: int  # what its swarms' peers reported downloading, from any source

    @property
    def origin_bytes(self) -> int:
        """What the origin sent to torrent clients (web seed and seeder)."""
        return self.web_seed_bytes + self.seeder_bytes

    @property
    def offloaded_bytes(self) -> int:
        """What peers delivered to each other (a lower bound, as in the savings report)."""
        return max(0, self.swarm_downloaded - self.origin_bytes)

    def to_json(self, price_per_gb: float) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "start": iso(self.start),
            "end": iso(self.end),
            "rest_bytes": self.rest_bytes,
            "web_seed_bytes": self.web_seed_bytes,
            "seeder_bytes": self.seeder_bytes,
            "origin_bytes": self.origin_bytes,
            "swarm_downloaded": self.swarm_downloaded,
            "offloaded_bytes": self.offloaded_bytes,
            "cost_avoided": round(self.offloaded_bytes / GIB * price_per_gb, 6),
        }


_CHANNELS = {OP_GET: 0, OP_WEBSEED: 1, OP_BITTORRENT: 2}


def savings_history(
    hours: Iterable[HourlyUsage], swarms: Iterable[SwarmHour], q: UsageQuery
) -> list[SavingsPeriod]:
    """One entry per period and bucket with torrent or swarm traffic, in time order."""
    period = PERIOD[q.by]
    sums: dict[tuple[int, str], list[int]] = {}
    for h in hours:
        channel = _CHANNELS.get(h.operation)
        if channel is None or not h.bytes_out or not q.shows(h.bucket, h.bucket_created):
            continue
        acc = sums.setdefault((h.hour - h.hour % period, h.bucket), [0, 0, 0, 0])
        acc[channel] += h.bytes_out
    for s in swarms:
        if s.downloaded and q.shows(s.bucket, s.bucket_created):
            acc = sums.setdefault((s.hour - s.hour % period, s.bucket), [0, 0, 0, 0])
            acc[3] += s.downloaded
    return [
        SavingsPeriod(bucket, start, start + period, rest, web, seeder, swarm)
        for (start, bucket), (rest, web, seeder, swarm) in sorted(sums.items())
        if web or seeder or swarm
    ]


async def load_savings_history(meta: UsageMetadata, q: UsageQuery) -> list[SavingsPeriod]:
    hours = await meta.hourly_usage(q.start, q.end, q.buckets)
    swarms = await meta.swarm_hours(q.start, q.end, q.buckets)
    return savings_history(hours, swarms, q)


def savings_history_json(
    items: list[SavingsPeriod], q: UsageQuery, price_per_gb: float
) -> dict[str, Any]:
    return {
        "by": q.by,
        "from": iso(q.start) if q.start is not None else None,
        "to": iso(q.end) if q.end is not None else None,
        "price_per_gb": price_per_gb,
        "periods": [p.to_json(price_per_gb) for p in items],
        "total_origin_bytes": sum(p.origin_bytes for p in items),
        "total_offloaded_bytes": sum(p.offloaded_bytes for p in items),
    }
