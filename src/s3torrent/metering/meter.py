"""Usage counters: requests and bytes per bucket, hour and operation, kept in memory and flushed.

Every channel reports here once, at its edge: the S3 middleware for every REST request
(GetObject and its ranges, ?torrent, PutObject, UploadPart, List*, ...), the web seed for its
range GETs (channel GetObject-WebSeed),
the seeder for the piece messages it sends (`on_piece_sent`, one call per batch of blocks,
channel GetObject-BitTorrent). Counting
is a few additions on the event loop thread, into one entry per (bucket, operation, status,
object) of the current hour, added into the counters when they are read (`Meter._fold`);
a background task flushes the counters to the
metadata store at least once a second (one transaction per flush) and at shutdown, so a
crash loses at most the last interval. The same task samples each bucket's stored bytes
(byte-hours) and the tracker's swarm counters (per torrent and hour).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from s3torrent.failures import logged_failure
from s3torrent.store.usage_rows import NO_BUCKET, Created, UsageCounts
from s3torrent.store.usage_rows import OP_STORAGE as OP_STORAGE

if TYPE_CHECKING:
    from s3torrent.publication import PublicTorrents
    from s3torrent.store.meta_usage import UsageMetadata
    from s3torrent.torrent.catalog import TorrentInfo

log = logging.getLogger(__name__)

# The channel is part of the operation name, as S3 usage reports show it.
OP_BITTORRENT = "GetObject-BitTorrent"
OP_GET = "GetObject"
# Range GETs of the web seed (/_webseed/...), BitTorrent clients' and browsers' HTTP source:
# apart from plain GETs so the savings report can tell torrent traffic from REST traffic.
OP_WEBSEED = "GetObject-WebSeed"
OP_TORRENT = "GetObjectTorrent"
OP_UNKNOWN = "Unknown"  # refused before routing (bad method, unknown sub-resource, bad URI)

# aiohttp request keys: the routed S3 request (an s3.context.S3Request, set by the
# dispatcher; its `body_sent` is the body bytes a handler sent itself, which the response
# object cannot know); the prefix of a non-S3 route; the request id every answer carries.
S3_REQUEST: web.RequestKey[Any] = web.RequestKey("s3_request")


def body_bytes_sent(
    request: web.Request, response: web.StreamResponse | None, sent: int | None
) -> int:
    """The body bytes an answer carried: `sent` (S3Request.body_sent) when the handler
    counted them itself, else what a complete response holds (none for a HEAD).

    A complete response's body is measured, not its Content-Length read back: aiohttp
    parses that header again on each read (half a microsecond, on every request), and no
    response here is compressed, so the two agree."""
    if sent is not None:
        return sent
    if request.method == "HEAD" or not isinstance(response, web.Response):
        return 0
    body = response.body
    if isinstance(body, bytes):
        return len(body)
    return response.content_length or 0


EXTRA_ROUTE: web.RequestKey[str] = web.RequestKey("extra_route", str)
REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id", str)

# Operations also counted per object (for the savings report).
PER_OBJECT = frozenset({OP_GET, OP_WEBSEED, OP_TORRENT, OP_BITTORRENT})

CLIENT_CLOSED = 499  # status recorded when the client went away mid-response (nginx's code)

LATENCY_BOUNDS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip

HOUR = 3600

# Requests recorded before they are added up, at most (Meter.record): their latencies are kept
# one by one until then, 8 bytes each.
FOLD_EVERY = 65536

# Requests recorded alike in one hour (bucket, its created_at if known, operation, status,
# object key or None), added up as they come: requests, bytes out, bytes in, and the
# latencies of requests counted one at a time (Meter.record).
_Alike = tuple[str, Created, str, int, "str | None"]
_Sums = list[Any]  # [requests, bytes out, bytes in, list of seconds]


SAMPLING_LEASE = "metering-samples"


def hour_of(t: float) -> int:
    """Start (epoch seconds) of the UTC hour holding t."""
    return int(t) - int(t) % HOUR


@dataclass(slots=True)
class Latency:
    """A cumulative latency histogram: counts per LATENCY_BOUNDS bucket (+Inf last) and sum."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS) + 1))
    total: float = 0.0


# A flush's counters; the store adds them to the tables (see UsageCounts).
Pending = UsageCounts


class Meter:
    """In-memory usage counters of one node, flushed to the metadata store."""

    def __init__(
        self,
        meta: UsageMetadata,
        *,
        flush_interval: float = 1.0,
        storage_sample_interval: float = 300.0,
        public: PublicTorrents | None = None,
        clock: Callable[[], float] = time.time,
        node_id: str = "local",
        local_swarms: bool = True,
    ) -> None:
        self.meta = meta
        self.node_id = node_id
        # A tracker registry in this process (not Redis): its counters start at zero with
        # the process and no other node sees them, so this node samples them whether or not
        # it holds the lease, and its first sample bills everything since the start.
        self.local_swarms = local_swarms
        # Storage and swarm counters are shared by every node (one database, one tracker
        # registry): only the holder of this lease samples them, so nothing counts twice.
        self.sampler = False
        # False on a worker that must not sample (it does not hold the tracker's registry).
        self.may_sample = True
        self.flush_interval = flush_interval
        self.storage_sample_interval = storage_sample_interval
        self.public = public
        self.clock = clock
        # Requests recorded and not yet added up (see record), all in the hour starting at
        # _hour (until _hour_end): read through the properties below, which add them up first.
        self._alike: dict[_Alike, _Sums] = {}
        self._recorded = 0
        self._hour = 0
        self._hour_end = -1.0
        self._pending = Pending(started=clock())
        # Cumulative since start, for /metrics.
        self._requests_total: dict[tuple[str, int], int] = {}
        self._bytes_total: dict[tuple[str, str], int] = {}
        self._latency: dict[str, Latency] = {}
        self.flushes = 0
        self.flush_failures = 0
        self.last_flush_seconds = 0.0
        # The last sample's stored bytes per bucket: (name, created_at) -> bytes.
        self._storage_sizes: dict[tuple[str, float], int] = {}
        self._storage_at: float | None = None
        self._swarm_seen: dict[bytes, tuple[int, int, int]] = {}
        # Swarm counters kept outside the tracker registry, in this process only (the
        # WebSocket tracker's browser swarms): (completed, uploaded, downloaded) per swarm id.
        # Every node samples its own, lease or not (no other node sees them), from zero at
        # the start of the process, with a baseline of their own.
        self.swarm_counters: list[Callable[[bytes], tuple[int, int, int]]] = []
        self._local_seen: dict[bytes, tuple[int, int, int]] = {}
        self._swarm_baseline = False
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # ---- hot path ----

    def record(
        self,
        bucket: str,
        operation: str,
        status: int,
        bytes_out: int,
        bytes_in: int,
        seconds: float,
        key: str | None = None,
        count: int = 1,
        created: Created = None,
    ) -> None:
        """One request at the edge (or `count` alike, `bytes_out` in all); key names the
        object whose bytes went out, if any; `created` is the bucket's created_at, which
        tells its usage from that of an earlier bucket of the name (None: the bucket that
        has the name when the counts are stored, see usage_queries.add_counts).

        Added at once to the sums of the requests alike in this hour (one dict lookup and
        three additions; its latency appended), and into the counters in one pass when they
        are read (a flush, /metrics, a worker's push), the hour changes or FOLD_EVERY requests
        have piled up: a pass per request, or a tuple per request kept for it, cost twice as
        much (most of metering's cost on a 4 KiB GET: bench/metering.py)."""
        now = self.clock()
        if not self._hour <= now < self._hour_end:
            self._start_hour(now)
        if created is None and bucket not in self._pending.first_unknown:
            self._pending.first_unknown[bucket] = now
        alike = (bucket, created, operation, status, key)
        sums = self._alike.get(alike)
        if sums is None:
            sums = self._alike[alike] = [0, 0, 0, []]
        sums[0] += count
        sums[1] += bytes_out
        sums[2] += bytes_in
        if count == 1:
            sums[3].append(seconds)
        else:
            self._add_latency(operation, seconds, count)
        self._recorded += 1
        if self._recorded >= FOLD_EVERY:
            self._fold()

    def _start_hour(self, now: float) -> None:
        """Add up the requests of the hour that ended (or of another hour: a clock set
        back), then count in the hour holding `now`."""
        if self._alike:
            self._fold()
        self._hour = hour_of(now)
        self._hour_end = float(self._hour + HOUR)

    def _add_latency(self, operation: str, seconds: float, count: int) -> None:
        lat = self._latency.get(operation)
        if lat is None:
            lat = self._latency[operation] = Latency()
        lat.counts[bisect.bisect_left(LATENCY_BOUNDS, seconds)] += count
        lat.total += seconds * count

    def _fold(self) -> None:
        """Add up the requests recorded since the last pass (all of one hour)."""
        alike, self._alike = self._alike, {}
        self._recorded = 0
        hour = self._hour
        usage, objects = self._pending.usage, self._pending.objects
        requests_total, bytes_total, latency = (
            self._requests_total,
            self._bytes_total,
            self._latency,
        )
        slot = functools.partial(bisect.bisect_left, LATENCY_BOUNDS)
        for (bucket, created, operation, status, key), (
            count,
            bytes_out,
            bytes_in,
            seconds,
        ) in alike.items():
            ukey = (hour, bucket, created, operation)
            c = usage.get(ukey)
            if c is None:
                c = usage[ukey] = [0, 0, 0]
            c[0] += count
            c[1] += bytes_out
            c[2] += bytes_in
            if key is not None:
                okey = (bucket, created, key, operation)
                o = objects.get(okey)
                if o is None:
                    o = objects[okey] = [0, 0]
                o[0] += count
                o[1] += bytes_out
            rkey = (operation, status)
            requests_total[rkey] = requests_total.get(rkey, 0) + count
            # A counter (/_metrics) only grows: bytes a reset dropped after they were counted
            # (negative records: Swarm.unsent, WebSeed.relay) come off the usage tables only,
            # as a decrease would read as a counter reset to Prometheus's rate().
            if bytes_out > 0:
                bkey = (operation, "out")
                bytes_total[bkey] = bytes_total.get(bkey, 0) + bytes_out
            if bytes_in:
                bkey = (operation, "in")
                bytes_total[bkey] = bytes_total.get(bkey, 0) + bytes_in
            if seconds:
                lat = latency.get(operation)
                if lat is None:
                    lat = latency[operation] = Latency()
                counts = lat.counts
                for i in map(slot, seconds):
                    counts[i] += 1
                lat.total += sum(seconds)

    @property
    def pending(self) -> Pending:
        """What the next flush writes, every request recorded so far included."""
        if self._alike:
            self._fold()
        return self._pending

    @property
    def requests_total(self) -> dict[tuple[str, int], int]:
        """Requests since start by (operation, status)."""
        if self._alike:
            self._fold()
        return self._requests_total

    @property
    def bytes_total(self) -> dict[tuple[str, str], int]:
        """Bytes since start by (operation, "in" or "out")."""
        if self._alike:
            self._fold()
        return self._bytes_total

    @property
    def latency(self) -> dict[str, Latency]:
        """The latency histogram since start of each operation."""
        if self._alike:
            self._fold()
        return self._latency

    def on_piece_sent(
        self, bucket: str, key: str, nbytes: int, blocks: int = 1, created: Created = None, /
    ) -> None:
        """The seeder sent `blocks` piece messages (`nbytes` in all, summed by the seeder
        per batch) of the bucket created at `created`: as many anonymous GetObjects in the
        BitTorrent channel. Negative bytes and no blocks: bytes counted before that a
        revocation's reset dropped (Swarm.unsent)."""
        self.record(bucket, OP_BITTORRENT, 200, nbytes, 0, 0.0, key, blocks, created)

    # ---- sampling ----

    def add_byte_hours(
        self, bucket: str, size: int, start: float, end: float, created: Created = None
    ) -> None:
        """Account `size` bytes stored from start to end, split at hour boundaries."""
        t = start
        while t < end:
            h = hour_of(t)
            stop = min(end, h + HOUR)
            k = (h, bucket, created)
            self.pending.storage[k] = self.pending.storage.get(k, 0.0) + size * (stop - t) / HOUR
            t = stop

    async def hold_sampling_lease(self) -> bool:
        """Take or keep the sampling lease; a node that just took it starts from a fresh
        baseline, so the interval the previous holder already billed is not billed again."""
        if not self.may_sample:
            return False
        now = self.clock()
        ttl = max(5.0, 5 * self.flush_interval)
        held = await self.meta.hold_lease(SAMPLING_LEASE, self.node_id, now, ttl)
        if held and not self.sampler:
            self._storage_at = None
            if not self.local_swarms:
                self._swarm_seen = {}
                self._swarm_baseline = True
        self.sampler = held
        return held

    async def sample_storage(self) -> None:
        """Read each bucket's stored bytes; bill the previous sample's sizes up to now, to
        the bucket they were of (its name may have another bucket now)."""
        sizes = await self.meta.bucket_sizes_created()
        now = self.clock()
        if self._storage_at is not None:
            for (bucket, created), size in self._storage_sizes.items():
                if size:
                    self.add_byte_hours(bucket, size, self._storage_at, now, created)
        self._storage_sizes = sizes
        self._storage_at = now

    async def sample_swarms(self, *, registry: bool = True) -> None:
        """Add each published torrent's swarm counters since the last sample: the tracker
        registry's (`registry`: only where they are this node's to bill, see _run) and this
        node's own browser swarms'."""
        public = self.public
        if public is None:
            return
        hour = hour_of(self.clock())
        if registry:
            await self._sample_registry(public, hour)
        if self.swarm_counters:
            self._sample_local(public, hour)

    async def _sample_registry(self, public: PublicTorrents, hour: int) -> None:
        baseline, self._swarm_baseline = self._swarm_baseline, False
        seen: dict[bytes, tuple[int, int, int]] = {}
        # What this process published, and what any process published to a shared
        # registry (Redis: another node's announces may name a torrent this node never
        # saw); a swarm id of another's is resolved (and published here) once.
        hashes = dict.fromkeys(public.by_swarm)
        hashes.update(dict.fromkeys(await public.registry.registered()))
        for info_hash in hashes:
            info = await public.resolve(info_hash)  # by_swarm first, else decided once
            if info is None:
                continue
            try:
                s = await public.registry.stats(info_hash)
            except KeyError:
                continue
            now = (s.completed, s.uploaded, s.downloaded)
            seen[info_hash] = now
            if not baseline:
                self._add_swarm_delta(hour, info_hash, info, now, self._swarm_seen)
        self._swarm_seen = seen

    def _sample_local(self, public: PublicTorrents, hour: int) -> None:
        # A browser swarm is admitted (so published) on this node before it has counts.
        seen: dict[bytes, tuple[int, int, int]] = {}
        for info_hash, info in list(public.by_swarm.items()):
            now = (0, 0, 0)
            for counters in self.swarm_counters:
                extra = counters(info_hash)
                now = (now[0] + extra[0], now[1] + extra[1], now[2] + extra[2])
            if any(now):
                seen[info_hash] = now
                self._add_swarm_delta(hour, info_hash, info, now, self._local_seen)
        self._local_seen = seen

    def _add_swarm_delta(
        self,
        hour: int,
        info_hash: bytes,
        info: TorrentInfo,
        now: tuple[int, int, int],
        seen_before: dict[bytes, tuple[int, int, int]],
    ) -> None:
        before = seen_before.get(info_hash, (0, 0, 0))
        # A re-registered swarm starts again from zero.
        delta = [n - b if n >= b else n for n, b in zip(now, before, strict=True)]
        if any(delta):
            k = (hour, info_hash.hex())
            entry = self.pending.swarms.setdefault(
                k, (info.bucket, info.bucket_created, info.key, [0, 0, 0])
            )
            for i in range(3):
                entry[3][i] += delta[i]

    # ---- flushing ----

    async def flush(self) -> None:
        """Write everything counted so far in one transaction; on failure keep it for later."""
        batch, self._pending = self.pending, Pending(started=self.clock())
        if not batch:
            return
        started = time.perf_counter()
        try:
            await self.meta.add_usage(batch)
        except Exception:
            self.flush_failures += 1
            batch.merge(self.pending)
            self._pending = batch
            raise
        self.flushes += 1
        self.last_flush_seconds = time.perf_counter() - started

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        next_storage = 0.0
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.flush_interval)
            try:
                held = await self.hold_sampling_lease()
                if held and (time.monotonic() >= next_storage or self._storage_at is None):
                    next_storage = time.monotonic() + self.storage_sample_interval
                    await self.sample_storage()
                if self.may_sample:
                    await self.sample_swarms(registry=held or self.local_swarms)
                await self.flush()
            except Exception:
                log.exception("metering flush failed; counts kept for the next attempt")

    async def close(self) -> None:
        """Stop the flusher, take final samples and flush; call after the listeners stop."""
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None
        with logged_failure(log, "the last usage samples"):
            if self.sampler:
                await self.sample_storage()
            if self.may_sample:
                await self.sample_swarms(registry=self.sampler or self.local_swarms)
        await self.flush()


# ---- the edge ----


def edge_recorder(
    meter: Meter,
) -> Callable[[web.Request, web.StreamResponse | None, int, float], None]:
    """The S3 edge's per-request hook: one `meter.record` per S3 request, after its response
    (error responses included; the S3 application calls it, see S3Application.on_finished)."""
    return functools.partial(_record, meter)


def billed_to_owner(status: int, *, by_owner: bool) -> bool:
    """Whether S3 bills a bucket's owner for a request answered with `status` (`by_owner`:
    the owner made it): not a 5XX answer, nor an AccessDenied (403) of a request from
    outside the owner's account (since 2024, "Billing for Amazon S3 error responses").
    Until 2026-12-08 both were in the owner's report, so anyone could inflate a private
    bucket's usage without bounds with requests it refused, and the web seed's refusals
    (503, the swarm has the piece) were billed as pieces."""
    return status < 500 and (status != 403 or by_owner)


def _record(
    meter: Meter,
    request: web.Request,
    response: web.StreamResponse | None,
    status: int,
    seconds: float,
) -> None:
    key: str | None = None
    try:
        s3req = request[S3_REQUEST]
    except KeyError:
        meter.record("", OP_UNKNOWN, status, body_bytes_sent(request, response, None),
                     request.content.total_bytes, seconds)  # fmt: skip
        return
    operation = s3req.endpoint.op
    bucket_row = s3req.bucket
    created: Created = None
    if bucket_row is not None:
        bucket, created = bucket_row.name, bucket_row.created_at
        by_owner = s3req.principal.canonical_id == bucket_row.owner_id
        if not billed_to_owner(status, by_owner=by_owner):
            created = NO_BUCKET  # counted under the name (admins see it), not the bucket's
    elif operation == "CreateBucket" and status < 300:
        bucket = s3req.target.bucket  # the bucket just created has the name
    else:
        # No such bucket (or refused before it was looked up): nobody's usage.
        bucket, created = "", NO_BUCKET
    if operation in PER_OBJECT and (status < 300 or status == CLIENT_CLOSED):
        key = s3req.target.key
    sent = s3req.body_sent
    bytes_out = sent if sent is not None else body_bytes_sent(request, response, None)
    meter.record(
        bucket, operation, status, bytes_out, request.content.total_bytes, seconds, key, 1, created
    )
