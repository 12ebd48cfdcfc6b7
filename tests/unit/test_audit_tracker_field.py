"""The tracker as clients meet it in the field: families of peers (BEP 7, BEP 15) and UDP
connection ids across processes."""

from __future__ import annotations

import asyncio
import random
import struct
from collections.abc import Coroutine
from typing import Any, TypeVar
from urllib.parse import quote_from_bytes

from fastbencode import bdecode  # type: ignore[attr-defined]

from s3torrent.tracker.protocol import AnnounceEvent, AnnounceRequest
from s3torrent.tracker.registry import MemoryRegistry, RegistryLimits, TorrentRef, TrackerRegistry
from s3torrent.tracker.service import TrackerService, TrackerSettings
from s3torrent.tracker.udp_protocol import UDP_PROTOCOL_ID, derive_udp_secret

T = TypeVar("T")
HASH = bytes(range(100, 120))
SECRET = b"k" * 32


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def _peer_id(n: int) -> bytes:
    return b"-FT0001-" + n.to_bytes(12, "big")


async def mostly_ipv4_swarm(registry: TrackerRegistry, v4: int = 200, v6: int = 3) -> None:
    """A swarm of `v4` IPv4 seeds and `v6` IPv6 seeds, as most public swarms are."""
    await registry.register(HASH, TorrentRef("b", "k", "v"))
    for n in range(v4 + v6):
        ip = f"10.0.{n // 250}.{n % 250 + 1}" if n < v4 else f"2001:db8::{n:x}"
        req = AnnounceRequest(
            HASH, _peer_id(n), ip, 6881, 0, 0, 0, AnnounceEvent.STARTED, 0, True, True,
            b"key" + bytes([n % 256]), None,
        )  # fmt: skip
        result = await registry.announce(req, 0.0)
        assert not hasattr(result, "reason"), result


def _memory() -> MemoryRegistry:
    return MemoryRegistry(RegistryLimits(rate_burst=1e9, rate_per_ip=1e9), random.Random(5))


async def udp_announce(
    service: TrackerService, addr: tuple[str, int], numwant: int, now: float = 0.0
) -> bytes:
    connect = await service.handle_udp(struct.pack(">QiI", UDP_PROTOCOL_ID, 0, 1), addr, now)
    assert connect is not None
    connection_id = struct.unpack(">iIQ", connect)[2]
    packet = struct.pack(
        ">QiI20s20sqqqiIIiH",
        connection_id, 1, 2, HASH, _peer_id(9999), 0, 100, 0, 2, 0, 7, numwant, 6881,
    )  # fmt: skip
    answer = await service.handle_udp(packet, addr, now)
    assert answer is not None and struct.unpack(">i", answer[:4])[0] == 1, answer
    return answer[20:]


def test_ipv6_udp_announce_in_a_mostly_ipv4_swarm_gets_the_ipv6_peers() -> None:
    """BEP 15: an IPv6 announce is answered with 18-byte IPv6 peers. The sample was taken
    from both families and the IPv4 ones dropped: in a swarm of 200 IPv4 and 3 IPv6 seeds,
    numwant 10 got about 0.15 IPv6 peers on average."""

    async def scenario() -> tuple[bytes, bytes]:
        registry = _memory()
        await mostly_ipv4_swarm(registry)
        service = TrackerService(registry, TrackerSettings(udp_secret=SECRET))
        six = await udp_announce(service, ("2001:db8:ffff::1", 5000), 10)
        four = await udp_announce(service, ("192.0.2.7", 5000), 10)
        return six, four

    six, four = run(scenario())
    assert len(six) == 3 * 18  # every IPv6 peer there is
    assert len(four) == 10 * 6  # numwant, all IPv4


def test_http_announce_prefers_its_own_family_and_fills_with_the_other() -> None:
    """BEP 7: `peers6` beside `peers`. numwant bounds both lists together; the asker's own
    family comes first (an IPv6-only client in a mostly-IPv4 swarm had got mostly IPv4)."""

    async def scenario() -> dict[bytes, Any]:
        registry = _memory()
        await mostly_ipv4_swarm(registry)
        service = TrackerService(registry, TrackerSettings(udp_secret=SECRET))
        query = (
            f"info_hash={quote_from_bytes(HASH, safe='')}"
            f"&peer_id={quote_from_bytes(_peer_id(9998), safe='')}"
            "&port=6881&uploaded=0&downloaded=0&left=10&compact=1&numwant=10&key=zz"
        ).encode()
        return dict(bdecode(await service.handle_http_announce(query, "2001:db8:ffff::2", 0.0)))

    body = scenario_body = run(scenario())
    assert len(body[b"peers6"]) == 3 * 18, scenario_body
    assert len(body[b"peers"]) == 7 * 6  # the rest of numwant, IPv4


# ---- UDP connection ids across workers and nodes --------------------------------------------


def _udp_service(wall: list[float], shared: str | None) -> TrackerService:
    registry = _memory()
    run(registry.register(HASH, TorrentRef("b", "k", "v")))
    service = TrackerService(registry, TrackerSettings(), id_clock=lambda: wall[0])
    if shared is not None:
        service.key_connection_ids(derive_udp_secret(shared))
    return service


def _connect(service: TrackerService, addr: tuple[str, int], now: float) -> int:
    answer = run(service.handle_udp(struct.pack(">QiI", UDP_PROTOCOL_ID, 0, 1), addr, now))
    assert answer is not None
    return int(struct.unpack(">iIQ", answer)[2])


def _announce_action(
    service: TrackerService, addr: tuple[str, int], connection_id: int, now: float
) -> int:
    packet = struct.pack(
        ">QiI20s20sqqqiIIiH",
        connection_id, 1, 2, HASH, _peer_id(1), 0, 100, 0, 2, 0, 7, -1, 6881,
    )  # fmt: skip
    answer = run(service.handle_udp(packet, addr, now))
    assert answer is not None
    return int(struct.unpack(">i", answer[:4])[0])


def test_a_connection_id_one_process_gave_is_valid_on_another_of_the_deployment() -> None:
    """Two nodes (or an owner worker and its restarted successor) behind one UDP address:
    keyed alike (derived from the root user's secret, which every one of them reads from the
    shared database) and timed by the wall clock, not each one's monotonic clock."""
    addr = ("192.0.2.10", 6881)
    wall = [1_765_000_000.0]
    a, b = _udp_service(wall, "root-secret"), _udp_service(wall, "root-secret")
    cid = _connect(a, addr, now=12.0)  # A's monotonic clock
    assert _announce_action(b, addr, cid, now=987_654.0) == 1  # B's: another timeline
    wall[0] += 119.0  # still valid two minutes on (BEP 15)
    assert _announce_action(b, addr, cid, now=987_773.0) == 1
    wall[0] += 90.0  # and not for ever
    assert _announce_action(b, addr, cid, now=987_863.0) == 3
    # A node whose clock is a little behind the one that gave the id takes it too.
    wall[0] = 1_765_000_000.0
    fresh = _connect(a, addr, now=13.0)
    wall[0] -= 30.0
    assert _announce_action(b, addr, fresh, now=987_654.0) == 1
    # Keyed otherwise (another deployment), or from another address: refused.
    assert _announce_action(_udp_service(wall, "other-root"), addr, fresh, now=1.0) == 3
    assert _announce_action(b, ("192.0.2.11", 6881), fresh, now=1.0) == 3


def test_unkeyed_processes_refuse_each_others_ids() -> None:
    """What it was: each process's random key (TrackerSettings' default)."""
    addr = ("192.0.2.10", 6881)
    wall = [1_765_000_000.0]
    a, b = _udp_service(wall, None), _udp_service(wall, None)
    assert _announce_action(b, addr, _connect(a, addr, now=0.0), now=0.0) == 3


# ---- a dual-stack client announces over each family ------------------------------------------


def _announce(
    ip: str,
    peer: int,
    *,
    left: int = 100,
    up: int = 0,
    key: bytes = b"samekey",
    port: int = 6881,
    family_only: bool = False,
) -> AnnounceRequest:
    return AnnounceRequest(
        HASH, _peer_id(peer), ip, port, up, 0, left, AnnounceEvent.NONE, 50, True, True, key, None,
        (), None, family_only,
    )  # fmt: skip


async def dual_stack_client(registry: TrackerRegistry) -> dict[str, Any]:
    """libtorrent 2.1 announces from each of its listen sockets: the same peer id and key,
    over IPv4 and over IPv6, each socket with its own port."""
    await registry.register(HASH, TorrentRef("b", "k", "v"))
    seen: dict[str, Any] = {}
    for ip, port in (("192.0.2.1", 40001), ("2001:db8::1", 40002)):
        result = await registry.announce(_announce(ip, 1, up=1000, port=port), 0.0)
        assert not hasattr(result, "reason"), result
    # It finishes: both announce its totals and left=0.
    for ip, port in (("192.0.2.1", 40001), ("2001:db8::1", 40002)):
        await registry.announce(_announce(ip, 1, left=0, up=5000, port=port), 1.0)
    for asker, ip in ((2, "198.51.100.2"), (3, "2001:db8::2")):
        # Over UDP: the asker's family alone.
        asking = _announce(ip, asker, key=b"k%d" % asker, family_only=True)
        result = await registry.announce(asking, 2.0)
        seen[ip] = {(p.ip, p.port) for p in getattr(result, "peers", ())}
    stats = await registry.stats(HASH)
    seen["counters"] = (stats.uploaded, stats.completed)
    return seen


def test_a_dual_stack_client_is_listed_in_both_families_and_counted_once() -> None:
    """Keyed by peer id alone, each announce moved the client's one entry to its own
    family: IPv4 peers did not find it after its IPv6 announce, and the other way round."""
    seen = run(dual_stack_client(_memory()))
    assert seen["198.51.100.2"] == {("192.0.2.1", 40001)}
    assert seen["2001:db8::2"] == {("2001:db8::1", 40002)}
    assert seen["counters"] == (4000, 1)  # once: from its first totals (a baseline) on


def test_bep7_ipv4_and_ipv6_parameters_list_no_address_even_under_trust_ip_param() -> None:
    """An address a client names but did not announce from is unverified: listed, it would
    aim the swarm's connections at whoever holds it. A dual-stack client is listed in each
    family by announcing over each (libtorrent does), at an address its connection proves."""

    async def scenario() -> tuple[set[str], dict[bytes, Any]]:
        registry = _memory()
        await registry.register(HASH, TorrentRef("b", "k", "v"))
        service = TrackerService(registry, TrackerSettings(udp_secret=SECRET, trust_ip_param=True))
        query = (
            f"info_hash={quote_from_bytes(HASH, safe='')}"
            f"&peer_id={quote_from_bytes(_peer_id(1), safe='')}"
            "&port=6881&uploaded=0&downloaded=0&left=10&compact=1&key=aa"
            "&ipv6=2001%3Adb8%3A%3A99&ipv4=203.0.113.9&ipv6=2001%3Adb8%3A%3A98"
        ).encode()
        body = dict(bdecode(await service.handle_http_announce(query, "192.0.2.1", 0.0)))
        asker = _announce("2001:db8::2", 2, key=b"k2")
        result = await registry.announce(asker, 1.0)
        return {p.ip for p in getattr(result, "peers", ())}, body

    listed, body = run(scenario())
    assert b"failure reason" not in body, body
    assert listed == {"192.0.2.1"}  # where it announced from, and nothing it named
