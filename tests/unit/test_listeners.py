"""Connection admission: the pure caps and back-off, then the gate around real aiohttp sockets."""

from __future__ import annotations

import asyncio
import errno
import logging
import random
import socket
import time
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from s3torrent.admission import (
    EVICTION_SCAN,
    EXHAUSTION_MARGIN,
    AcceptBackoff,
    Admission,
    AdmissionLimits,
    Evictability,
    Refusal,
    client_key,
    connection_cap,
)
from s3torrent.forwarding import TrustedProxies
from s3torrent.http_site import AdmittedSite
from s3torrent.listeners import ConnectionGate, Listener, Slot
from s3torrent.tracker.http_lean import LeanHttpTracker
from s3torrent.tracker.registry import MemoryRegistry, RegistryLimits
from s3torrent.tracker.service import TrackerService

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


# --- the pure core ---------------------------------------------------------------------------


def never(_: object) -> Evictability:
    return Evictability.BUSY


def always(_: object) -> Evictability:
    return Evictability.NO_REQUEST


def test_per_ip_cap_refuses_the_excess_and_release_frees_a_place() -> None:
    a: Admission[int] = Admission(AdmissionLimits(max_connections=100, max_per_ip=2))
    assert a.admit(1, "10.0.0.1", never).admitted
    assert a.admit(2, "10.0.0.1", never).admitted
    assert a.admit(3, "10.0.0.1", always).refused is Refusal.PER_IP
    assert a.admit(4, "10.0.0.2", never).admitted
    a.release(1)
    a.release(1)  # twice: ignored
    assert a.count("10.0.0.1") == 1
    assert a.admit(5, "10.0.0.1", never).admitted
    assert len(a) == 3 and a.refused_per_ip == 1


def test_a_shared_address_has_no_per_ip_cap_nor_fair_share() -> None:
    """A trusted reverse proxy speaks for many clients (ConnectionGate(proxies=...))."""
    a: Admission[int] = Admission(AdmissionLimits(max_connections=4, max_per_ip=2))
    for n in range(3):
        assert a.admit(n, "proxy", always, shared=True).admitted
    assert a.admit(3, "client", never).admitted
    # Full: the proxy holds 3 of 4, over a fair share of 2, and still gets a place (an idle
    # connection is closed for it) where an ordinary address would be refused.
    decision = a.admit(4, "proxy", always, shared=True)
    assert decision.admitted and decision.evicted is not None
    assert a.admit(5, "client", always).refused is not Refusal.PER_IP


def test_the_gate_exempts_trusted_proxies_only() -> None:
    gate = ConnectionGate(
        AdmissionLimits(max_connections=100, max_per_ip=1),
        header_timeout=1.0,
        body_idle_timeout=1.0,
        proxies=TrustedProxies(["10.0.0.0/8"]),
    )
    slots = [gate.admit("10.1.2.3", 0.0, "10.1.2.3") for _ in range(5)]
    assert not any(isinstance(s, Refusal) for s in slots)
    assert not isinstance(gate.admit("192.0.2.9", 0.0, "192.0.2.9"), Refusal)
    assert gate.admit("192.0.2.9", 0.0, "192.0.2.9") is Refusal.PER_IP


def test_total_cap_evicts_the_oldest_idle_connection() -> None:
    a: Admission[int] = Admission(AdmissionLimits(max_connections=3, max_per_ip=10))
    for n in (1, 2, 3):
        assert a.admit(n, f"10.0.0.{n}", never).admitted
    idle = {2, 3}

    def evictability(c: int) -> Evictability:
        return Evictability.NO_REQUEST if c in idle else Evictability.BUSY

    decision = a.admit(4, "10.0.0.4", evictability)
    assert decision.admitted and decision.evicted == 2  # 1 is busy: skipped, not closed
    assert 2 not in a and 4 in a and a.count("10.0.0.2") == 0
    assert a.evicted == 1


def test_eviction_prefers_connections_that_never_sent_a_request() -> None:
    a: Admission[int] = Admission(AdmissionLimits(max_connections=3, max_per_ip=10))
    for n in (1, 2, 3):
        a.admit(n, "a", never)
    ranks = {1: Evictability.IDLE, 2: Evictability.BUSY, 3: Evictability.NO_REQUEST}
    assert a.admit(4, "b", ranks.__getitem__).evicted == 3
    ranks[4] = Evictability.BUSY
    assert a.admit(5, "c", ranks.__getitem__).evicted == 1  # then the oldest keep-alive one


def test_full_gate_refuses_addresses_over_their_fair_share() -> None:
    a: Admission[int] = Admission(AdmissionLimits(max_connections=6, max_per_ip=10))
    for n in range(5):
        a.admit(n, "flood", always)
    a.admit(5, "client", always)
    # Fair share: 6 // 2 addresses = 3; "flood" holds 5, "client" 1.
    assert a.admit(6, "flood", always).refused is Refusal.TOTAL
    assert a.admit(7, "client", always).evicted == 0
    assert a.admit(8, "newcomer", always).evicted == 1


def test_one_address_makes_room_for_itself() -> None:
    a: Admission[int] = Admission(AdmissionLimits(max_connections=2, max_per_ip=10))
    a.admit(1, "proxy", always)
    a.admit(2, "proxy", always)
    assert a.admit(3, "proxy", always).evicted == 1


def test_total_cap_refuses_when_every_connection_is_busy() -> None:
    a: Admission[int] = Admission(AdmissionLimits(max_connections=2, max_per_ip=10))
    a.admit(1, "a", never)
    a.admit(2, "b", never)
    assert a.admit(3, "c", never).refused is Refusal.TOTAL
    assert 3 not in a and len(a) == 2 and a.refused_total == 1


def test_eviction_scan_is_bounded_and_moves_busy_connections_back() -> None:
    n = EVICTION_SCAN * 3
    a: Admission[int] = Admission(AdmissionLimits(max_connections=n, max_per_ip=n))
    for c in range(n):
        a.admit(c, "a" if c % 2 else "b", never)
    looked: list[int] = []

    def idle_last(c: int) -> Evictability:
        looked.append(c)
        return Evictability.IDLE if c == n - 1 else Evictability.BUSY

    assert a.admit(n, "c", idle_last).refused is Refusal.TOTAL
    assert looked == list(range(EVICTION_SCAN))
    looked.clear()
    decision = a.admit(n, "c", idle_last)  # starts where the first scan stopped
    assert looked[0] == EVICTION_SCAN
    assert decision.refused is Refusal.TOTAL
    decision = a.admit(n, "c", idle_last)
    assert decision.evicted == n - 1


def test_shrink_lowers_the_cap_under_the_open_connections_and_frees_idle_ones() -> None:
    a: Admission[int] = Admission(AdmissionLimits(max_connections=1000, max_per_ip=1000))
    for c in range(EXHAUSTION_MARGIN + 10):
        a.admit(c, "a", never)
    idle = set(range(5, 5 + EXHAUSTION_MARGIN))

    def evictability(c: int) -> Evictability:
        return Evictability.NO_REQUEST if c in idle else Evictability.BUSY

    victims = a.shrink(evictability)
    assert a.limits.max_connections == 10
    assert sorted(victims) == sorted(idle) and len(a) == 10


def test_ipv6_clients_are_counted_by_their_64() -> None:
    assert client_key("10.1.2.3") == "10.1.2.3"
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::9")
    assert client_key("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:10.1.2.3") == "10.1.2.3"
    assert client_key("fe80::1%eth0") == "fe80::/64"


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.booleans(), st.integers(0, 30), st.sampled_from("abcd")),
        max_size=200,
    )
)
def test_caps_hold_and_counts_add_up_whatever_the_sequence(
    steps: list[tuple[bool, int, str]],
) -> None:
    a: Admission[int] = Admission(AdmissionLimits(max_connections=8, max_per_ip=3))
    rank = {c: Evictability(c % 3) for c in range(31)}
    model: dict[int, str] = {}
    for admit, c, ip in steps:
        if admit and c not in a:
            decision = a.admit(c, ip, rank.__getitem__)
            if decision.evicted is not None:
                assert rank[decision.evicted] is not Evictability.BUSY
                del model[decision.evicted]
            if decision.admitted:
                model[c] = ip
        elif not admit:
            a.release(c)
            model.pop(c, None)
        assert len(a) == len(model) <= 8
        for address in "abcd":
            held = sum(1 for v in model.values() if v == address)
            assert a.count(address) == held <= 3


def test_connection_cap_stays_below_the_file_limit() -> None:
    assert connection_cap(4096, 1024, 256) == 768
    assert connection_cap(500, 1_000_000, 256) == 500
    assert connection_cap(4096, -1, 256) == 4096
    assert connection_cap(4096, 100, 256) == 1


def test_accept_backoff_doubles_resets_and_reports_once_per_interval() -> None:
    b = AcceptBackoff(min_delay=0.05, max_delay=0.2, report_interval=60.0)
    steps = [b.exhausted(now=t) for t in (0.0, 1.0, 2.0, 3.0)]
    assert [s.delay for s in steps] == [0.05, 0.1, 0.2, 0.2]
    assert [s.report for s in steps] == [True, False, False, False]
    b.accepted()
    assert not b.backing_off
    later = b.exhausted(now=61.0)
    assert later.delay == 0.05 and later.report and later.failures == 4


# --- the gate around aiohttp -----------------------------------------------------------------

HEADER_TIMEOUT = 0.6
BODY_IDLE = 0.6


async def slow(request: web.Request) -> web.Response:
    await asyncio.sleep(3 * HEADER_TIMEOUT)
    return web.Response(text="slow")


async def upload(request: web.Request) -> web.Response:
    return web.Response(text=str(len(await request.read())))


async def fast(request: web.Request) -> web.Response:
    return web.Response(text="ok")


@asynccontextmanager
async def served_site(
    max_connections: int = 64, max_per_ip: int = 64, keepalive_timeout: float = HEADER_TIMEOUT
) -> AsyncIterator[tuple[int, Listener]]:
    app = web.Application()
    app.router.add_get("/fast", fast)
    app.router.add_get("/slow", slow)
    app.router.add_put("/upload", upload)
    gate = ConnectionGate(
        AdmissionLimits(max_connections=max_connections, max_per_ip=max_per_ip),
        header_timeout=HEADER_TIMEOUT,
        body_idle_timeout=BODY_IDLE,
    )
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=keepalive_timeout)
    await runner.setup()
    site = AdmittedSite(runner, gate, "127.0.0.1", 0)
    await site.start()
    try:
        yield int(site.listener.sockets[0].getsockname()[1]), site.listener
    finally:
        await runner.cleanup()


@asynccontextmanager
async def served(max_connections: int = 64, max_per_ip: int = 64) -> AsyncIterator[int]:
    async with served_site(max_connections, max_per_ip) as (port, _):
        yield port


async def connect(port: int, source: str = "127.0.0.1") -> tuple[Any, Any]:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


async def closed_after(reader: asyncio.StreamReader, limit: float = 5.0) -> float:
    """Seconds until the server closes the connection (reading everything it sends)."""
    start = time.monotonic()
    try:
        while await asyncio.wait_for(reader.read(4096), limit):
            pass
    except ConnectionError:
        pass
    return time.monotonic() - start


async def get(port: int, path: str, source: str = "127.0.0.1") -> bytes:
    r, w = await connect(port, source)
    w.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    data = await asyncio.wait_for(r.read(), 5)
    w.close()
    return data


def test_trickled_request_head_is_closed_at_the_header_deadline() -> None:
    async def scenario() -> None:
        async with served() as port:
            r, w = await connect(port)

            async def trickle() -> None:
                for b in b"GET /fast HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200:
                    w.write(bytes([b]))
                    await asyncio.sleep(0.05)

            task = asyncio.create_task(trickle())
            took = await closed_after(r)
            task.cancel()
            assert HEADER_TIMEOUT * 0.8 <= took <= HEADER_TIMEOUT * 2.5

    run(scenario())


def test_header_deadline_holds_without_aiohttp_keepalive_timer() -> None:
    # aiohttp's own timer (keepalive_timeout) is what makes the deadline exact; the
    # wrapper enforces it on its own too, should a runner be built without it.
    async def scenario() -> None:
        async with served_site(keepalive_timeout=3630) as (port, _):
            r, w = await connect(port)
            w.write(b"GET /fast HTTP/1.1\r\nHost: x\r\n")
            assert HEADER_TIMEOUT * 0.8 <= await closed_after(r) <= HEADER_TIMEOUT * 2.5
            r, w = await connect(port)
            w.write(b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
            await asyncio.wait_for(r.readuntil(b"ok"), 5)
            # Keep-alive: the wrapper sees the end of the answer up to a quarter late.
            assert HEADER_TIMEOUT * 0.8 <= await closed_after(r) <= HEADER_TIMEOUT * 2.5

    run(scenario())


def test_silent_connection_and_idle_keep_alive_are_closed_at_the_header_deadline() -> None:
    async def scenario() -> None:
        async with served() as port:
            r, _ = await connect(port)
            assert await closed_after(r) <= HEADER_TIMEOUT * 2.5
            r, w = await connect(port)
            w.write(b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await asyncio.wait_for(r.readuntil(b"ok"), 5)
            assert head.startswith(b"HTTP/1.1 200")
            took = await closed_after(r)
            assert HEADER_TIMEOUT * 0.8 <= took <= HEADER_TIMEOUT * 2.5

    run(scenario())


def test_slow_answers_and_steady_bodies_are_not_timed_out() -> None:
    async def scenario() -> None:
        async with served() as port:
            assert (await get(port, "/slow")).endswith(b"slow")
            r, w = await connect(port)
            w.write(b"PUT /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n")
            for _ in range(20):  # 2 s in all, never BODY_IDLE without a byte
                w.write(b"x")
                await asyncio.sleep(0.1)
            head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 200")
            assert await asyncio.wait_for(r.readexactly(2), 5) == b"20"

    run(scenario())


def test_stalled_request_body_is_closed_at_the_body_idle_deadline() -> None:
    async def scenario() -> None:
        async with served() as port:
            r, w = await connect(port)
            w.write(b"PUT /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
            took = await closed_after(r)
            assert BODY_IDLE * 0.8 <= took <= BODY_IDLE * 2.5

    run(scenario())


def test_per_ip_cap_answers_503_to_the_excess() -> None:
    async def scenario() -> None:
        async with served(max_per_ip=3) as port:
            held = [await connect(port, "127.0.0.2") for _ in range(3)]
            assert b" 503 " in await get(port, "/fast", "127.0.0.2")
            assert (await get(port, "/fast", "127.0.0.3")).endswith(b"ok")
            for _, w in held:
                w.close()

    run(scenario())


def test_full_gate_closes_the_oldest_idle_connection_for_a_newcomer() -> None:
    async def scenario() -> None:
        async with served(max_connections=4) as port:
            idle = [await connect(port, f"127.0.0.{n}") for n in (2, 3, 4, 5)]
            await asyncio.sleep(0.05)  # every one of them accepted
            assert (await get(port, "/fast", "127.0.0.9")).endswith(b"ok")
            assert await closed_after(idle[0][0], 1) < 1  # the oldest made room
            for _, w in idle[1:]:
                w.close()

    run(scenario())


def test_full_gate_of_busy_requests_refuses_newcomers() -> None:
    async def scenario() -> None:
        async with served(max_connections=2) as port:
            busy = [asyncio.create_task(get(port, "/slow", f"127.0.0.{n}")) for n in (2, 3)]
            await asyncio.sleep(0.2)
            assert b" 503 " in await get(port, "/fast", "127.0.0.9")
            for answer in await asyncio.gather(*busy):
                assert answer.endswith(b"slow")

    run(scenario())


class ExhaustedSocket:
    """A listening socket whose accept fails with EMFILE until told otherwise (the
    listener accepts with `_accept`, the descriptor and address, as `socket.accept` does
    inside)."""

    def __init__(self, real: socket.socket) -> None:
        self.real = real
        self.family = real.family
        self.proto = real.proto
        self.exhausted = True
        self.attempts = 0

    def fileno(self) -> int:
        return self.real.fileno()

    def _accept(self) -> tuple[int, Any]:
        self.attempts += 1
        if self.exhausted:
            raise OSError(errno.EMFILE, "Too many open files")
        return self.real._accept()  # type: ignore[attr-defined,no-any-return]


def test_accept_out_of_descriptors_backs_off_with_one_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        async with served_site() as (port, listener):
            gate = listener.gate
            idle = [await connect(port, "127.0.0.2") for _ in range(EXHAUSTION_MARGIN + 8)]
            while len(gate.admission) < len(idle):
                await asyncio.sleep(0.01)
            fake = ExhaustedSocket(listener.sockets[0])
            loop = asyncio.get_running_loop()
            loop.remove_reader(fake.fileno())
            loop.add_reader(fake.fileno(), listener._on_readable, fake)
            clients = [await connect(port, "127.0.0.3") for _ in range(3)]
            await asyncio.sleep(1.5)
            # Paused between attempts (0.05 s doubling to 1 s), not spinning on them.
            assert 2 <= fake.attempts <= 8
            # The cap went under what was open, and idle connections gave descriptors back.
            assert gate.stats()["cap"] == 8 and gate.stats()["evicted"] == EXHAUSTION_MARGIN
            fake.exhausted = False
            w = clients[0][1]
            w.write(b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")  # served once accepted
            assert (await asyncio.wait_for(clients[0][0].readuntil(b"ok"), 5)).startswith(
                b"HTTP/1.1 200"
            )
            for _, w in clients + idle:
                w.close()

    with caplog.at_level(logging.DEBUG, logger="s3torrent.listeners"):
        run(scenario())
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "EMFILE" in warnings[0].getMessage()
    assert all(r.exc_info is None for r in caplog.records)


def test_lean_tracker_through_the_gate_refuses_over_the_per_ip_cap() -> None:
    async def scenario() -> None:
        gate = ConnectionGate(
            AdmissionLimits(max_connections=10, max_per_ip=2),
            header_timeout=HEADER_TIMEOUT,
            body_idle_timeout=BODY_IDLE,
        )
        registry = MemoryRegistry(RegistryLimits(), random.Random(1))
        tracker = LeanHttpTracker(TrackerService(registry), time.monotonic, gate=gate)
        server = await tracker.start("127.0.0.1", 0)
        port = int(server.sockets[0].getsockname()[1])
        try:
            held = [await connect(port) for _ in range(2)]
            for _, w in held:
                # A head begun: the kernel hands the connection over (TCP_DEFER_ACCEPT
                # keeps a silent one for about a second), and the gate counts it.
                w.write(b"GET /nothing HTTP/1.1\r\n")
            await asyncio.sleep(0.2)
            assert b" 503 " in await get(port, "/nothing")
            r, w = held[0]
            w.write(b"Host: x\r\n\r\n")
            assert (await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 5)).startswith(b"HTTP/1.1 404")
            assert await closed_after(held[1][0]) <= HEADER_TIMEOUT * 2.5
            assert len(gate.admission) <= 1
        finally:
            await tracker.close()

    run(scenario())


def test_socket_listener_hands_over_admitted_sockets_and_frees_released_slots() -> None:
    async def scenario() -> None:
        gate = ConnectionGate(
            AdmissionLimits(max_connections=10, max_per_ip=2),
            header_timeout=HEADER_TIMEOUT,
            body_idle_timeout=BODY_IDLE,
        )
        owned: list[tuple[socket.socket, Slot]] = []

        def on_socket(sock: socket.socket, slot: Slot) -> None:
            assert not sock.getblocking() and slot.ip == "127.0.0.7"
            slot.attach(sock.close, lambda: Evictability.NO_REQUEST)
            owned.append((sock, slot))

        listener = await gate.start_socket_listener(on_socket, "127.0.0.1", 0, name="raw")
        port = int(listener.sockets[0].getsockname()[1])
        try:
            clients = [await connect(port, "127.0.0.7") for _ in range(3)]
            # The third is over the per-address cap: closed with nothing written.
            assert await asyncio.wait_for(clients[2][0].read(), 5) == b""
            assert len(owned) == 2 and len(gate.admission) == 2
            sock, slot = owned.pop()
            sock.close()
            slot.release()
            slot.release()
            assert len(gate.admission) == 1
            await connect(port, "127.0.0.7")
            await asyncio.sleep(0.1)
            assert len(owned) == 2
            for _, w in clients:
                w.close()
        finally:
            listener.close()
            for sock, _ in owned:
                sock.close()

    run(scenario())


def test_a_request_is_on_the_unix_socket_only_when_it_came_over_one(tmp_path: Path) -> None:
    """`on_unix_socket` (which decides whether the forwarded-client headers are believed)
    is true for a connection accepted on a Unix socket, false for TCP and for no transport."""
    from s3torrent.roles import on_unix_socket

    async def main() -> list[bool]:
        seen: list[bool] = []

        class Probe(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                seen.append(on_unix_socket(transport))
                transport.close()

        tcp = await asyncio.get_running_loop().create_server(Probe, "127.0.0.1", 0)
        port = tcp.sockets[0].getsockname()[1]
        unix = await asyncio.get_running_loop().create_unix_server(Probe, str(tmp_path / "s"))
        for opened in (
            asyncio.open_connection("127.0.0.1", port),
            asyncio.open_unix_connection(str(tmp_path / "s")),
        ):
            _reader, writer = await opened
            await asyncio.sleep(0.05)
            writer.close()
        tcp.close()
        unix.close()
        return seen

    assert asyncio.run(main()) == [False, True]
    assert on_unix_socket(None) is False
