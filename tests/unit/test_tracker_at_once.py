"""Announces answered from a new connection's first read, without a transport (`AtOnce`):
what libtorrent-based clients send (one connection per announce, `Connection: close`), and
everything else still going to the lean protocol as before, on real sockets."""

from __future__ import annotations

import asyncio
import random
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote_from_bytes

import pytest
from aiohttp import web
from fastbencode import bdecode  # type: ignore[attr-defined]
from hypothesis import example, given
from hypothesis import strategies as st

from s3torrent.admission import AdmissionLimits
from s3torrent.front import TrackerFront
from s3torrent.http_site import aiohttp_phase
from s3torrent.listeners import DEFER_ACCEPT, AtOnce, ConnectionGate, Slot
from s3torrent.tracker.http_lean import (
    AnswerUnavailable,
    HttpRequestError,
    LeanHttpLimits,
    LeanHttpTracker,
    _parse_request_head,
    parse_request_head,
)
from s3torrent.tracker.registry import MemoryRegistry, RegistryLimits, TorrentRef
from s3torrent.tracker.service import TrackerService

HASH = bytes(range(150, 170))
HEADER_TIMEOUT = 0.5


def target(n: int) -> str:
    peer_id = n.to_bytes(20, "big")
    return (
        f"/announce?info_hash={quote_from_bytes(HASH, safe='')}"
        f"&peer_id={quote_from_bytes(peer_id, safe='')}&port={6000 + n}"
        "&uploaded=0&downloaded=0&left=10&compact=1"
    )


def one_shot(n: int) -> bytes:
    """An announce as libtorrent sends it: HTTP/1.1, one per connection."""
    return (
        f"GET {target(n)} HTTP/1.1\r\nHost: t\r\nUser-Agent: lt\r\n"
        "Accept-Encoding: gzip\r\nConnection: close\r\n\r\n"
    ).encode()


def keep_alive(n: int) -> bytes:
    return f"GET {target(n)} HTTP/1.1\r\nHost: t\r\n\r\n".encode()


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def body_of(answer: bytes) -> bytes:
    return answer.partition(b"\r\n\r\n")[2]


async def tracker_and_gate(
    limits: LeanHttpLimits | None = None,
) -> tuple[LeanHttpTracker, ConnectionGate]:
    """A lean tracker (HASH registered) and the gate it admits through, not listening."""
    gate = ConnectionGate(
        AdmissionLimits(max_connections=64, max_per_ip=64),
        header_timeout=HEADER_TIMEOUT,
        body_idle_timeout=5.0,
    )
    registry = MemoryRegistry(RegistryLimits(rate_burst=1e9, rate_per_ip=1e9), random.Random(3))
    await registry.register(HASH, TorrentRef("b", "k", "v"))
    tracker = LeanHttpTracker(
        TrackerService(registry), time.monotonic, limits, eager=True, gate=gate
    )
    return tracker, gate


@asynccontextmanager
async def gated_tracker(
    limits: LeanHttpLimits | None = None,
) -> AsyncIterator[tuple[LeanHttpTracker, ConnectionGate, int, list[bool]]]:
    """A lean tracker behind a gate, as `serve` runs it, and the at-once path's verdicts."""
    tracker, gate = await tracker_and_gate(limits)
    verdicts: list[bool] = []
    plain = tracker.answer_at_once

    def spied(sock: socket.socket, slot: Slot, first: bytes) -> bool:
        verdicts.append(plain(sock, slot, first))
        return verdicts[-1]

    tracker.answer_at_once = spied  # type: ignore[method-assign]
    server = await tracker.start("127.0.0.1", 0)
    try:
        yield tracker, gate, int(server.sockets[0].getsockname()[1]), verdicts
    finally:
        await tracker.close()


def client(
    port: int, sends: list[bytes], out: list[bytes], *, pause: float = 0.0, source: str = ""
) -> None:
    """A blocking client: connects (from `source`, if given), sends each part (`pause`
    between), reads to EOF."""
    address = (source, 0) if source else None
    with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=address) as sock:
        for i, part in enumerate(sends):
            if i:
                time.sleep(pause)
            sock.sendall(part)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        out.append(data)


async def arrived_before_accept(
    port: int, sends: list[bytes], pause: float = 0.0, source: str = ""
) -> bytes:
    """The client connects and sends its first part while this loop is blocked, so the
    server's accept finds the bytes there (as on a loaded server); its whole answer."""
    out: list[bytes] = []
    thread = threading.Thread(
        target=client, args=(port, sends, out), kwargs={"pause": pause, "source": source}
    )
    thread.start()
    time.sleep(0.2)  # blocks the loop: connect and first send happen meanwhile
    await joined(thread)
    return out[0]


async def settled(check: Callable[[], bool], within: float = 2.0) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        if check():
            return True
        await asyncio.sleep(0.01)
    return check()


# A silent connection reaches the server once the kernel's deferral (TCP_DEFER_ACCEPT) has
# passed: after its first SYN-ACK retransmission, about a second on Linux.
HANDED_OVER_WITHIN = DEFER_ACCEPT + 2.0


async def silent_until_handed_over(
    port: int, gate: ConnectionGate
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, float]:
    """A connection that sends nothing, once the server has it (the kernel held it first),
    and when that was."""
    connected = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert await settled(lambda: len(gate.admission) == 1, HANDED_OVER_WITHIN)
    handed_over = time.monotonic()
    assert handed_over - connected >= DEFER_ACCEPT * 0.9
    return reader, writer, handed_over


def test_a_one_shot_announce_is_answered_from_its_first_read_and_closed() -> None:
    async def scenario() -> None:
        async with gated_tracker() as (tracker, gate, port, verdicts):
            answer = await arrived_before_accept(port, [one_shot(1)])
            assert status_of(answer) == 200
            assert b"Connection: close" in answer
            assert bdecode(body_of(answer))[b"interval"] > 0
            assert verdicts == [True]
            # The second peer is told of the first.
            answer = await arrived_before_accept(port, [one_shot(2)])
            assert bdecode(body_of(answer))[b"peers"] == socket.inet_aton("127.0.0.1") + (
                6001
            ).to_bytes(2, "big")
            assert verdicts == [True, True]
            assert not tracker.connections and not tracker.at_once
            assert await settled(lambda: len(gate.admission) == 0)

    asyncio.run(scenario())


def test_a_one_shot_announce_is_listed_at_the_address_it_was_accepted_from() -> None:
    async def scenario() -> None:
        async with gated_tracker() as (_, _, port, verdicts):
            # The address comes from the accept (the slot's `peer`), not a getpeername.
            await arrived_before_accept(port, [one_shot(1)], source="127.0.0.7")
            answer = await arrived_before_accept(port, [one_shot(2)], source="127.0.0.8")
            assert bdecode(body_of(answer))[b"peers"] == socket.inet_aton("127.0.0.7") + (
                6001
            ).to_bytes(2, "big")
            assert verdicts == [True, True]

    asyncio.run(scenario())


def test_a_one_shot_announce_whose_bytes_come_after_the_accept_is_answered_at_once() -> None:
    async def scenario() -> None:
        async with gated_tracker() as (tracker, gate, port, verdicts):
            out: list[bytes] = []
            handed_over = threading.Event()

            def late_client() -> None:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                    handed_over.wait(HANDED_OVER_WITHIN)
                    sock.sendall(one_shot(1))
                    out.append(b"".join(iter(lambda: sock.recv(65536), b"")))

            # Connected, then silent past the kernel's deferral and the accept: the
            # connection waits without a transport for its first bytes.
            thread = threading.Thread(target=late_client)
            thread.start()
            assert await settled(lambda: len(gate.admission) == 1, HANDED_OVER_WITHIN)
            assert verdicts == []  # accepted with nothing to read yet
            handed_over.set()
            await joined(thread)
            assert status_of(out[0]) == 200
            assert verdicts == [True]
            assert not tracker.connections
            assert await settled(lambda: len(gate.admission) == 0)

    asyncio.run(scenario())


def test_the_kernel_holds_a_connection_until_its_first_bytes() -> None:
    """TCP_DEFER_ACCEPT: a connection that has sent nothing costs the server nothing for
    about a second; one whose request is there is taken and answered at once."""

    async def scenario() -> None:
        async with gated_tracker() as (_, gate, port, verdicts):
            _, silent = await asyncio.open_connection("127.0.0.1", port)
            started = time.monotonic()
            answer = await arrived_before_accept(port, [one_shot(1)])
            assert status_of(answer) == 200 and verdicts == [True]
            assert time.monotonic() - started < DEFER_ACCEPT * 0.8
            assert len(gate.admission) == 0  # the silent one is still the kernel's
            assert await settled(lambda: len(gate.admission) == 1, HANDED_OVER_WITHIN)
            assert time.monotonic() - started >= DEFER_ACCEPT * 0.8
            silent.close()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("sends", "answers", "pause"),
    [
        # Keep-alive: answered by the protocol from the bytes already read, and the
        # connection serves a second announce; the client closes.
        ([keep_alive(1), keep_alive(2) + one_shot(3)], 3, 0.1),
        # Two requests in the first read: in order, by the protocol.
        ([keep_alive(1) + one_shot(2)], 2, 0.0),
        # A head split over two reads (its second part comes after the accept's read).
        ([one_shot(1)[:40], one_shot(1)[40:]], 1, 0.35),
        # Not an announce.
        ([b"GET /scrape?info_hash=x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"], 1, 0.0),
    ],
)
def test_anything_else_goes_to_the_protocol_with_the_bytes_already_read(
    sends: list[bytes], answers: int, pause: float
) -> None:
    async def scenario() -> None:
        async with gated_tracker() as (tracker, gate, port, verdicts):
            answer = await arrived_before_accept(port, sends, pause=pause)
            assert answer.count(b"HTTP/1.1 200 OK") == answers
            assert verdicts == [False]
            assert await settled(lambda: not tracker.connections and len(gate.admission) == 0)

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("first", "status"),
    [
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40 + b"\r\n\r\n", 400),
        (b"POST /announce HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", 405),
        (one_shot(1).replace(b"Host: t\r\n", b""), 400),
        (one_shot(1).replace(b"info_hash=", b"info_hash=%zz"), 200),  # a tracker failure
    ],
)
def test_hostile_first_reads_get_the_protocols_errors(first: bytes, status: int) -> None:
    async def scenario() -> None:
        async with gated_tracker() as (tracker, gate, port, _):
            answer = await arrived_before_accept(port, [first])
            assert status_of(answer) == status
            if status == 200:
                assert b"failure reason" in body_of(answer)
            assert await settled(lambda: not tracker.connections and len(gate.admission) == 0)

    asyncio.run(scenario())


def test_a_silent_connection_is_closed_at_the_header_deadline() -> None:
    async def scenario() -> None:
        async with gated_tracker() as (_, gate, port, verdicts):
            reader, writer, started = await silent_until_handed_over(port, gate)
            assert await asyncio.wait_for(reader.read(), 5) == b""
            assert HEADER_TIMEOUT * 0.8 <= time.monotonic() - started <= HEADER_TIMEOUT * 3
            assert gate.header_timeouts == 1
            assert verdicts == []
            assert await settled(lambda: len(gate.admission) == 0)
            writer.close()

    asyncio.run(scenario())


def test_a_head_begun_late_is_closed_at_the_deadline_counted_from_the_accept() -> None:
    """Waiting for the first bytes and then for the rest of the head is one deadline, not
    two: a slow client holds its place no longer than a silent one."""

    async def scenario() -> None:
        async with gated_tracker() as (_, gate, port, verdicts):
            reader, writer, started = await silent_until_handed_over(port, gate)
            await asyncio.sleep(HEADER_TIMEOUT * 0.8)
            writer.write(b"GET /announce?")  # a head begun, never finished
            assert await asyncio.wait_for(reader.read(), 5) == b""
            # One deadline: about HEADER_TIMEOUT; two in a row: 1.8 of it or more.
            assert time.monotonic() - started < HEADER_TIMEOUT * 1.7
            assert gate.header_timeouts == 1
            assert verdicts == [False]
            writer.close()

    asyncio.run(scenario())


def test_closing_the_tracker_closes_connections_still_waiting() -> None:
    async def scenario() -> None:
        async with gated_tracker() as (tracker, gate, port, _):
            reader, writer, _ = await silent_until_handed_over(port, gate)
            await tracker.close()
            assert await asyncio.wait_for(reader.read(), 5) == b""
            assert len(gate.admission) == 0
            writer.close()

    asyncio.run(scenario())


def test_at_the_cap_the_protocol_refuses_as_before() -> None:
    async def scenario() -> None:
        async with gated_tracker(LeanHttpLimits(max_connections=1)) as (_, _, port, verdicts):
            held_r, held_w = await asyncio.open_connection("127.0.0.1", port)
            held_w.write(keep_alive(1))
            assert b" 200 " in await asyncio.wait_for(held_r.readuntil(b"\r\n\r\n"), 5)
            answer = await arrived_before_accept(port, [one_shot(2)])
            assert status_of(answer) == 503
            assert verdicts == [False, False]
            held_w.close()

    asyncio.run(scenario())


class Answers:
    """A starter whose answers come later (as the owner's, over the tracker relay)."""

    def __init__(self) -> None:
        self.waiting: list[asyncio.Future[bytes]] = []

    def __call__(self, query: bytes, remote: str, now: float) -> asyncio.Future[bytes]:
        self.waiting.append(asyncio.get_running_loop().create_future())
        return self.waiting[-1]


async def announced_and_waiting(
    tracker: LeanHttpTracker, port: int
) -> tuple[Answers, threading.Thread, list[bytes]]:
    """A client's one-shot announce, taken at once, its answer not yet come."""
    answers = Answers()
    tracker.start_announce = answers
    out: list[bytes] = []
    thread = threading.Thread(target=client, args=(port, [one_shot(1)], out))
    thread.start()
    assert await settled(lambda: len(answers.waiting) == 1)
    return answers, thread, out


async def joined(thread: threading.Thread) -> None:
    while thread.is_alive():
        await asyncio.sleep(0.01)
    thread.join()


@pytest.mark.parametrize(
    ("settle", "status"),
    [
        (lambda f: f.set_result(b"d8:intervali60ee"), 200),
        (lambda f: f.set_exception(AnswerUnavailable("owner restarting")), 503),
        (lambda f: f.set_exception(RuntimeError("bug")), 500),
        (lambda f: f.cancel(), 503),
    ],
)
def test_an_answer_that_comes_later_is_sent_then_the_connection_closed(
    settle: Callable[[asyncio.Future[bytes]], Any], status: int
) -> None:
    async def scenario() -> None:
        async with gated_tracker() as (tracker, gate, port, verdicts):
            answers, thread, out = await announced_and_waiting(tracker, port)
            assert verdicts == [True] and len(tracker.at_once) == 1
            settle(answers.waiting[0])
            await joined(thread)
            assert status_of(out[0]) == status
            assert not tracker.at_once
            assert await settled(lambda: len(gate.admission) == 0)

    asyncio.run(scenario())


def test_closing_the_tracker_closes_connections_whose_answer_is_on_its_way() -> None:
    async def scenario() -> None:
        async with gated_tracker() as (tracker, gate, port, _):
            answers, thread, out = await announced_and_waiting(tracker, port)
            await tracker.close()
            answers.waiting[0].set_result(b"d8:intervali60ee")  # too late: nothing is sent
            await joined(thread)
            assert out == [b""]
            assert len(gate.admission) == 0

    asyncio.run(scenario())


# The request-head parser's shortcut for `Connection: close` decides as the full parse.
_FIELDS = st.sampled_from(
    [
        b"Host: t",
        b"User-Agent: x",
        b"Connection: close",
        b"Connection: Close",
        b"Connection: close ",
        b"Connection:close",
        b"Connection: closed",
        b"Connection: keep-alive",
        b"Connection: close, TE",
        b"X-Forwarded-For: 10.0.0.1",
        b"Connection-Extra: close",
    ]
)


@given(st.sampled_from([b"0", b"1"]), st.lists(_FIELDS, max_size=5))
@example(b"1", [b"Host: t", b"Connection: close"])
@example(b"1", [b"Connection: Close", b"Host: t", b"User-Agent: x"])
@example(b"0", [b"Connection: close"])
@example(b"1", [b"Host: t", b"Connection: close", b"Connection: close"])
@example(b"1", [b"Host: t", b"Connection: closed"])
def test_the_connection_close_shortcut_decides_as_the_full_parse(
    minor: bytes, fields: list[bytes]
) -> None:
    head = b"\r\n".join([b"GET /announce?a=1 HTTP/1." + minor, *fields])
    try:
        expected = _parse_request_head(head)
    except HttpRequestError as error:
        with pytest.raises(HttpRequestError) as raised:
            parse_request_head(head)
        assert raised.value.status == error.status
        return
    assert parse_request_head(head) == expected


# --- the main listener's front: its routing decides what is answered at once ---------------


async def s3_stand_in(request: web.BaseRequest) -> web.Response:
    return web.Response(text=f"aiohttp {request.method} {request.path}")


@asynccontextmanager
async def gated_front() -> AsyncIterator[tuple[int, list[bool]]]:
    tracker, gate = await tracker_and_gate()
    fallback = web.Server(s3_stand_in)
    front = TrackerFront(tracker)
    make, phase = front(fallback, aiohttp_phase)
    at_once = front.at_once()
    verdicts: list[bool] = []

    def spied(sock: socket.socket, slot: Slot, first: bytes) -> bool:
        verdicts.append(at_once.take(sock, slot, first))
        return verdicts[-1]

    listener = await gate.start_listener(
        make, "127.0.0.1", 0, phase=phase, name="front", at_once=AtOnce(spied, at_once.max_bytes)
    )
    try:
        yield int(listener.sockets[0].getsockname()[1]), verdicts
    finally:
        listener.close()
        await front.close()
        await fallback.shutdown(1)


def closing_get(path: str, *headers: str) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: t", *headers, "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.mark.parametrize(
    ("path", "headers", "at_once", "answer"),
    [
        (target(1).replace("/announce?", "/_tracker/announce?"), (), True, b"d8:complete"),
        (target(2), (), True, b"d8:complete"),  # /announce with info_hash and peer_id
        ("/announce?prefix=a", (), False, b"aiohttp GET /announce"),  # the bucket
        (f"/b{target(3)}", (), False, b"aiohttp GET /b/announce"),  # an object
        (target(4), ("Origin: https://a.example",), False, b"aiohttp GET /announce"),
        ("/b/k", (), False, b"aiohttp GET /b/k"),
    ],
)
def test_the_front_answers_at_once_only_what_it_routes_to_the_tracker(
    path: str, headers: tuple[str, ...], at_once: bool, answer: bytes
) -> None:
    async def scenario() -> None:
        async with gated_front() as (port, verdicts):
            got = await arrived_before_accept(port, [closing_get(path, *headers)])
            assert status_of(got) == 200
            assert body_of(got).startswith(answer)
            assert verdicts == [at_once]

    asyncio.run(scenario())


def test_an_answer_larger_than_the_socket_takes_is_sent_whole_then_closed() -> None:
    async def scenario() -> None:
        async with gated_tracker() as (tracker, gate, _, _):
            ours, theirs = socket.socketpair()
            ours.setblocking(False)
            slot = gate.admit("10.0.0.1", 0.0, "10.0.0.1")
            assert isinstance(slot, Slot)
            tracker.at_once[ours] = slot
            answer = bytes(range(256)) * 16384  # 4 MiB: more than a socket buffer holds
            out: list[bytes] = []

            def read_all() -> None:
                data = b""
                while chunk := theirs.recv(65536):
                    data += chunk
                    time.sleep(0.001)  # a slow reader: the rest waits in our task
                out.append(data)

            thread = threading.Thread(target=read_all)
            thread.start()
            tracker._send_and_close(ours, answer)
            assert ours in tracker.at_once  # not all of it went at once
            await joined(thread)
            assert out == [answer]
            assert not tracker.at_once and ours.fileno() == -1
            assert len(gate.admission) == 0
            theirs.close()

    asyncio.run(scenario())
