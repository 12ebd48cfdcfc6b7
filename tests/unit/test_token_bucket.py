"""The byte token bucket the offload policy's carry cap and the web seed's rescue share."""

from __future__ import annotations

import math

from s3torrent.peer.token_bucket import TokenBucket


def test_starts_full_and_takes_what_it_holds() -> None:
    bucket = TokenBucket(rate=100.0, burst=1000.0, now=0.0)
    assert bucket.delay(600, 0.0) == 0.0
    assert bucket.level(0.0) == 400.0
    # 200 more bytes than it holds: two seconds at 100 B/s, and nothing is taken.
    assert bucket.delay(600, 0.0) == 2.0
    assert bucket.level(0.0) == 400.0


def test_refills_at_its_rate_up_to_the_burst() -> None:
    bucket = TokenBucket(rate=100.0, burst=1000.0, now=0.0)
    bucket.charge(1000, 0.0)
    assert bucket.level(3.0) == 300.0
    assert bucket.level(100.0) == 1000.0


def test_charging_past_empty_goes_negative_and_recovers() -> None:
    bucket = TokenBucket(rate=10.0, burst=100.0, now=0.0)
    bucket.charge(150, 0.0)
    assert bucket.level(0.0) == -50.0
    assert bucket.delay(50, 0.0) == 10.0
    assert bucket.delay(50, 10.0) == 0.0


def test_a_clock_going_backwards_neither_refills_nor_drains() -> None:
    bucket = TokenBucket(rate=100.0, burst=1000.0, now=10.0)
    bucket.charge(500, 10.0)
    assert bucket.level(5.0) == 500.0
    assert bucket.level(11.0) == 600.0


def test_zero_rate_never_refills() -> None:
    bucket = TokenBucket(rate=0.0, burst=100.0, now=0.0)
    bucket.charge(100, 0.0)
    assert bucket.level(1e9) == 0.0
    assert math.isinf(bucket.delay(1, 1e9))
