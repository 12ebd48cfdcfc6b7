"""MemoryRegistry behaviour in simulated time."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from s3torrent.tracker.protocol import AnnounceEvent, AnnounceRequest, PeerAddress
from s3torrent.tracker.registry import (
    MAX_PARKED_SWARMS,
    RATE_LIMITED,
    UNREGISTERED_TORRENT,
    AnnounceFailure,
    AnnounceResult,
    MemoryRegistry,
    RegistryLimits,
    TorrentRef,
    TrackerRegistry,
)

T = TypeVar("T")
HASH = b"h" * 20
REF = TorrentRef("bucket", "key", "v1")
ORIGIN = ("198.51.100.1", 6881)
NO_RATE_LIMIT = RegistryLimits(rate_burst=1e9, rate_per_ip=1e9)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def pid(n: int) -> bytes:
    return n.to_bytes(20, "big")


def req(
    n: int,
    *,
    left: int = 100,
    event: AnnounceEvent = AnnounceEvent.NONE,
    numwant: int = 50,
    info_hash: bytes = HASH,
    ip: str | None = None,
    uploaded: int = 0,
    downloaded: int = 0,
    key: bytes | None = None,
) -> AnnounceRequest:
    return AnnounceRequest(
        info_hash=info_hash,
        peer_id=pid(n),
        ip=ip or f"10.0.{n // 256}.{n % 256}",
        port=6881,
        uploaded=uploaded,
        downloaded=downloaded,
        left=left,
        event=event,
        numwant=numwant,
        compact=True,
        no_peer_id=False,
        key=key,
        trackerid=None,
    )


def make(limits: RegistryLimits = NO_RATE_LIMIT, ref: TorrentRef = REF) -> MemoryRegistry:
    registry = MemoryRegistry(limits, random.Random(1))
    run(registry.register(HASH, ref))
    return registry


def ok(registry: MemoryRegistry, request: AnnounceRequest, now: float = 0.0) -> AnnounceResult:
    result = run(registry.announce(request, now))
    assert isinstance(result, AnnounceResult), result
    return result


def ids(result: AnnounceResult) -> set[bytes | None]:
    return {peer.peer_id for peer in result.peers}


def test_memory_registry_satisfies_the_protocol() -> None:
    registry: TrackerRegistry = MemoryRegistry()
    assert run(registry.registered()) == []


def test_unregistered_torrent_is_refused() -> None:
    registry = make()
    result = run(registry.announce(req(1, info_hash=b"x" * 20), 0.0))
    assert result == AnnounceFailure(UNREGISTERED_TORRENT)


def test_peers_see_each_other_but_never_themselves() -> None:
    registry = make()
    ok(registry, req(1))
    result = ok(registry, req(2))
    assert ids(result) == {pid(1)}
    assert ids(ok(registry, req(1))) == {pid(2)}


def test_peers_expire_after_ttl_lazily_and_by_sweep() -> None:
    registry = make(RegistryLimits(peer_ttl=100, rate_burst=1e9, rate_per_ip=1e9))
    ok(registry, req(1), now=0)
    ok(registry, req(2), now=50)
    assert ids(ok(registry, req(3), now=99)) == {pid(1), pid(2)}
    assert ids(ok(registry, req(3), now=101)) == {pid(2)}
    assert run(registry.stats(HASH)).leechers == 2
    assert registry.sweep(now=500) == 2
    assert run(registry.scrape((HASH,), 500))[HASH].incomplete == 0


def test_expiry_follows_the_oldest_peer_as_announces_move_it() -> None:
    # Announces skip the expiry pass until the oldest peer's time is up; that bound must
    # follow re-announces, leaves and a swarm emptied and joined again.
    registry = make(RegistryLimits(peer_ttl=100, rate_burst=1e9, rate_per_ip=1e9))
    ok(registry, req(1), now=0)
    ok(registry, req(2), now=10)
    ok(registry, req(1), now=60)  # 1 is the newest now: 2 goes first, at 110
    assert ids(ok(registry, req(3), now=109)) == {pid(1), pid(2)}
    assert ids(ok(registry, req(3), now=111)) == {pid(1)}
    assert ids(ok(registry, req(3), now=161)) == set()  # 1 went at 160
    assert run(registry.stats(HASH)).leechers == 1  # 3 alone
    ok(registry, req(4), now=300)  # 3 went at 261; 4 joins an emptied swarm
    assert ids(ok(registry, req(5), now=350)) == {pid(4)}
    assert ids(ok(registry, req(5), now=401)) == set()
    assert run(registry.stats(HASH)).leechers == 1


def test_a_peer_that_turns_seed_and_back_is_listed_once_in_the_right_list() -> None:
    registry = make()
    ok(registry, req(1, left=10, key=b"k1"))
    ok(registry, req(1, left=0, key=b"k1"))
    ok(registry, req(1, left=0, ip="10.9.9.9", key=b"k1"))  # moved while seeding (its key)
    seeds = ok(registry, req(2, left=10)).peers  # a leecher gets the seed, where it is now
    assert [(p.peer_id, p.ip) for p in seeds] == [(pid(1), "10.9.9.9")]
    assert ids(ok(registry, req(3, left=0))) == {pid(2)}  # a seed gets only leechers
    ok(registry, req(1, left=5, ip="10.9.9.9", key=b"k1"))  # lost data: a leecher again
    stats = run(registry.stats(HASH))
    assert (stats.seeders, stats.leechers) == (1, 2)
    assert ids(ok(registry, req(3, left=0))) == {pid(1), pid(2)}
    listed = ok(registry, req(4, numwant=10)).peers
    assert sorted(p.peer_id for p in listed if p.peer_id) == [pid(1), pid(2), pid(3)]


def test_stopped_removes_the_peer() -> None:
    registry = make()
    ok(registry, req(1))
    stopped = ok(registry, req(1, event=AnnounceEvent.STOPPED))
    assert stopped.peers == ()
    assert stopped.incomplete == 0
    assert ids(ok(registry, req(2))) == set()


def test_completed_is_counted_once_per_peer() -> None:
    registry = make()
    ok(registry, req(1, left=100, event=AnnounceEvent.STARTED))
    ok(registry, req(1, left=0, event=AnnounceEvent.COMPLETED))
    ok(registry, req(1, left=0, event=AnnounceEvent.COMPLETED))
    ok(registry, req(1, left=0))
    ok(registry, req(2, left=0))  # a seed from the start never completed a download here
    ok(registry, req(3, left=50))
    ok(registry, req(3, left=0))  # no `completed` event, but it finished
    stats = run(registry.stats(HASH))
    assert stats.completed == 2
    assert (stats.seeders, stats.leechers) == (3, 0)
    assert run(registry.scrape((HASH,), 0))[HASH].downloaded == 2


def test_leechers_get_seeds_first_and_seeds_get_only_leechers() -> None:
    registry = make()
    for n in range(10):
        ok(registry, req(n, left=0))
    for n in range(10, 20):
        ok(registry, req(n, left=5))
    seeds = {pid(n) for n in range(10)}
    leechers = {pid(n) for n in range(10, 20)}
    assert ids(ok(registry, req(30, numwant=10))) == seeds
    mixed = ids(ok(registry, req(30, numwant=15)))
    assert seeds < mixed and len(mixed & leechers) == 5
    assert ids(ok(registry, req(40, left=0, numwant=50))) == leechers | {pid(30)}


def test_numwant_is_a_random_sample() -> None:
    registry = make()
    for n in range(100):
        ok(registry, req(n, left=0))
    first = ids(ok(registry, req(200, numwant=10)))
    second = ids(ok(registry, req(200, numwant=10)))
    assert len(first) == len(second) == 10
    assert first != second


def test_origin_is_always_included_and_counted_as_seed() -> None:
    registry = make(ref=TorrentRef("b", "k", "v", origin_seeders=(ORIGIN,)))
    origin = PeerAddress(*ORIGIN)
    alone = ok(registry, req(1))
    assert alone.peers == (origin,)
    assert alone.complete == 1
    for n in range(2, 60):
        ok(registry, req(n, left=0))
    full = ok(registry, req(1, numwant=10))
    assert origin in full.peers and len(full.peers) == 10
    assert ok(registry, req(70, left=0, numwant=0)).peers == (origin,)
    assert run(registry.scrape((HASH,), 0))[HASH].complete == 58 + 1 + 1  # seeds, 70, origin


def test_caps_keep_new_peers_out_but_still_answer_them() -> None:
    limits = RegistryLimits(max_peers_per_torrent=2, rate_burst=1e9, rate_per_ip=1e9)
    registry = make(limits)
    ok(registry, req(1))
    ok(registry, req(2))
    assert ids(ok(registry, req(3))) == {pid(1), pid(2)}
    assert run(registry.stats(HASH)).leechers == 2
    assert pid(3) not in ids(ok(registry, req(1)))


def test_total_cap_spans_torrents() -> None:
    registry = make(RegistryLimits(max_peers_total=1, rate_burst=1e9, rate_per_ip=1e9))
    other = b"o" * 20
    run(registry.register(other, REF))
    ok(registry, req(1))
    ok(registry, req(2, info_hash=other))
    assert run(registry.stats(other)).leechers == 0
    run(registry.deregister(HASH))
    ok(registry, req(2, info_hash=other))
    assert run(registry.stats(other)).leechers == 1


def test_rate_limit_per_ip_refills_over_time() -> None:
    registry = make(RegistryLimits(rate_per_ip=1.0, rate_burst=3.0))
    for _ in range(3):
        ok(registry, req(1, ip="10.9.9.9"), now=0)
    assert run(registry.announce(req(1, ip="10.9.9.9"), 0)) == AnnounceFailure(RATE_LIMITED)
    ok(registry, req(2, ip="10.9.9.8"), now=0)  # another address has its own budget
    ok(registry, req(1, ip="10.9.9.9"), now=1.0)
    # Leaving is never refused, or the peer would linger in lists until it expires.
    ok(registry, req(1, ip="10.9.9.9", event=AnnounceEvent.STOPPED), now=1.0)


def test_rate_limit_groups_ipv6_by_slash_64() -> None:
    registry = make(RegistryLimits(rate_per_ip=0.001, rate_burst=2.0))
    ok(registry, req(1, ip="2001:db8::1"))
    ok(registry, req(2, ip="2001:db8::2"))
    assert isinstance(run(registry.announce(req(3, ip="2001:db8::3"), 0)), AnnounceFailure)
    ok(registry, req(4, ip="2001:db8:1::1"))


def test_rate_limit_table_is_bounded() -> None:
    registry = make(RegistryLimits(rate_table_size=10))
    for n in range(100):
        ok(registry, req(n))
    assert len(registry._rate._buckets) == 10


def test_deregister_stops_serving_at_once_and_a_registration_back_keeps_the_peers() -> None:
    registry = make()
    ok(registry, req(1))
    run(registry.deregister(HASH))
    assert not run(registry.is_registered(HASH))
    assert run(registry.registered()) == []
    assert run(registry.scrape((HASH,), 0)) == {}
    assert run(registry.announce(req(2), 0)) == AnnounceFailure(UNREGISTERED_TORRENT)
    with pytest.raises(KeyError):
        run(registry.stats(HASH))
    # A revocation that republishes at once (a bucket's tag changed): until 2026-12-07 the
    # swarm came back empty, and its peers announce only every half hour.
    run(registry.register(HASH, REF))
    assert ids(ok(registry, req(2))) == {pid(1)}
    assert run(registry.stats(HASH)).leechers == 2
    # Peers kept so still expire as any do.
    assert ids(ok(registry, req(3), now=3000)) == {pid(1), pid(2)}
    ok(registry, req(2), now=3000)
    assert ids(ok(registry, req(3), now=3700)) == {pid(2)}


def test_parked_swarms_are_bounded() -> None:
    registry = make(RegistryLimits(max_peers_total=5, rate_burst=1e9, rate_per_ip=1e9))
    hashes = [(n + 1).to_bytes(20, "big") for n in range(MAX_PARKED_SWARMS + 2)]
    for n, info_hash in enumerate(hashes):
        run(registry.register(info_hash, REF))
        ok(registry, req(n, info_hash=info_hash))
        run(registry.deregister(info_hash))
    # At most max_peers_total peers are kept parked: the oldest swarms went first.
    assert registry._parked_peers <= 5
    assert len(registry._parked) <= 5
    run(registry.register(hashes[0], REF))
    assert ids(ok(registry, req(9999, info_hash=hashes[0]))) == set()
    run(registry.register(hashes[-1], REF))
    assert ids(ok(registry, req(9999, info_hash=hashes[-1]))) == {pid(len(hashes) - 1)}


def test_register_again_keeps_swarm_and_updates_origins() -> None:
    registry = make()
    ok(registry, req(1))
    run(registry.register(HASH, TorrentRef("b", "k", "v", origin_seeders=(ORIGIN,))))
    assert ids(ok(registry, req(2))) == {pid(1), None}


def test_transfer_sums_use_deltas_and_survive_counter_restarts() -> None:
    registry = make()
    started = AnnounceEvent.STARTED
    ok(registry, req(1, uploaded=100, downloaded=10, event=started))
    ok(registry, req(1, uploaded=150, downloaded=30))
    ok(registry, req(1, uploaded=20, downloaded=5))  # the client restarted its counters
    ok(registry, req(2, uploaded=1, downloaded=1, event=started))
    ok(registry, req(2, uploaded=4, downloaded=2, event=AnnounceEvent.STOPPED))
    # First seen without `started` (this registry is newer than its counters): a baseline.
    ok(registry, req(3, uploaded=500, downloaded=700))
    ok(registry, req(3, uploaded=501, downloaded=710))
    stats = run(registry.stats(HASH))
    assert (stats.uploaded, stats.downloaded) == (150 + 20 + 4 + 1, 30 + 5 + 2 + 10)


def test_moved_peer_needs_its_key() -> None:
    registry = make()
    ok(registry, req(1, ip="10.1.1.1", key=b"secret"))
    hijack = run(registry.announce(req(1, ip="10.6.6.6", key=b"guess"), 0))
    assert isinstance(hijack, AnnounceFailure)
    ok(registry, req(1, ip="10.2.2.2", key=b"secret"))
    assert {p.ip for p in ok(registry, req(2)).peers} == {"10.2.2.2"}


def test_ipv4_and_ipv6_peers_share_a_swarm() -> None:
    registry = make()
    ok(registry, req(1, ip="2001:db8::7"))
    ok(registry, req(2, ip="192.0.2.7"))
    assert {p.ip for p in ok(registry, req(3)).peers} == {"2001:db8::7", "192.0.2.7"}


def test_same_address_with_new_peer_id_is_not_returned_to_itself() -> None:
    registry = make()
    ok(registry, req(1, ip="10.5.5.5"))
    assert ids(ok(registry, req(2, ip="10.5.5.5"))) == set()


def test_every_member_is_sampled_about_equally_often() -> None:
    registry = make()
    for n in range(100):
        ok(registry, req(n, left=0))
    counts = dict.fromkeys((pid(n) for n in range(100)), 0)
    for _ in range(2000):
        for peer_id in ids(ok(registry, req(500, numwant=10))):
            assert peer_id is not None
            counts[peer_id] += 1
    # 2000 draws of 10 out of 100: 200 each on average; a stuck or skewed order shows here.
    assert min(counts.values()) > 120 and max(counts.values()) < 280


def test_peer_lists_track_churn_exactly() -> None:
    registry = make()
    rng = random.Random(7)
    live: dict[int, int] = {}  # peer -> left
    for step in range(3000):
        n = rng.randrange(60)
        roll = rng.random()
        if roll < 0.2:
            ok(registry, req(n, event=AnnounceEvent.STOPPED), now=step)
            live.pop(n, None)
        else:
            left = 0 if roll < 0.5 else 10
            ok(registry, req(n, left=left), now=step)
            live[n] = left
    stats = run(registry.stats(HASH))
    assert (stats.seeders, stats.leechers) == (
        sum(1 for left in live.values() if left == 0),
        sum(1 for left in live.values() if left > 0),
    )
    # A seed is answered with every leecher; a newcomer leecher with every seed and leecher.
    everyone = ok(registry, req(999, numwant=200), now=3000)
    assert len(everyone.peers) == len(ids(everyone)) == len(live)
    assert ids(everyone) == {pid(n) for n in live}
    leechers = ids(ok(registry, req(998, left=0, numwant=200), now=3000))
    assert leechers == {pid(n) for n, left in live.items() if left > 0} | {pid(999)}


def test_answers_carry_compact_entries_packed_once() -> None:
    registry = make(ref=TorrentRef("b", "k", "v", origin_seeders=(ORIGIN, ("2001:db8::9", 7))))
    first = ok(registry, req(1, ip="192.0.2.1"))
    second = ok(registry, req(2, ip="192.0.2.2"))
    peer = next(p for p in second.peers if p.peer_id == pid(1))
    assert peer.compact == bytes([192, 0, 2, 1]) + (6881).to_bytes(2, "big")
    origins = [p for p in second.peers if p.peer_id is None]
    assert sorted(len(p.compact) for p in origins) == [6, 18]
    # The same objects on every answer: nothing is rebuilt per announce.
    assert {id(p) for p in first.peers if p.peer_id is None} == {id(p) for p in origins}
    again = next(p for p in ok(registry, req(3)).peers if p.peer_id == pid(1))
    assert again is peer


def test_origin_that_announces_is_listed_once() -> None:
    registry = make(ref=TorrentRef("b", "k", "v", origin_seeders=(ORIGIN,)))
    ok(registry, req(1, ip=ORIGIN[0], left=0))  # the origin seeder announcing itself
    answer = ok(registry, req(2))
    assert [(p.ip, p.port) for p in answer.peers] == [ORIGIN]
