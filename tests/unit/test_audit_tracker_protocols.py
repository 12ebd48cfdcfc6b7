"""Audit of the tracker's wire protocols as attackers meet them (HTTP and BEP 15 UDP)."""

from __future__ import annotations

import asyncio
import random
import socket
import struct
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from s3torrent.config import Settings
from s3torrent.tracker.registry import MemoryRegistry, RegistryLimits, TorrentRef
from s3torrent.tracker.service import LATER, TrackerService, TrackerSettings
from s3torrent.tracker.udp import start_udp_tracker
from s3torrent.tracker.udp_protocol import UDP_PROTOCOL_ID

T = TypeVar("T")
HASH = bytes(range(100, 120))
PEER = bytes(range(20))
SPOOFED = ("203.0.113.5", 4444)  # a victim's address, on requests an attacker forged


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def make_service() -> TrackerService:
    registry = MemoryRegistry(RegistryLimits(rate_burst=1e9, rate_per_ip=1e9), random.Random(3))
    run(registry.register(HASH, TorrentRef("b", "k", "v", origin_seeders=(("198.51.100.1", 1),))))
    return TrackerService(registry, TrackerSettings(udp_secret=b"k" * 32))


def udp_answers(service: TrackerService, packet: bytes, addr: tuple[str, int]) -> list[bytes]:
    """What both UDP paths send back for `packet` (the coroutine's and the plain call's)."""
    answers = []
    slow = run(service.handle_udp(packet, addr, 0.0))
    if slow is not None:
        answers.append(slow)
    now = service.answer_udp_now(packet, addr, 0.0)
    if isinstance(now, bytes):
        answers.append(now)
    else:
        assert now is None or now is LATER
    return answers


# --- BEP 15: no amplification, no loops ------------------------------------------------------


@pytest.mark.parametrize(
    "packet",
    [
        struct.pack(">QiI", 5, 2, 1),  # a scrape with no hash
        struct.pack(">QiI", 5, 2, 1) + b"x" * 21,  # a scrape cut mid-hash
        struct.pack(">QiI", 5, 1, 1),  # an announce of a header only
        struct.pack(">QiI", 5, 0, 1),  # a connect with the wrong protocol id
        struct.pack(">QiI", 5, 1, 1) + b"y" * 40,  # announce too short, forged id
    ],
)
def test_udp_errors_to_an_unproven_source_are_never_larger_than_the_request(
    packet: bytes,
) -> None:
    # Before: a 16-byte scrape with a forged source got 67 bytes back (4x), any forged
    # header 22 to 67: a reflector that multiplies what an attacker sends to a victim.
    answers = udp_answers(make_service(), packet, SPOOFED)
    assert answers, "the request gets an error answer"
    for answer in answers:
        assert struct.unpack_from(">iI", answer) == (3, 1)
        assert len(answer) <= len(packet)


@given(st.binary(min_size=16, max_size=200))
def test_no_udp_answer_to_a_forged_source_exceeds_the_request(packet: bytes) -> None:
    # Any datagram at all (no connection id of this secret but by a 2**-64 chance).
    for answer in udp_answers(make_service(), packet, SPOOFED):
        assert len(answer) <= len(packet)


@pytest.mark.parametrize("action", [3, 4, 7, -1, 0x756E6B6E])
def test_udp_errors_and_unknown_actions_get_no_answer(action: int) -> None:
    # An error packet (ours: "unknown action" reads as action 0x756e6b6e, "unkn") answered
    # with an error makes two trackers, or one tracker and itself, ping-pong for ever.
    packet = struct.pack(">QiI", 5, action, 9) + b"unknown action"
    assert udp_answers(make_service(), packet, SPOOFED) == []


def test_a_proven_client_still_gets_its_errors_and_answers() -> None:
    service = make_service()
    addr = ("10.0.0.1", 6881)
    connect = run(service.handle_udp(struct.pack(">QiI", UDP_PROTOCOL_ID, 0, 1), addr, 0.0))
    assert connect is not None and len(connect) == 16
    cid = struct.unpack(">iIQ", connect)[2]
    announce = struct.pack(
        ">QiI20s20sqqqiIIiH", cid, 1, 2, b"\xee" * 20, PEER, 0, 10, 0, 2, 0, 0, -1, 6881
    )
    assert run(service.handle_udp(announce, addr, 0.0)) == struct.pack(">iI", 3, 2) + (
        b"unregistered torrent"
    )
    stale = run(service.handle_udp(announce, addr, 1000.0))
    assert stale == struct.pack(">iI", 3, 2) + b"invalid connection id"


def _raw_udp(src: tuple[str, int], dst: tuple[str, int], payload: bytes) -> bytes:
    """An IPv4 datagram with any source (the kernel fills in the IP checksum)."""
    udp = struct.pack(">HHHH", src[1], dst[1], 8 + len(payload), 0) + payload  # no checksum
    ip = struct.pack(
        ">BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(udp),
        0,
        0,
        64,
        socket.IPPROTO_UDP,
        0,
        socket.inet_aton(src[0]),
        socket.inet_aton(dst[0]),
    )
    return ip + udp


def test_a_datagram_forged_from_the_trackers_own_address_does_not_loop() -> None:
    try:
        raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    except PermissionError:
        pytest.skip("forging a source address needs a raw socket (root)")
    service = make_service()
    seen: list[bytes] = []
    answer_now = service.answer_udp_now

    def counting(packet: bytes, addr: tuple[str, int], now: float) -> Any:
        seen.append(packet)
        return answer_now(packet, addr, now)

    service.answer_udp_now = counting  # type: ignore[method-assign]

    async def scenario() -> None:
        server = await start_udp_tracker(service, "127.0.0.1", 0)
        try:
            port = server.get_extra_info("sockname")[1]
            own = ("127.0.0.1", port)
            # Its answer goes to the tracker itself, whose answer to that goes to itself...
            raw.sendto(_raw_udp(own, own, struct.pack(">QiI", 5, 9, 1)), own)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
                client.setblocking(False)
                client.connect(own)
                loop = asyncio.get_running_loop()
                # Datagrams are read in order: once a later connect is answered, whatever
                # the forged one set off before it was read. Two rounds: what the first
                # round's batch sent to the tracker itself is read before the second.
                for tid in (2, 3):
                    await loop.sock_sendall(client, struct.pack(">QiI", UDP_PROTOCOL_ID, 0, tid))
                    answer = await asyncio.wait_for(loop.sock_recv(client, 64), 5)
                    assert struct.unpack_from(">iI", answer) == (0, tid)
        finally:
            server.close()

    try:
        run(scenario())
    finally:
        raw.close()
    # Before: the tracker answered "unknown action" to itself, read it as a request of
    # action "unkn" and answered again, for ever, from one forged datagram.
    assert len(seen) == 3, [p[:16] for p in seen]


# --- listening on both families --------------------------------------------------------------


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def test_udp_tracker_listens_on_ipv4_and_ipv6_wildcards_at_one_port() -> None:
    # The README's tracker.udp_listen = "0.0.0.0:6969,[::]:6969": before, '[::]' was
    # dual-stack and the second bind failed (EADDRINUSE), so the server did not start.
    if not _ipv6_loopback():
        pytest.skip("::1 is not configured")
    service = make_service()

    async def scenario() -> None:
        v4 = await start_udp_tracker(service, "0.0.0.0", 0)
        port = v4.get_extra_info("sockname")[1]
        try:
            v6 = await start_udp_tracker(service, "::", port)
        except OSError:
            v4.close()
            raise
        loop = asyncio.get_running_loop()
        try:
            for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
                with socket.socket(family, socket.SOCK_DGRAM) as client:
                    client.setblocking(False)
                    client.connect((host, port))
                    await loop.sock_sendall(client, struct.pack(">QiI", UDP_PROTOCOL_ID, 0, 4))
                    answer = await asyncio.wait_for(loop.sock_recv(client, 64), 5)
                    assert struct.unpack_from(">iI", answer) == (0, 4)
        finally:
            v4.close()
            v6.close()

    run(scenario())


@pytest.mark.parametrize(
    ("listen", "url"),
    [
        ("[::]:9000", "http://[::1]:9000"),  # IPv6 only: its loopback is ::1
        ("0.0.0.0:9000", "http://127.0.0.1:9000"),
        (":9000", "http://127.0.0.1:9000"),  # both families
        ("[::1]:9000", "http://[::1]:9000"),
    ],
)
def test_a_wildcard_listener_names_a_loopback_of_its_own_family(listen: str, url: str) -> None:
    # Before: '[::]' named 127.0.0.1, where nothing listens (the listener is IPv6 only):
    # every torrent's announce URL, web seed and origin seeder pointed there.
    assert Settings(listen=listen).base_url == url
