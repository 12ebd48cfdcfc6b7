"""TrackerService handlers (HTTP and UDP) and the UDP listener on real sockets."""

from __future__ import annotations

import asyncio
import random
import socket
import struct
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar
from urllib.parse import quote_from_bytes

import pytest
from fastbencode import bdecode  # type: ignore[attr-defined]
from hypothesis import given
from hypothesis import strategies as st

from s3torrent.tracker.registry import MemoryRegistry, RegistryLimits, TorrentRef
from s3torrent.tracker.service import LATER, TrackerService, TrackerSettings
from s3torrent.tracker.udp import start_udp_tracker
from s3torrent.tracker.udp_protocol import (
    UDP_PROTOCOL_ID,
)

T = TypeVar("T")
HASH = bytes(range(100, 120))
OTHER = b"\x00" * 20
PEER = bytes(range(20))
ORIGIN = ("198.51.100.1", 6881)
ORIGIN6 = ("2001:db8::1", 6881)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def make_service(**settings_overrides: Any) -> TrackerService:
    registry = MemoryRegistry(RegistryLimits(rate_burst=1e9, rate_per_ip=1e9), random.Random(3))
    run(registry.register(HASH, TorrentRef("b", "k", "v", origin_seeders=(ORIGIN, ORIGIN6))))
    return TrackerService(registry, TrackerSettings(udp_secret=b"k" * 32, **settings_overrides))


def http_query(info_hash: bytes = HASH, peer_id: bytes = PEER, extra: str = "") -> bytes:
    return (
        f"info_hash={quote_from_bytes(info_hash, safe='')}"
        f"&peer_id={quote_from_bytes(peer_id, safe='')}"
        f"&port=6881&uploaded=0&downloaded=0&left=10&compact=1{extra}"
    ).encode()


# --- HTTP handlers -------------------------------------------------------------------------


def test_http_announce_answers_with_compact_peers() -> None:
    service = make_service()
    body = bdecode(run(service.handle_http_announce(http_query(), "10.0.0.1", 0.0)))
    assert body[b"interval"] == 1800
    assert body[b"complete"] == 2  # both origins
    assert body[b"peers"] == bytes([198, 51, 100, 1]) + (6881).to_bytes(2, "big")
    assert len(body[b"peers6"]) == 18


def test_http_announce_for_unregistered_torrent_fails_without_peers() -> None:
    service = make_service()
    body = bdecode(run(service.handle_http_announce(http_query(OTHER), "10.0.0.1", 0.0)))
    assert body == {b"failure reason": b"unregistered torrent"}


def test_http_bad_announce_gets_a_failure_body() -> None:
    service = make_service()
    body = bdecode(run(service.handle_http_announce(b"info_hash=x", "10.0.0.1", 0.0)))
    assert body[b"failure reason"] == b"info_hash must be 20 bytes, got 1"


def test_http_scrape_omits_unregistered_hashes() -> None:
    service = make_service()
    run(service.handle_http_announce(http_query(), "10.0.0.1", 0.0))
    query = f"info_hash={quote_from_bytes(HASH)}&info_hash={quote_from_bytes(OTHER)}".encode()
    body = bdecode(run(service.handle_http_scrape(query, "10.0.0.1", 0.0)))
    assert body == {b"files": {HASH: {b"complete": 2, b"incomplete": 1, b"downloaded": 0}}}


def test_full_scrape_only_when_allowed() -> None:
    assert b"failure reason" in bdecode(
        run(make_service().handle_http_scrape(b"", "10.0.0.1", 0.0))
    )
    body = bdecode(
        run(make_service(allow_full_scrape=True).handle_http_scrape(b"", "10.0.0.1", 0.0))
    )
    assert list(body[b"files"]) == [HASH]


def test_client_ip_trusts_forwarded_for_only_from_trusted_proxies() -> None:
    service = make_service(trusted_proxies=frozenset({"10.0.0.0/8"}))
    assert service.client_ip("10.0.0.2", "203.0.113.9, 10.0.0.5") == "203.0.113.9"
    assert service.client_ip("192.0.2.1", "203.0.113.9") == "192.0.2.1"
    assert service.client_ip("10.0.0.2", None) == "10.0.0.2"


class ExplodingRegistry(MemoryRegistry):
    async def announce(self, req: Any, now: float) -> Any:
        raise RuntimeError("boom")

    def announce_now(self, req: Any, now: float) -> Any:
        raise RuntimeError("boom")

    async def scrape(self, info_hashes: Any, now: float) -> Any:
        raise RuntimeError("boom")


def test_handlers_turn_internal_errors_into_failures() -> None:
    service = TrackerService(ExplodingRegistry(), TrackerSettings(udp_secret=b"k" * 32))
    body = run(service.handle_http_announce(http_query(), "10.0.0.1", 0.0))
    assert bdecode(body) == {b"failure reason": b"internal error"}
    scrape = run(service.handle_http_scrape(b"info_hash=" + b"a" * 20, "10.0.0.1", 0.0))
    assert bdecode(scrape) == {b"failure reason": b"internal error"}
    addr = ("10.0.0.1", 1)
    connect = run(service.handle_udp(struct.pack(">QiI", UDP_PROTOCOL_ID, 0, 1), addr, 0.0))
    assert connect is not None
    cid = struct.unpack(">iIQ", connect)[2]
    answer = run(service.handle_udp(announce_packet(cid, 2), addr, 0.0))
    assert answer == struct.pack(">iI", 3, 2) + b"internal error"
    # The same on the path without a coroutine (UdpTracker answers most datagrams there).
    now = service.answer_udp_now(announce_packet(cid, 3), addr, 0.0)
    assert now == struct.pack(">iI", 3, 3) + b"internal error"


@given(st.binary(max_size=300), st.sampled_from(["10.0.0.1", "::1", "::ffff:10.0.0.1", "bogus"]))
def test_handlers_never_raise(data: bytes, ip: str) -> None:
    service = make_service()

    async def all_handlers() -> None:
        for query in (data, http_query() + b"&" + data):
            await service.handle_http_announce(query, ip, 0.0)
            await service.handle_http_scrape(query, "10.0.0.1", 0.0)
        for packet in (data, struct.pack(">QiI", 0, 1, 1) + data):
            await service.handle_udp(packet, (ip, 1), 0.0)
            answer = service.answer_udp_now(packet, (ip, 1), 0.0)
            assert answer is None or answer is LATER or isinstance(answer, bytes)

    run(all_handlers())


# --- UDP handler ---------------------------------------------------------------------------


def announce_packet(
    connection_id: int,
    transaction_id: int,
    *,
    left: int = 10,
    peer_id: bytes = PEER,
    port: int = 6881,
) -> bytes:
    return struct.pack(
        ">QiI20s20sqqqiIIiH",
        connection_id,
        1,
        transaction_id,
        HASH,
        peer_id,
        0,
        left,
        0,
        2,
        0,
        0,
        -1,
        port,
    )


def test_udp_short_packet_gets_no_answer() -> None:
    assert run(make_service().handle_udp(b"\x00" * 15, ("10.0.0.1", 1), 0.0)) is None


def test_udp_connection_id_expires() -> None:
    service = make_service()
    addr = ("10.0.0.1", 1)
    connect = run(service.handle_udp(struct.pack(">QiI", UDP_PROTOCOL_ID, 0, 1), addr, 0.0))
    assert connect is not None
    cid = struct.unpack(">iIQ", connect)[2]
    fresh = run(service.handle_udp(announce_packet(cid, 2), addr, 119.0))
    assert fresh is not None and struct.unpack_from(">i", fresh)[0] == 1
    stale = run(service.handle_udp(announce_packet(cid, 3), addr, 1000.0))
    assert stale == struct.pack(">iI", 3, 3) + b"invalid connection id"


# --- real sockets --------------------------------------------------------------------------


class UdpClient(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.answers: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.answers.put_nowait(data)


async def exchange(service: TrackerService, host: str, family: socket.AddressFamily) -> None:
    server = await start_udp_tracker(service, host, 0)
    try:
        port = server.get_extra_info("sockname")[1]
        loop = asyncio.get_running_loop()
        transport, client = await loop.create_datagram_endpoint(
            UdpClient, remote_addr=(host, port), family=family
        )
        try:

            async def ask(packet: bytes) -> bytes:
                transport.sendto(packet)
                return await asyncio.wait_for(client.answers.get(), 5)

            action, tid, cid = struct.unpack(
                ">iIQ", await ask(struct.pack(">QiI", UDP_PROTOCOL_ID, 0, 77))
            )
            assert (action, tid) == (0, 77)

            bad = await ask(announce_packet(cid ^ 1, 78))
            assert bad == struct.pack(">iI", 3, 78) + b"invalid connection id"

            answer = await ask(announce_packet(cid, 79))
            action, tid, interval, leechers, seeders = struct.unpack_from(">iIiii", answer)
            assert (action, tid, interval, leechers, seeders) == (1, 79, 1800, 1, 2)
            ipv6 = family == socket.AF_INET6
            origin = ORIGIN6 if ipv6 else ORIGIN
            packed = socket.inet_pton(family, origin[0]) + origin[1].to_bytes(2, "big")
            assert answer[20:] == packed  # only the origin of our own family

            other_peer = await ask(announce_packet(cid, 80, left=0, peer_id=b"p" * 20, port=6882))
            assert len(other_peer[20:]) == 2 * len(packed)  # the origin and the first peer

            scrape = await ask(struct.pack(">QiI", cid, 2, 81) + HASH + OTHER)
            assert struct.unpack(">iIiiiiii", scrape) == (2, 81, 3, 0, 1, 0, 0, 0)
        finally:
            transport.close()
    finally:
        server.close()


def test_udp_tracker_over_ipv4_socket() -> None:
    run(exchange(make_service(), "127.0.0.1", socket.AF_INET))


def test_udp_tracker_over_ipv6_socket() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this environment")
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("::1 is not configured")
    run(exchange(make_service(), "::1", socket.AF_INET6))


class WaitingRegistry:
    """A registry with no synchronous announce (as the Redis one): every announce waits."""

    def __init__(self, inner: MemoryRegistry) -> None:
        self.inner = inner
        self.announces = 0

    async def announce(self, req: Any, now: float) -> Any:
        self.announces += 1
        await asyncio.sleep(0)
        return await self.inner.announce(req, now)

    async def scrape(self, info_hashes: Any, now: float) -> Any:
        return await self.inner.scrape(info_hashes, now)


async def _connect(ask: Callable[[bytes], Awaitable[bytes]]) -> int:
    answer = await ask(struct.pack(">QiI", UDP_PROTOCOL_ID, 0, 1))
    return int(struct.unpack(">iIQ", answer)[2])


async def _with_udp_server(
    service: TrackerService,
    scenario: Callable[[asyncio.DatagramTransport, UdpClient], Awaitable[None]],
) -> None:
    server = await start_udp_tracker(service, "127.0.0.1", 0)
    try:
        port = server.get_extra_info("sockname")[1]
        loop = asyncio.get_running_loop()
        transport, client = await loop.create_datagram_endpoint(
            UdpClient, remote_addr=("127.0.0.1", port)
        )
        try:
            await scenario(transport, client)
        finally:
            transport.close()
    finally:
        server.close()


def test_udp_announces_to_a_registry_that_waits_are_answered_by_a_task() -> None:
    memory = MemoryRegistry(RegistryLimits(rate_burst=1e9, rate_per_ip=1e9), random.Random(3))
    run(memory.register(HASH, TorrentRef("b", "k", "v", origin_seeders=(ORIGIN,))))
    waiting = WaitingRegistry(memory)
    service = TrackerService(waiting, TrackerSettings(udp_secret=b"k" * 32))  # type: ignore[arg-type]
    addr = ("127.0.0.1", 1)
    connect = service.answer_udp_now(struct.pack(">QiI", UDP_PROTOCOL_ID, 0, 1), addr, 0.0)
    assert isinstance(connect, bytes)  # a connect never waits
    cid = struct.unpack(">iIQ", connect)[2]
    assert service.answer_udp_now(announce_packet(cid, 2), addr, 0.0) is LATER
    assert waiting.announces == 0  # LATER: nothing was recorded yet

    async def scenario(transport: asyncio.DatagramTransport, client: UdpClient) -> None:
        async def ask(packet: bytes) -> bytes:
            transport.sendto(packet)
            return await asyncio.wait_for(client.answers.get(), 5)

        cid = await _connect(ask)
        answer = await ask(announce_packet(cid, 9))
        assert struct.unpack_from(">iI", answer) == (1, 9)
        assert answer[20:] == socket.inet_aton(ORIGIN[0]) + ORIGIN[1].to_bytes(2, "big")
        assert waiting.announces == 1

    run(_with_udp_server(service, scenario))


def test_a_burst_of_udp_announces_is_answered_in_full() -> None:
    """Answers go out together after the socket is drained: every one of them, once."""
    service = make_service()

    async def scenario(transport: asyncio.DatagramTransport, client: UdpClient) -> None:
        async def ask(packet: bytes) -> bytes:
            transport.sendto(packet)
            return await asyncio.wait_for(client.answers.get(), 5)

        cid = await _connect(ask)
        # More than one drain of the socket (udp.DRAIN), fewer than its receive buffer holds.
        count = 120
        for tid in range(count):
            peer_id = tid.to_bytes(20, "big")
            transport.sendto(announce_packet(cid, 1000 + tid, peer_id=peer_id, port=7000 + tid))
        seen: list[int] = []
        for _ in range(count):
            answer = await asyncio.wait_for(client.answers.get(), 5)
            action, tid = struct.unpack_from(">iI", answer)
            assert action == 1
            seen.append(tid)
        assert sorted(seen) == list(range(1000, 1000 + count))
        assert client.answers.empty()

    run(_with_udp_server(service, scenario))
