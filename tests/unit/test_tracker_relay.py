"""The tracker relay between workers: its frames (sans-IO) and both ends on a Unix socket."""

from __future__ import annotations

import asyncio
import contextlib
import random
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote_from_bytes

import pytest
from fastbencode import bdecode  # type: ignore[attr-defined]

from s3torrent.tracker.http_lean import AnswerUnavailable
from s3torrent.tracker.protocol import AnnounceEvent, AnnounceRequest
from s3torrent.tracker.registry import MemoryRegistry, RegistryLimits, TorrentRef
from s3torrent.tracker.relay import (
    ANNOUNCE,
    MAX_REQUEST_FRAME,
    PARSED_ANNOUNCE,
    RELAY_BATCH,
    SCRAPE,
    FrameError,
    FrameReader,
    RelayServer,
    TrackerRelay,
    announce_client,
    decode_announce_fields,
    decode_answer,
    decode_request,
    encode_announce_fields,
    encode_answer,
    encode_request,
)
from s3torrent.tracker.service import TrackerService, TrackerSettings

HASH = bytes(range(40, 60))


def announce(peer: int, port: int) -> bytes:
    peer_id = b"-RL0001-" + peer.to_bytes(12, "big")
    return (
        f"info_hash={quote_from_bytes(HASH, safe='')}&peer_id={quote_from_bytes(peer_id, safe='')}"
        f"&port={port}&uploaded=0&downloaded=0&left=10&compact=0"
    ).encode()


def service(registry: MemoryRegistry | None = None) -> TrackerService:
    registry = registry or MemoryRegistry(
        RegistryLimits(rate_burst=1e9, rate_per_ip=1e9), random.Random(5)
    )
    return TrackerService(registry, TrackerSettings(udp_secret=b"s" * 32))


async def registered_service() -> TrackerService:
    """The owner's: HASH is registered. A worker's own service (`service()`) knows nothing,
    so an answer that names HASH's peers can only have come from the owner."""
    registry = MemoryRegistry(RegistryLimits(rate_burst=1e9, rate_per_ip=1e9), random.Random(5))
    await registry.register(HASH, TorrentRef("b", "k", "v"))
    return service(registry)


# --- frames --------------------------------------------------------------------------------


def test_frames_survive_any_split_of_the_stream() -> None:
    stream = encode_request(7, ANNOUNCE, "192.0.2.1", b"a=1&b=2") + encode_request(
        8, SCRAPE, "", b"info_hash=x"
    )
    reader = FrameReader(MAX_REQUEST_FRAME)
    got = [decode_request(p) for i in range(len(stream)) for p in reader.feed(stream[i : i + 1])]
    assert got == [(7, ANNOUNCE, "192.0.2.1", b"a=1&b=2"), (8, SCRAPE, "", b"info_hash=x")]
    answers = encode_answer(7, b"d8:intervali1800ee") + encode_answer(9, None)
    reader = FrameReader(1024)
    assert [decode_answer(p) for p in reader.feed(answers)] == [
        (7, b"d8:intervali1800ee"),
        (9, None),
    ]


@pytest.mark.parametrize(
    "stream",
    [
        struct.pack(">I", MAX_REQUEST_FRAME + 1),  # announces more than one head can hold
        struct.pack(">I", 2**32 - 1) + b"x" * 10,
    ],
)
def test_an_oversized_frame_is_refused_before_it_is_read(stream: bytes) -> None:
    with pytest.raises(FrameError):
        list(FrameReader(MAX_REQUEST_FRAME).feed(stream))


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\x00\x00\x00\x01",  # no kind
        struct.pack(">IBB", 1, 9, 0),  # unknown kind
        struct.pack(">IBB", 1, ANNOUNCE, 20) + b"short",  # address longer than the frame
        struct.pack(">IBB", 1, ANNOUNCE, 2) + b"\xff\xfe",  # not ASCII
    ],
)
def test_malformed_requests_are_refused(payload: bytes) -> None:
    with pytest.raises(FrameError):
        decode_request(payload)


def parsed(**fields: object) -> AnnounceRequest:
    base: dict[str, object] = {
        "info_hash": HASH,
        "peer_id": b"-RL0001-" + bytes(12),
        "ip": "2001:db8::7",
        "port": 65535,
        "uploaded": 2**63 - 1,
        "downloaded": 0,
        "left": 12345,
        "event": AnnounceEvent.STOPPED,
        "numwant": 200,
        "compact": False,
        "no_peer_id": True,
        "key": b"k\x00\xff",
        "trackerid": None,
        "warnings": ("numwant capped at 200", "ip parameter ignored; peers see the address"),
    }
    return AnnounceRequest(**{**base, **fields})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "req",
    [
        parsed(),
        parsed(key=None, warnings=(), event=AnnounceEvent.NONE, compact=True, ip="10.0.0.1"),
        parsed(key=b"", event=AnnounceEvent.PAUSED, no_peer_id=False, left=0, port=1),
        parsed(warnings=("über",)),
        # An `ip` the client named (trust_ip_param): where it came from travels too.
        parsed(ip="192.0.2.7", source="10.0.0.1"),
        parsed(ip="10.0.0.1", source="ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"),
    ],
)
def test_a_parsed_announce_travels_whole(req: AnnounceRequest) -> None:
    client = announce_client(req)
    frame = encode_request(3, PARSED_ANNOUNCE, client, encode_announce_fields(req))
    (payload,) = FrameReader(MAX_REQUEST_FRAME).feed(frame)
    request_id, kind, sent, fields = decode_request(payload)
    assert (request_id, kind, sent) == (3, PARSED_ANNOUNCE, client)
    decoded = decode_announce_fields(fields, sent)
    assert decoded == req and type(decoded) is AnnounceRequest
    assert decoded.source_ip == (req.source or req.ip)
    assert type(decoded.compact) is bool and type(decoded.no_peer_id) is bool


def _fields(**changes: object) -> bytes:
    """Announce fields with raw values the encoder would never write."""
    values: dict[str, object] = {
        "info_hash": HASH,
        "peer_id": bytes(20),
        "port": 6881,
        "uploaded": 0,
        "downloaded": 0,
        "left": 0,
        "event": 0,
        "numwant": 50,
        "compact": 1,
        "no_peer_id": 0,
        "key_length": 0xFFFF,
    }
    values.update(changes)
    return struct.pack(">20s20sHQQQBIBBH", *values.values())


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        _fields()[:-1],  # cut short
        _fields(event=5),  # no such event
        _fields(compact=2),
        _fields(no_peer_id=7),
        _fields(port=0),
        _fields(left=2**63),  # beyond what a parsed announce holds
        _fields(uploaded=2**63),
        _fields(downloaded=2**64 - 1),
        _fields(key_length=4) + b"ab",  # a key longer than the frame
        _fields() + b"\xff\xfe",  # warnings that are not UTF-8
    ],
)
def test_malformed_announce_fields_are_refused(payload: bytes) -> None:
    with pytest.raises(FrameError):
        decode_announce_fields(payload, "10.0.0.1")


@pytest.mark.parametrize("payload", [b"", b"\x00\x00\x00\x01", struct.pack(">IB", 1, 7)])
def test_malformed_answers_are_refused(payload: bytes) -> None:
    with pytest.raises(FrameError):
        decode_answer(payload)


# --- both ends -----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def pair(tmp_path: Path) -> AsyncIterator[tuple[RelayServer, TrackerRelay]]:
    """The owner's end (HASH registered) and a worker's, closed after."""
    path = tmp_path / "tracker.sock"
    owner = RelayServer(await registered_service(), eager=True)
    await owner.start(path)
    relay = TrackerRelay(path, service())
    try:
        yield owner, relay
    finally:
        await relay.close()
        await owner.close()


def test_relayed_announces_share_the_owners_swarm(tmp_path: Path) -> None:
    async def main() -> None:
        async with pair(tmp_path) as (owner, relay):
            assert oct(owner._path.stat().st_mode & 0o777) == "0o600"  # type: ignore[union-attr]
            first = bdecode(await relay.handle_http_announce(announce(1, 7001), "10.0.0.1", 0))
            assert first[b"peers"] == []
            # Many at once share the stream and are answered by id.
            bodies = await asyncio.gather(
                *(
                    relay.handle_http_announce(announce(n, 7000 + n), f"10.0.0.{n}", 0)
                    for n in range(2, 40)
                )
            )
            for body in bodies:
                assert b"failure reason" not in body
            last = bdecode(await relay.handle_http_announce(announce(99, 7099), "10.0.0.99", 0))
            listed = {(p[b"ip"], p[b"port"]) for p in last[b"peers"]}
            assert listed == {(f"10.0.0.{n}".encode(), 7000 + n) for n in range(1, 40)}
            scrape = bdecode(
                await relay.handle_http_scrape(
                    f"info_hash={quote_from_bytes(HASH)}".encode(), "10.0.0.1", 0
                )
            )
            assert scrape[b"files"][HASH][b"incomplete"] == 40
            assert relay.relayed == 41
            # One that does not parse is refused here, with the owner's words, unrelayed.
            malformed = await relay.handle_http_announce(b"info_hash=x", "10.0.0.1", 0)
            assert bdecode(malformed)[b"failure reason"].startswith(b"info_hash must be 20 bytes")
            assert relay.relayed == 41
            # One the owner refuses (a torrent it does not serve) is its refusal, as a body.
            unknown = announce(5, 7005).replace(
                quote_from_bytes(HASH, safe="").encode(), b"%00" * 20
            )
            refused = bdecode(await relay.handle_http_announce(unknown, "10.0.0.5", 0))
            assert refused == {b"failure reason": b"unregistered torrent"}
            assert relay.relayed == 42
        assert not (tmp_path / "tracker.sock").exists()

    asyncio.run(main())


def test_a_turns_announces_go_to_the_owner_a_few_frames_at_a_time(tmp_path: Path) -> None:
    """The owner starts on the first announces of a wave while the worker parses the rest:
    frames go out RELAY_BATCH at a time, and what is left at the end of the loop turn."""

    async def main() -> None:
        async with pair(tmp_path) as (_, relay):
            await relay.handle_http_announce(announce(1, 7001), "10.0.0.1", 0)  # connected
            end = relay._end
            assert end is not None and end.transport is not None
            transport = end.transport
            writes: list[int] = []
            plain_write = transport.write

            def counting(data: bytes | bytearray | memoryview) -> None:
                writes.append(len(FrameReader(MAX_REQUEST_FRAME).feed(bytes(data))))
                plain_write(data)

            transport.write = counting  # type: ignore[method-assign]
            count = 2 * RELAY_BATCH + 2
            started = [
                relay.start_http_announce(announce(n, 7000 + n), f"10.0.1.{n}", 0)
                for n in range(2, 2 + count)
            ]
            assert writes == [RELAY_BATCH, RELAY_BATCH]  # in the turn, as they were queued
            bodies = [await s if isinstance(s, asyncio.Future) else s for s in started]
            assert writes == [RELAY_BATCH, RELAY_BATCH, 2]  # the rest when the turn ended
            assert all(b"failure reason" not in body for body in bodies)
            assert relay.relayed == 1 + count

    asyncio.run(main())


def test_an_owner_gone_is_unavailable_then_found_again(tmp_path: Path) -> None:
    async def main() -> None:
        path = tmp_path / "tracker.sock"
        owner = RelayServer(await registered_service(), eager=True)
        await owner.start(path)
        relay = TrackerRelay(path, service())
        await relay.handle_http_announce(announce(1, 7001), "10.0.0.1", 0)
        await owner.close()
        with pytest.raises(AnswerUnavailable):
            await relay.handle_http_announce(announce(2, 7002), "10.0.0.2", 0)
        # Until the owner is back, clients are told to come back, not queued.
        with pytest.raises(AnswerUnavailable):
            await relay.handle_http_announce(announce(2, 7002), "10.0.0.2", 0)
        owner = RelayServer(await registered_service(), eager=True)
        await owner.start(tmp_path / "tracker.sock")
        await asyncio.sleep(0.6)  # past the pause after a failed connect
        try:
            body = await relay.handle_http_announce(announce(2, 7002), "10.0.0.2", 0)
            assert b"failure reason" not in body
        finally:
            await relay.close()
            await owner.close()

    asyncio.run(main())


async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """An owner that reads every request and answers none."""
    while await reader.read(65536):
        pass


def test_an_owner_that_does_not_answer_costs_a_bounded_wait_and_queue(tmp_path: Path) -> None:
    async def main() -> None:
        path = tmp_path / "tracker.sock"
        silent = await asyncio.start_unix_server(swallow, str(path))
        relay = TrackerRelay(path, service(), timeout=0.3, max_in_flight=2)
        try:
            waiting = [
                asyncio.ensure_future(relay.handle_http_announce(announce(n, 7000), "10.0.0.1", 0))
                for n in range(2)
            ]
            await asyncio.sleep(0.05)
            # The queue is full: the next client hears so at once.
            with pytest.raises(AnswerUnavailable):
                await relay.handle_http_announce(announce(3, 7003), "10.0.0.3", 0)
            for task in waiting:  # and the waiting ones after the timeout
                with pytest.raises(AnswerUnavailable):
                    await task
        finally:
            await relay.close()
            silent.close()

    asyncio.run(main())


def test_a_stream_that_breaks_the_format_is_closed_and_others_go_on(tmp_path: Path) -> None:
    async def main() -> None:
        async with pair(tmp_path) as (_, relay):
            reader, writer = await asyncio.open_unix_connection(str(tmp_path / "tracker.sock"))
            writer.write(struct.pack(">I", 2**31) + b"x" * 100)
            assert await asyncio.wait_for(reader.read(), 5) == b""  # closed, nothing answered
            writer.close()
            reader, writer = await asyncio.open_unix_connection(str(tmp_path / "tracker.sock"))
            writer.write(struct.pack(">I", 6) + struct.pack(">IBB", 1, 9, 0))
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
            body = await relay.handle_http_announce(announce(1, 7001), "10.0.0.1", 0)
            assert b"failure reason" not in body

    asyncio.run(main())


def test_a_lean_listener_through_the_relay_answers_in_order_or_503(tmp_path: Path) -> None:
    """The worker's lean listener: pipelined announces are answered in order from the
    owner's registry; with the owner silent and the queue full, a client hears 503 at
    once and the waiting ones after the timeout, never a hang."""
    from s3torrent.tracker.http_lean import LeanHttpTracker

    async def exchange(port: int, heads: list[bytes], count: int) -> list[bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"".join(heads))
        answers = []
        for _ in range(count):
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            answers.append(head.split(b"\r\n")[0] + b" " + await reader.readexactly(length))
        writer.close()
        return answers

    def get(query: bytes) -> bytes:
        return b"GET /announce?" + query + b" HTTP/1.1\r\nHost: x\r\n\r\n"

    async def main() -> None:
        async with pair(tmp_path) as (_, relay):
            lean = LeanHttpTracker(relay, eager=False)
            server = await lean.start("127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            heads = [get(announce(n, 7100 + n)) for n in range(1, 6)]
            answers = await exchange(port, heads, 5)
            for n, answer in enumerate(answers, start=1):
                status, _, body = answer.partition(b" 200 OK ")
                assert status == b"HTTP/1.1", answer
                listed = {p[b"port"] for p in bdecode(body)[b"peers"]}
                assert listed == set(range(7101, 7100 + n))  # those before, in order
            await lean.close()

        path = tmp_path / "silent.sock"
        silent = await asyncio.start_unix_server(swallow, str(path))
        relay = TrackerRelay(path, service(), timeout=0.5, max_in_flight=1)
        lean = LeanHttpTracker(relay, eager=False)
        server = await lean.start("127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            # Connect the relay, and fill its one place.
            first = asyncio.ensure_future(exchange(port, [get(announce(1, 7001))], 1))
            await asyncio.sleep(0.2)
            started = asyncio.get_running_loop().time()
            (refused,) = await exchange(port, [get(announce(2, 7002))], 1)
            assert refused.startswith(b"HTTP/1.1 503")
            assert asyncio.get_running_loop().time() - started < 0.25
            (late,) = await first
            assert late.startswith(b"HTTP/1.1 503")
        finally:
            await lean.close()
            await relay.close()
            silent.close()

    asyncio.run(main())
