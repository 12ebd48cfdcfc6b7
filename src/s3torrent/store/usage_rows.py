"""The metering tables' values: a flush's counters going in, report rows coming out."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# The operation under which stored bytes are counted (as byte-hours).
OP_STORAGE = "StandardStorage"


# Which bucket of a name counts are of: its `created_at` (schema._bucket_created). None:
# the bucket that has the name when the counts are stored (a count recorded without the
# bucket's row: CreateBucket's own); NO_BUCKET: none has it. The seeder, the web seed and
# the swarm samples carry the created_at of the publication they served
# (TorrentInfo.bucket_created).
Created = float | None
NO_BUCKET = 0.0


@dataclass(slots=True)
class UsageCounts:
    """Counters gathered by one node since its last flush (added to the tables' counts)."""

    # (hour, bucket, created, operation) -> [requests, bytes_out, bytes_in]
    usage: dict[tuple[int, str, Created, str], list[int]] = field(default_factory=dict)
    # (bucket, created, key, operation) -> [requests, bytes_out]
    objects: dict[tuple[str, Created, str, str], list[int]] = field(default_factory=dict)
    # (hour, bucket, created) -> byte-hours
    storage: dict[tuple[int, str, Created], float] = field(default_factory=dict)
    # (hour, info-hash hex) -> (bucket, created, key, [completed, uploaded, downloaded])
    swarms: dict[tuple[int, str], tuple[str, Created, str, list[int]]] = field(default_factory=dict)
    # When these counts began to be gathered (wall clock): those of unknown bucket (created
    # None) were recorded since. Infinity: not known (taken as after every creation).
    started: float = math.inf
    # Per bucket name, when its first count of unknown bucket was recorded (wall clock):
    # a bucket that had the name by then is the one they are of (usage_queries.add_counts).
    first_unknown: dict[str, float] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.usage or self.objects or self.storage or self.swarms)

    def merge(self, other: UsageCounts) -> None:
        """Add other's counts to ours (a failed flush's counts go back to the next one)."""
        self.started = min(self.started, other.started)
        for name, at in other.first_unknown.items():
            self.first_unknown[name] = min(at, self.first_unknown.get(name, at))
        for k, v in other.usage.items():
            mine = self.usage.setdefault(k, [0, 0, 0])
            for i in range(3):
                mine[i] += v[i]
        for ko, vo in other.objects.items():
            mo = self.objects.setdefault(ko, [0, 0])
            mo[0] += vo[0]
            mo[1] += vo[1]
        for ks, vs in other.storage.items():
            self.storage[ks] = self.storage.get(ks, 0.0) + vs
        for kw, (bucket, created, key, vw) in other.swarms.items():
            mw = self.swarms.setdefault(kw, (bucket, created, key, [0, 0, 0]))[3]
            for i in range(3):
                mw[i] += vw[i]


@dataclass(frozen=True, slots=True)
class HourlyUsage:
    """One row of usage_hourly: one bucket's operation in one hour."""

    hour: int
    bucket: str
    operation: str
    requests: int
    bytes_out: int
    bytes_in: int
    byte_hours: float
    bucket_created: float = NO_BUCKET


@dataclass(frozen=True, slots=True)
class ObjectTraffic:
    """What the origin sent of one object in one operation (channel), since first served."""

    bucket: str
    key: str
    operation: str
    requests: int
    bytes_out: int
    bucket_created: float = NO_BUCKET


@dataclass(frozen=True, slots=True)
class SwarmTraffic:
    """What the tracker heard from the swarms of one object, summed over all hours."""

    bucket: str
    key: str
    completed: int
    downloaded: int
    uploaded: int
    bucket_created: float = NO_BUCKET


@dataclass(frozen=True, slots=True)
class SwarmHour:
    """What the tracker heard from one bucket's swarms in one hour (every object summed)."""

    hour: int
    bucket: str
    completed: int
    downloaded: int
    uploaded: int
    bucket_created: float = NO_BUCKET


@dataclass(frozen=True, slots=True)
class Traffic:
    """The savings report's inputs, read in one transaction."""

    objects: list[ObjectTraffic]
    swarms: list[SwarmTraffic]
