"""Savings over time: the hourly counters summed per period and bucket."""

from __future__ import annotations

from s3torrent.metering.meter import OP_BITTORRENT, OP_GET, OP_TORRENT, OP_WEBSEED
from s3torrent.metering.savings_history import savings_history, savings_history_json
from s3torrent.metering.usage import UsageQuery
from s3torrent.store.usage_rows import HourlyUsage, SwarmHour

H = 3600
DAY0 = 1_767_225_600  # 2026-01-01T00:00Z


def hourly(hour: int, bucket: str, op: str, out: int) -> HourlyUsage:
    return HourlyUsage(hour, bucket, op, 1, out, 0, 0.0)


def test_hours_sum_by_channel_and_offload_is_what_peers_delivered_beyond_the_origin() -> None:
    hours = [
        hourly(DAY0, "pub", OP_WEBSEED, 100),
        hourly(DAY0, "pub", OP_BITTORRENT, 50),
        hourly(DAY0, "pub", OP_GET, 1000),  # plain GETs: beside, never subtracted
        hourly(DAY0, "pub", OP_TORRENT, 7),  # the .torrent file is not object bytes
        hourly(DAY0 + H, "pub", OP_BITTORRENT, 30),
    ]
    swarms = [SwarmHour(DAY0, "pub", 2, 400, 0), SwarmHour(DAY0 + H, "pub", 0, 10, 0)]
    first, second = savings_history(hours, swarms, UsageQuery(by="hour"))
    assert (first.start, first.end) == (DAY0, DAY0 + H)
    assert (first.rest_bytes, first.web_seed_bytes, first.seeder_bytes) == (1000, 100, 50)
    assert (first.origin_bytes, first.swarm_downloaded, first.offloaded_bytes) == (150, 400, 250)
    # Peers reported less than the origin sent: no negative offload.
    assert (second.origin_bytes, second.offloaded_bytes) == (30, 0)


def test_days_merge_their_hours_and_buckets_stay_apart() -> None:
    hours = [hourly(DAY0 + 2 * H, "a", OP_WEBSEED, 10), hourly(DAY0 + 5 * H, "a", OP_WEBSEED, 5)]
    swarms = [SwarmHour(DAY0 + 3 * H, "a", 1, 100, 0), SwarmHour(DAY0 + 3 * H, "b", 1, 70, 0)]
    items = savings_history(hours, swarms, UsageQuery(by="day"))
    assert [(p.bucket, p.start, p.origin_bytes, p.offloaded_bytes) for p in items] == [
        ("a", DAY0, 15, 85),
        ("b", DAY0, 0, 70),
    ]
    doc = savings_history_json(items, UsageQuery(by="day"), 0.09)
    assert doc["periods"][0]["start"] == "2026-01-01T00:00:00Z"
    assert (doc["total_origin_bytes"], doc["total_offloaded_bytes"]) == (15, 155)


def test_a_bucket_with_only_plain_gets_has_no_savings_entry() -> None:
    assert savings_history([hourly(DAY0, "web", OP_GET, 5000)], [], UsageQuery(by="hour")) == []
