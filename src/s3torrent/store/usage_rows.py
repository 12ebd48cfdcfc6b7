"""The metering tables' values: a flush's counters going in, report rows coming out."""

from __future__ import annotations

from dataclasses import dataclass, field

# The operation under which stored bytes are counted (as byte-hours).
OP_STORAGE = "StandardStorage"


@dataclass(slots=True)
class UsageCounts:
    """Counters gathered by one node since its last flush (added to the tables' counts)."""

    # (hour, bucket, operation) -> [requests, bytes_out, bytes_in]
    usage: dict[tuple[int, str, str], list[int]] = field(default_factory=dict)
    # (bucket, key, operation) -> [requests, bytes_out]
    objects: dict[tuple[str, str, str], list[int]] = field(default_factory=dict)
    # (hour, bucket) -> byte-hours
    storage: dict[tuple[int, str], float] = field(default_factory=dict)
    # (hour, info-hash hex) -> (bucket, key, [completed, uploaded, downloaded])
    swarms: dict[tuple[int, str], tuple[str, str, list[int]]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.usage or self.objects or self.storage or self.swarms)

    def merge(self, other: UsageCounts) -> None:
        """Add other's counts to ours (a failed flush's counts go back to the next one)."""
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
        for kw, (bucket, key, vw) in other.swarms.items():
            mw = self.swarms.setdefault(kw, (bucket, key, [0, 0, 0]))[2]
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


@dataclass(frozen=True, slots=True)
class ObjectTraffic:
    """What the origin sent of one object in one operation (channel), since first served."""

    bucket: str
    key: str
    operation: str
    requests: int
    bytes_out: int


@dataclass(frozen=True, slots=True)
class SwarmTraffic:
    """What the tracker heard from the swarms of one object, summed over all hours."""

    bucket: str
    key: str
    completed: int
    downloaded: int
    uploaded: int


@dataclass(frozen=True, slots=True)
class SwarmHour:
    """What the tracker heard from one bucket's swarms in one hour (every object summed)."""

    hour: int
    bucket: str
    completed: int
    downloaded: int
    uploaded: int


@dataclass(frozen=True, slots=True)
class Traffic:
    """The savings report's inputs, read in one transaction."""

    objects: list[ObjectTraffic]
    swarms: list[SwarmTraffic]
