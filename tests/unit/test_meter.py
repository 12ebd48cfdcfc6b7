"""The meter's counters, flush and sampling, and the report math, without a server."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from s3torrent.events import EventBus
from s3torrent.metering import usage as u
from s3torrent.metering.meter import (
    FOLD_EVERY,
    OP_BITTORRENT,
    OP_STORAGE,
    Meter,
    Pending,
    body_bytes_sent,
)
from s3torrent.store import metadata as md
from s3torrent.store.database import Database
from s3torrent.store.metastore import SqlMetadataStore
from s3torrent.tracker.registry import SwarmStats

H = 1_700_000_000 - 1_700_000_000 % 3600  # an hour boundary
D = 1_700_000_000 - 1_700_000_000 % 86400  # a day boundary (UTC)


@pytest.fixture
def meta(db: Database) -> SqlMetadataStore:
    """The metadata store over db (closing db closes it)."""
    return SqlMetadataStore(db, EventBus())


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def rows(db: Database, table: sa.Table) -> list[tuple[Any, ...]]:
    """The table's rows, without the column that says which bucket of a name they are of
    (no bucket exists here: 0; see tests/unit/test_audit_usage_generation.py)."""
    columns = [c for c in table.c if c.name != "bucket_created"]
    return db.read_sync(lambda c: [tuple(r) for r in c.execute(sa.select(*columns))])


def test_requests_aggregate_per_hour_bucket_and_operation(
    db: Database, meta: SqlMetadataStore
) -> None:
    clock = Clock(H + 10)
    m = Meter(meta, clock=clock)
    m.record("b", "GetObject", 200, 100, 0, 0.001, "k")
    m.record("b", "GetObject", 206, 50, 0, 0.002, "k")
    m.record("b", "PutObject", 200, 0, 7, 0.003)
    clock.t = H + 3600  # next hour
    m.record("b", "GetObject", 200, 1, 0, 0.001, "k")
    assert m.pending.usage == {
        (H, "b", None, "GetObject"): [2, 150, 0],
        (H, "b", None, "PutObject"): [1, 0, 7],
        (H + 3600, "b", None, "GetObject"): [1, 1, 0],
    }
    assert m.pending.objects == {("b", None, "k", "GetObject"): [3, 151]}
    assert m.requests_total == {("GetObject", 200): 2, ("GetObject", 206): 1, ("PutObject", 200): 1}
    assert m.bytes_total == {("GetObject", "out"): 151, ("PutObject", "in"): 7}
    assert sum(m.latency["GetObject"].counts) == 3


def test_requests_are_added_up_alike_however_they_interleave_with_reads(
    db: Database, meta: SqlMetadataStore
) -> None:
    """Recorded requests are added up when read (or every FOLD_EVERY): alternating
    buckets, operations and hours, read midway or not, count the same."""
    clock = Clock(H + 3590)
    m = Meter(meta, clock=clock)
    ops = ("GetObject", "PutObject", "GetObject", OP_BITTORRENT)
    for i in range(40):
        clock.t = H + 3590 + i / 2  # crosses into the next hour at i == 20
        m.record(f"b{i % 3}", ops[i % 4], 200, i, 1, 0.001 * (i % 7), "k" if i % 2 else None)
        if i == 13:
            assert m.requests_total[("GetObject", 200)] == 7  # read midway: folds
    expected: dict[tuple[int, str, None, str], list[int]] = {}
    for i in range(40):
        hour = H if i < 20 else H + 3600
        c = expected.setdefault((hour, f"b{i % 3}", None, ops[i % 4]), [0, 0, 0])
        c[0], c[1], c[2] = c[0] + 1, c[1] + i, c[2] + 1
    assert m.pending.usage == expected
    assert m.requests_total == {
        ("GetObject", 200): 20,
        ("PutObject", 200): 10,
        (OP_BITTORRENT, 200): 10,
    }
    assert m.bytes_total[("GetObject", "in")] == 20
    assert sum(m.latency["PutObject"].counts) == 10
    assert m.latency["GetObject"].total == pytest.approx(
        sum(0.001 * (i % 7) for i in range(0, 40, 2))
    )


def test_recorded_requests_are_bounded_without_a_read(db: Database, meta: SqlMetadataStore) -> None:
    m = Meter(meta, clock=Clock(H))
    for _ in range(FOLD_EVERY * 3 + 5):
        m.record("b", "GetObject", 200, 1, 0, 0.0, "k")
        assert m._recorded < FOLD_EVERY
    assert m.pending.usage == {
        (H, "b", None, "GetObject"): [FOLD_EVERY * 3 + 5, FOLD_EVERY * 3 + 5, 0]
    }


def test_piece_sent_is_an_anonymous_get_in_the_bittorrent_channel(
    db: Database, meta: SqlMetadataStore
) -> None:
    m = Meter(meta, clock=Clock(H))
    m.on_piece_sent("b", "k", 16384)
    m.on_piece_sent("b", "k", 100)
    assert m.pending.usage == {(H, "b", None, OP_BITTORRENT): [2, 16484, 0]}
    assert m.pending.objects == {("b", None, "k", OP_BITTORRENT): [2, 16484]}


def test_flush_adds_to_existing_rows_in_one_transaction(
    db: Database, meta: SqlMetadataStore
) -> None:
    m = Meter(meta, clock=Clock(H + 5))

    async def go() -> None:
        m.record("b", "GetObject", 200, 10, 0, 0.0, "k")
        await m.flush()
        m.record("b", "GetObject", 200, 5, 0, 0.0, "k")
        m.on_piece_sent("b", "k", 3)
        await m.flush()
        await m.flush()  # nothing pending: no write

    asyncio.run(go())
    assert sorted(rows(db, md.usage_hourly)) == [
        (H, "b", "GetObject", 2, 15, 0, 0.0),
        (H, "b", OP_BITTORRENT, 1, 3, 0, 0.0),
    ]
    assert sorted(rows(db, md.usage_objects)) == [
        ("b", b"k", "GetObject", 2, 15),
        ("b", b"k", OP_BITTORRENT, 1, 3),
    ]
    assert m.flushes == 2


def test_a_failed_flush_keeps_its_counts_for_the_next(db: Database, meta: SqlMetadataStore) -> None:
    m = Meter(meta, clock=Clock(H))
    real_write = db.write
    calls = {"n": 0}

    async def failing_write(fn: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("disk full")
        return await real_write(fn)

    db.write = failing_write  # type: ignore[method-assign]

    async def go() -> None:
        m.record("b", "GetObject", 200, 10, 0, 0.0)
        with pytest.raises(RuntimeError):
            await m.flush()
        m.record("b", "GetObject", 200, 1, 0, 0.0)
        await m.flush()

    asyncio.run(go())
    assert rows(db, md.usage_hourly) == [(H, "b", "GetObject", 2, 11, 0, 0.0)]
    assert m.flush_failures == 1


def test_byte_hours_split_at_hour_boundaries(db: Database, meta: SqlMetadataStore) -> None:
    m = Meter(meta)
    m.add_byte_hours("b", 3600, H + 1800, H + 3600 + 900)
    assert m.pending.storage == {(H, "b", None): 1800.0, (H + 3600, "b", None): 900.0}


def test_storage_samples_bill_the_previous_size_until_now(
    db: Database, meta: SqlMetadataStore
) -> None:
    clock = Clock(H)
    m = Meter(meta, clock=clock)
    db.write_sync(
        lambda c: c.execute(
            md.objects.insert(),
            [md.ObjectVersion("b", f"k{i}", f"v{i}", 1000, '"e"', 0.0, "o").to_row()
             for i in range(3)],
        )
    )  # fmt: skip

    async def go() -> None:
        await m.sample_storage()  # first sample: sizes only
        clock.t = H + 7200
        await m.sample_storage()
        await m.flush()

    asyncio.run(go())
    assert sorted(rows(db, md.usage_hourly)) == [
        (H, "b", OP_STORAGE, 0, 0, 0, 3000.0),
        (H + 3600, "b", OP_STORAGE, 0, 0, 0, 3000.0),
    ]


@dataclass
class FakeInfo:
    bucket: str
    key: str
    bucket_created: float | None = None


@dataclass
class FakeRegistry:
    stats_by_hash: dict[bytes, SwarmStats] = field(default_factory=dict)

    async def stats(self, info_hash: bytes) -> SwarmStats:
        return self.stats_by_hash[info_hash]

    async def registered(self) -> list[bytes]:
        return list(self.stats_by_hash)


@dataclass
class FakePublic:
    registry: FakeRegistry
    by_swarm: dict[bytes, FakeInfo]
    # What resolve() publishes (another node's torrent in a shared registry).
    resolvable: dict[bytes, FakeInfo] = field(default_factory=dict)

    async def resolve(self, swarm_id: bytes) -> FakeInfo | None:
        info = self.by_swarm.get(swarm_id) or self.resolvable.get(swarm_id)
        if info is not None:
            self.by_swarm[swarm_id] = info
        return info


def test_swarm_deltas_are_sampled_and_survive_a_reset(db: Database, meta: SqlMetadataStore) -> None:
    ih = b"\x01" * 20
    reg = FakeRegistry({ih: SwarmStats(1, 0, 0, 10, 100)})
    public = FakePublic(reg, {ih: FakeInfo("b", "k"), b"\x02" * 20: FakeInfo("b", "gone")})
    m = Meter(meta, public=public, clock=Clock(H))  # type: ignore[arg-type]

    async def go() -> None:
        await m.sample_swarms()
        reg.stats_by_hash[ih] = SwarmStats(3, 0, 0, 15, 250)
        await m.sample_swarms()
        reg.stats_by_hash[ih] = SwarmStats(1, 0, 0, 0, 40)  # deregistered and back: from zero
        await m.sample_swarms()
        await m.flush()

    asyncio.run(go())
    assert rows(db, md.usage_swarms) == [(H, ih.hex(), "b", b"k", 4, 15, 290)]


def test_swarms_another_process_published_are_resolved_and_sampled(
    db: Database, meta: SqlMetadataStore
) -> None:
    mine, theirs, revoked = b"\x01" * 20, b"\x03" * 20, b"\x04" * 20
    reg = FakeRegistry(
        {
            mine: SwarmStats(1, 0, 0, 10, 100),
            theirs: SwarmStats(2, 0, 0, 20, 200),
            revoked: SwarmStats(5, 0, 0, 50, 500),  # not publishable any more: skipped
        }
    )
    public = FakePublic(reg, {mine: FakeInfo("b", "k")}, {theirs: FakeInfo("b", "other")})
    m = Meter(meta, public=public, clock=Clock(H))  # type: ignore[arg-type]

    async def go() -> None:
        await m.sample_swarms()
        await m.flush()

    asyncio.run(go())
    assert sorted(rows(db, md.usage_swarms)) == [
        (H, mine.hex(), "b", b"k", 1, 10, 100),
        (H, theirs.hex(), "b", b"other", 2, 20, 200),
    ]
    assert theirs in public.by_swarm and revoked not in public.by_swarm


def test_pending_merge_adds_everything() -> None:
    a, b = Pending(), Pending()
    a.usage[(H, "b", None, "GetObject")] = [1, 2, 3]
    b.usage[(H, "b", None, "GetObject")] = [1, 1, 1]
    b.objects[("b", None, "k", "GetObject")] = [1, 5]
    b.storage[(H, "b", None)] = 2.5
    b.swarms[(H, "ab")] = ("b", None, "k", [1, 2, 3])
    a.merge(b)
    assert a.usage == {(H, "b", None, "GetObject"): [2, 3, 4]}
    assert a.objects == {("b", None, "k", "GetObject"): [1, 5]}
    assert a.storage == {(H, "b", None): 2.5}
    assert a.swarms == {(H, "ab"): ("b", None, "k", [1, 2, 3])}


# ---- report math ----


def test_request_tiers_follow_s3() -> None:
    for op in ("PutObject", "CopyObject", "UploadPart", "ListObjectsV2", "ListBuckets"):
        assert u.request_tier(op) == "Requests-Tier1", op
    for op in ("GetObject", "HeadObject", "GetObjectTorrent", OP_BITTORRENT, "DeleteObject"):
        assert u.request_tier(op) == "Requests-Tier2", op


def test_usage_records_by_day_sum_hours(db: Database, meta: SqlMetadataStore) -> None:
    def seed(c: Any) -> None:
        c.execute(
            md.usage_hourly.insert(),
            [
                {"hour": D + i * 3600, "bucket": "b", "operation": "GetObject", "requests": 1,
                 "bytes_out": 10, "bytes_in": 0, "byte_hours": 0.0}
                for i in range(30)
            ],
        )  # fmt: skip

    db.write_sync(seed)
    recs = asyncio.run(u.load_usage(meta, u.UsageQuery(by="day")))
    assert [(r.start, r.end, r.usage_type, r.value) for r in recs] == [
        (D, D + 86400, "Requests-Tier2", 24),
        (D, D + 86400, "DataTransfer-Out-Bytes", 240),
        (D + 86400, D + 2 * 86400, "Requests-Tier2", 6),
        (D + 86400, D + 2 * 86400, "DataTransfer-Out-Bytes", 60),
    ]
    q = u.UsageQuery(start=D + 3600, end=D + 3 * 3600, by="hour")
    recs = asyncio.run(u.load_usage(meta, q))
    assert [(r.start, r.end, r.value) for r in recs if r.usage_type == "Requests-Tier2"] == [
        (D + 3600, D + 7200, 1),
        (D + 7200, D + 10800, 1),
    ]


def test_bad_queries_are_refused() -> None:
    with pytest.raises(u.ReportError):
        u.UsageQuery(start=10, end=10)
    with pytest.raises(u.ReportError):
        u.UsageQuery(by="week")  # type: ignore[arg-type]
    with pytest.raises(u.ReportError):
        u.parse_time("last tuesday")
    assert u.parse_time("2024-05-01") == 1714521600
    assert u.parse_time("2024-05-01T01:00:00+01:00") == 1714521600


def test_savings_offload_is_what_the_swarm_got_beyond_origin_bytes() -> None:
    s = u.ObjectSavings("b", "k", 1, 100, 1, 2, 200, 3, 2**30 + 300, 0, 0.09)
    assert s.origin_bytes == 300
    assert s.offloaded_bytes == 2**30
    assert s.offload_ratio == 2**30 / (2**30 + 300)
    assert s.cost_avoided == pytest.approx(0.09)
    none = u.ObjectSavings("b", "k", 1, 100, 0, 0, 0, 0, 50, 0, 0.09)
    assert none.offloaded_bytes == 0 and none.offload_ratio == 0.0


def test_number_and_human_formats() -> None:
    assert u.number(5) == "5"
    assert u.number(2.5) == "2.5"
    assert u.number(1 / 3) == "0.333333"
    assert u.human_bytes(1023) == "1023 B"
    assert u.human_bytes(1536) == "1.50 KiB"
    assert u.human_value("Requests-Tier1", 12345) == "12,345"


def test_only_one_node_samples_shared_counters_and_a_takeover_starts_from_a_baseline(
    db: Database, meta: SqlMetadataStore
) -> None:
    """Storage and swarm counters are shared by every node: one lease holder samples them."""
    clock = Clock(1_000.0)
    a = Meter(meta, clock=clock, node_id="node-a", flush_interval=1.0)
    b = Meter(meta, clock=clock, node_id="node-b", flush_interval=1.0)

    async def rounds() -> list[tuple[bool, bool]]:
        out = [(await a.hold_sampling_lease(), await b.hold_sampling_lease())]
        clock.t += 2.0  # a renews within its lease: b still waits
        out.append((await a.hold_sampling_lease(), await b.hold_sampling_lease()))
        clock.t += 60.0  # a stopped renewing (died): b takes over
        out.append((await b.hold_sampling_lease(), await a.hold_sampling_lease()))
        return out

    assert asyncio.run(rounds()) == [(True, False), (True, False), (True, False)]
    assert b.sampler and not a.sampler
    # The new holder starts from a baseline: it does not bill time it never saw.
    assert b._storage_at is None


def test_a_local_registry_bills_its_first_sample_and_a_shared_one_starts_from_a_baseline(
    db: Database, meta: SqlMetadataStore
) -> None:
    """Counters of a registry in this process start at zero with it: announces made before
    the first sample are billed. A shared (Redis) registry's taker starts from a baseline,
    since the previous holder billed what it saw."""
    ih = b"\x03" * 20
    billed: dict[bool, list[Any]] = {}
    for local in (True, False):
        reg = FakeRegistry({ih: SwarmStats(2, 0, 0, 7, 100)})
        public = FakePublic(reg, {ih: FakeInfo("b", f"local-{local}")})
        # The second meter starts after the first one's lease ran out: it takes the lease.
        clock = Clock(H if local else H + 7200)
        m = Meter(meta, public=public, clock=clock, node_id=f"n{local}", local_swarms=local)  # type: ignore[arg-type]

        async def go(m: Meter = m, reg: FakeRegistry = reg) -> None:
            assert await m.hold_sampling_lease()
            await m.sample_swarms()
            reg.stats_by_hash[ih] = SwarmStats(3, 0, 0, 7, 150)
            await m.sample_swarms()
            await m.flush()

        asyncio.run(go())
        key = f"local-{local}".encode()
        billed[local] = [r[4:] for r in rows(db, md.usage_swarms) if r[3] == key]
    assert billed[True] == [(3, 7, 150)]
    assert billed[False] == [(1, 0, 50)]


@pytest.mark.parametrize(
    ("method", "response", "sent", "expected"),
    [
        ("GET", web.Response(body=b"x" * 4096), None, 4096),
        ("GET", web.Response(text="caf\u00e9"), None, 5),  # bytes, not characters
        ("GET", web.Response(status=204), None, 0),
        ("HEAD", web.Response(body=b"x" * 4096), None, 0),
        ("GET", web.StreamResponse(), None, 0),  # streamed: the handler counts (sent)
        ("GET", web.StreamResponse(), 123, 123),
        ("GET", None, None, 0),
    ],
)
def test_body_bytes_are_what_the_answer_carried(
    method: str, response: web.StreamResponse | None, sent: int | None, expected: int
) -> None:
    """Measured from the body (aiohttp's content_length parses its header again on every
    read), and a Content-Length header a handler set for a body it did not send (a HEAD's)
    never counts."""
    request = make_mocked_request(method, "/b/k")
    assert body_bytes_sent(request, response, sent) == expected
    if isinstance(response, web.Response) and method == "GET":
        assert body_bytes_sent(request, response, sent) == (response.content_length or 0)


def test_hours_are_folded_apart_when_the_clock_moves_back_and_forth(
    db: Database, meta: SqlMetadataStore
) -> None:
    """Requests are summed per hour as they come: one recorded after the clock went back
    an hour is billed to that hour, not to the one being summed."""
    clock = Clock(H + 10)
    m = Meter(meta, clock=clock)
    for t in (H + 10, H + 3600 + 5, H + 20, H + 3600 + 6, H + 3599.999):
        clock.t = t
        m.record("b", "GetObject", 200, 1, 0, 0.002, "k")
    assert m.pending.usage == {
        (H, "b", None, "GetObject"): [3, 3, 0],
        (H + 3600, "b", None, "GetObject"): [2, 2, 0],
    }
    assert m.pending.objects == {("b", None, "k", "GetObject"): [5, 5]}
    assert sum(m.latency["GetObject"].counts) == 5
