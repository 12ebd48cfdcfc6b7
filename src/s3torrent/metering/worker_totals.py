"""The node's Prometheus counters across `serve --workers N`: one sum, shown by the owner.

Each worker counts the requests it answers in its own `Meter`. Every other worker sends the
owner its totals every PUSH_INTERVAL over the owner's Unix socket (a snapshot, not the
increments: a lost message loses nothing), and `/_metrics` (forwarded to the owner from any
worker) and the metrics listener show the owner's totals plus the latest of every other
worker's. Counters stay monotonic, as Prometheus needs:

* a worker that is started again (a new incarnation under the same index) starts from zero;
  its predecessor's last totals stay in the sum (`retired`), so at most the last
  PUSH_INTERVAL of a worker that died is missing;
* an owner that is started again starts the node's sum from zero (as one process's
  restart does): a worker that finds a new owner incarnation counts from that moment on
  (its `baseline`), so nothing the old owner already showed is counted twice.

The usage report (per bucket, from the database) counts every worker regardless.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from s3torrent.log_output import dropped_lines
from s3torrent.metering.meter import LATENCY_BOUNDS

if TYPE_CHECKING:
    from s3torrent.metering.meter import Meter

__all__ = [
    "MAX_SERIES",
    "MAX_WORKERS",
    "PUSH_INTERVAL",
    "Totals",
    "WorkerTotals",
    "decode",
    "encode",
    "totals_of",
]

PUSH_INTERVAL = 1.0  # seconds between a worker's pushes
MAX_WORKERS = 1024  # worker indexes the owner keeps totals of
MAX_SERIES = 4096  # entries per table of one push (operations x statuses, ...)
BUCKETS = len(LATENCY_BOUNDS) + 1


@dataclass(slots=True)
class Totals:
    """One worker's cumulative counters (or a sum of several)."""

    requests: dict[tuple[str, int], int] = field(default_factory=dict)
    bytes: dict[tuple[str, str], int] = field(default_factory=dict)
    # operation -> (count per LATENCY_BOUNDS bucket, +Inf last; sum of seconds)
    latency: dict[str, tuple[list[int], float]] = field(default_factory=dict)
    flushes: int = 0
    flush_failures: int = 0
    # Log lines dropped by kind of log ("access log", "server log"): log_output.py.
    logs_dropped: dict[str, int] = field(default_factory=dict)

    def add(self, other: Totals, sign: int = 1) -> None:
        for rk, n in other.requests.items():
            self.requests[rk] = self.requests.get(rk, 0) + sign * n
        for bk, n in other.bytes.items():
            self.bytes[bk] = self.bytes.get(bk, 0) + sign * n
        for op, (counts, total) in other.latency.items():
            mine = self.latency.get(op)
            if mine is None:
                mine = self.latency[op] = ([0] * BUCKETS, 0.0)
            merged = [a + sign * b for a, b in zip(mine[0], counts, strict=True)]
            self.latency[op] = (merged, mine[1] + sign * total)
        self.flushes += sign * other.flushes
        self.flush_failures += sign * other.flush_failures
        for kind, n in other.logs_dropped.items():
            self.logs_dropped[kind] = self.logs_dropped.get(kind, 0) + sign * n

    def minus(self, base: Totals) -> Totals:
        out = Totals()
        out.add(self)
        out.add(base, sign=-1)
        return out


def totals_of(meter: Meter) -> Totals:
    """A copy of a meter's cumulative counters."""
    return Totals(
        dict(meter.requests_total),
        dict(meter.bytes_total),
        {op: (list(h.counts), h.total) for op, h in meter.latency.items()},
        meter.flushes,
        meter.flush_failures,
        dropped_lines(),
    )


def encode(t: Totals) -> bytes:
    return json.dumps(
        {
            "requests": [[op, status, n] for (op, status), n in t.requests.items()],
            "bytes": [[op, direction, n] for (op, direction), n in t.bytes.items()],
            "latency": [[op, counts, total] for op, (counts, total) in t.latency.items()],
            "flushes": t.flushes,
            "flush_failures": t.flush_failures,
            "logs_dropped": [[kind, n] for kind, n in t.logs_dropped.items()],
        },
        separators=(",", ":"),
    ).encode()


def _int(v: Any) -> int:
    if not isinstance(v, int) or isinstance(v, bool):
        raise ValueError("not an integer")
    return v


def _str(v: Any) -> str:
    if not isinstance(v, str) or len(v) > 128:
        raise ValueError("not a short string")
    return v


def _rows(v: Any) -> list[Any]:
    if not isinstance(v, list) or len(v) > MAX_SERIES:
        raise ValueError("not a bounded list")
    return v


def decode(data: bytes) -> Totals:
    """A pushed snapshot; ValueError for anything malformed or unbounded."""
    try:
        raw = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError("not JSON") from exc
    if not isinstance(raw, dict):
        raise ValueError("not an object")
    t = Totals(
        flushes=_int(raw.get("flushes", 0)), flush_failures=_int(raw.get("flush_failures", 0))
    )
    for row in _rows(raw.get("requests", [])):
        op, status, n = _rows(row)
        t.requests[(_str(op), _int(status))] = _int(n)
    for row in _rows(raw.get("bytes", [])):
        op, direction, n = _rows(row)
        t.bytes[(_str(op), _str(direction))] = _int(n)
    for row in _rows(raw.get("latency", [])):
        op, counts, total = _rows(row)
        counts = [_int(c) for c in _rows(counts)]
        if len(counts) != BUCKETS or not isinstance(total, int | float):
            raise ValueError("not a latency histogram")
        t.latency[_str(op)] = (counts, float(total))
    for row in _rows(raw.get("logs_dropped", [])):
        kind, n = _rows(row)
        t.logs_dropped[_str(kind)] = _int(n)
    return t


class WorkerTotals:
    """The owner's view of the other workers' totals."""

    def __init__(self, incarnation: str) -> None:
        self.incarnation = incarnation  # the owner's own: workers rebase when it changes
        self._latest: dict[int, tuple[str, Totals]] = {}
        self._retired = Totals()

    def update(self, worker: int, incarnation: str, totals: Totals) -> bool:
        """A worker's push; False if it cannot be kept (too many workers)."""
        prev = self._latest.get(worker)
        if prev is None and len(self._latest) >= MAX_WORKERS:
            return False
        if prev is not None and prev[0] != incarnation:
            self._retired.add(prev[1])  # that process is gone: its counts stay
        self._latest[worker] = (incarnation, totals)
        return True

    def merged(self, own: Totals) -> Totals:
        out = Totals()
        out.add(own)
        out.add(self._retired)
        for _incarnation, totals in self._latest.values():
            out.add(totals)
        return out
