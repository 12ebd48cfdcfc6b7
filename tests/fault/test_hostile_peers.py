"""Hostile and heavy peers against the origin seeder: each broken connection closes alone,
memory stays bounded (RSS from /proc), and the server keeps serving everybody else."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import socket
import struct
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest
from fastbencode import bencode  # type: ignore[attr-defined]

from s3torrent.peer import wire
from tests.conftest import LiveServer, make_client, start_server
from tests.seeding import RawPeer, fetch_torrent, info_hash_v1, rss_kib, seeder_stats

pytestmark = pytest.mark.timeout(180)

SIZE = 1024 * 1024 + 123  # 16 KiB pieces: 65 of them
PIECE = 16 * 1024
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = start_server(
        tmp_path_factory.mktemp("hostile"),
        env={
            # Every request is served (no offload), so raw peers can ask for anything.
            "S3TORRENT_SEEDER__MODE": "fastest",
            "S3TORRENT_SEEDER__MAX_PER_IP": "400",
            # Hundreds of peers from one loopback address: lift the process-wide cap too.
            "S3TORRENT_LIMITS__MAX_CONNECTIONS_PER_IP": "1000",
            "S3TORRENT_SEEDER__HANDSHAKE_TIMEOUT": "3",
            # No input bound (peer/input_allowance.py closes these floods early): the
            # bounds behind it must hold on their own (test_audit_peer_floods.py has it on).
            "S3TORRENT_SEEDER__INPUT_RATE": "0",
        },
    )
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def published(live: LiveServer) -> tuple[bytes, bytes]:
    s3 = make_client(live.endpoint)
    s3.create_bucket(Bucket="hostile")
    data = os.urandom(SIZE)
    s3.put_object(Bucket="hostile", Key="target.bin", Body=data, ACL="public-read")
    return data, info_hash_v1(fetch_torrent(live.endpoint, "hostile", "target.bin"))


def healthy(live: LiveServer) -> bool:
    with urllib.request.urlopen(live.endpoint + "/_health", timeout=5) as r:
        return bool(r.status == 200)


def unchoked_peer(live: LiveServer, info_hash: bytes) -> RawPeer:
    peer = RawPeer(live.peer_port)
    assert peer.handshake(info_hash)
    peer.send(wire.Interested())
    peer.read_until(wire.Unchoke.MSG_ID)
    return peer


def download_block(live: LiveServer, published: tuple[bytes, bytes], index: int = 3) -> None:
    """An ordinary peer still gets correct bytes."""
    data, info_hash = published
    peer = unchoked_peer(live, info_hash)
    try:
        peer.send(wire.Request(index, 0, PIECE))
        payload = peer.read_until(wire.Piece.MSG_ID)
        index_, begin = struct.unpack(">II", payload[:8])
        assert (index_, begin) == (index, 0)
        assert payload[8:] == data[index * PIECE : index * PIECE + PIECE]
    finally:
        peer.close()


def test_unknown_info_hash_is_dropped_at_handshake(live: LiveServer) -> None:
    peer = RawPeer(live.peer_port)
    try:
        assert not peer.handshake(os.urandom(20))
    finally:
        peer.close()


def test_a_silent_connection_times_out_at_the_handshake(live: LiveServer) -> None:
    peer = RawPeer(live.peer_port)
    try:
        assert peer.closed_by_peer(timeout=8)
    finally:
        peer.close()


@pytest.mark.parametrize(
    "attack",
    [
        b"\x00\x00\x00\x05\x63garbage!" * 8,  # unknown message id, then noise
        b"\xff\xff\xff\xff",  # a 2^32-1 length prefix
        wire.encode_message(wire.Request(0, PIECE - 10, PIECE)),  # runs past its piece
        wire.encode_message(wire.Request(10_000, 0, PIECE)),  # no such piece
        wire.encode_message(wire.Request(0, 0, 4 * MiB)),  # over the request size cap
        wire.encode_message(wire.Piece(0, 0, 0)) + bytes(16),  # a seed requests nothing
    ],
    ids=["garbage", "huge-length", "past-piece", "bad-index", "huge-request", "piece"],
)
def test_a_protocol_violation_closes_that_connection_only(
    live: LiveServer, published: tuple[bytes, bytes], attack: bytes
) -> None:
    bystander = unchoked_peer(live, published[1])
    attacker = RawPeer(live.peer_port)
    try:
        assert attacker.handshake(published[1])
        attacker.send_raw(attack)
        assert attacker.closed_by_peer(timeout=5)
        bystander.send(wire.Request(1, 0, PIECE))
        assert bystander.read_until(wire.Piece.MSG_ID)[8:] == published[0][PIECE : 2 * PIECE]
    finally:
        attacker.close()
        bystander.close()
    assert healthy(live)


@pytest.mark.parametrize(
    ("msg_id", "size"),
    [
        (wire.Bitfield.MSG_ID, MiB - 1),  # a re-advertised bitfield far above the torrent's 9 bytes
        (wire.Extended.MSG_ID, 60 * 1024),  # no extension message is that large
    ],
    ids=["readvertised-bitfield", "extension"],
)
def test_an_oversized_message_closes_before_its_body_is_buffered(
    live: LiveServer, published: tuple[bytes, bytes], msg_id: int, size: int
) -> None:
    bystander = unchoked_peer(live, published[1])
    attacker = RawPeer(live.peer_port)
    try:
        assert attacker.handshake(published[1])
        attacker.send(wire.Bitfield(bytes(9)), wire.Interested())  # 65 pieces: 9 bytes
        # The header and most of the body, never its end: a seeder that waits for
        # the whole message holds it all and keeps the connection open.
        with contextlib.suppress(ConnectionError):
            attacker.send_raw(struct.pack(">IB", 1 + size, msg_id) + bytes(size - 1024))
        assert attacker.closed_by_peer(timeout=5)
        bystander.send(wire.Request(2, 0, PIECE))
        assert bystander.read_until(wire.Piece.MSG_ID)[8:] == published[0][2 * PIECE : 3 * PIECE]
    finally:
        attacker.close()
        bystander.close()


def test_ten_thousand_pipelined_requests_each_get_one_answer(
    live: LiveServer, published: tuple[bytes, bytes]
) -> None:
    data, info_hash = published
    rss_before = rss_kib(live.proc.pid)  # type: ignore[union-attr]
    peer = unchoked_peer(live, info_hash)
    # Distinct one-byte blocks: the seeder may serve 250 at a time and rejects the rest.
    blocks = [(i % 64, i // 64, 1) for i in range(10_000)]
    try:
        peer.send_raw(b"".join(wire.encode_message(wire.Request(*b)) for b in blocks))
        served = rejected = 0
        peer.sock.settimeout(30)
        while served + rejected < len(blocks):
            msg_id, payload = peer.read_message()
            if msg_id == wire.Piece.MSG_ID:
                index, begin = struct.unpack(">II", payload[:8])
                assert payload[8:] == data[index * PIECE + begin : index * PIECE + begin + 1]
                served += 1
            elif msg_id == wire.RejectRequest.MSG_ID:
                rejected += 1
        assert served >= 250
    finally:
        peer.close()
    assert rss_kib(live.proc.pid) - rss_before < 40 * 1024  # type: ignore[union-attr]
    download_block(live, published)


def test_a_plain_peer_pipelining_past_reqq_gets_every_block(
    live: LiveServer, published: tuple[bytes, bytes]
) -> None:
    """rtorrent (no Fast extension) pipelines past our advertised reqq of 250."""
    data, info_hash = published
    peer = RawPeer(live.peer_port)
    blocks = [(i % 64, i // 64, 1) for i in range(400)]
    try:
        assert peer.handshake(info_hash, fast=False)
        peer.send(wire.Interested())
        peer.read_until(wire.Unchoke.MSG_ID)
        peer.send_raw(b"".join(wire.encode_message(wire.Request(*b)) for b in blocks))
        peer.sock.settimeout(30)
        served = set()
        while len(served) < len(blocks):
            payload = peer.read_until(wire.Piece.MSG_ID)
            index, begin = struct.unpack(">II", payload[:8])
            assert payload[8:] == data[index * PIECE + begin : index * PIECE + begin + 1]
            served.add((index, begin, 1))
        assert served == set(blocks)
    finally:
        peer.close()


def test_a_slowloris_that_never_reads_stays_bounded(
    live: LiveServer, published: tuple[bytes, bytes]
) -> None:
    info_hash = published[1]
    rss_before = rss_kib(live.proc.pid)  # type: ignore[union-attr]
    loris = socket.create_connection(("127.0.0.1", live.peer_port))
    loris.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    hs = wire.Handshake.build(info_hash, os.urandom(20), fast=True, extensions=True, v2=False)
    ext = bencode({b"m": {b"ut_metadata": 1}})
    metadata_request = wire.Extended(wire.UT_METADATA_ID, bencode({b"msg_type": 0, b"piece": 0}))
    hash_request = wire.HashRequest(bytes(32), 0, 0, 512, 0)
    burst = b"".join(
        [wire.encode_message(wire.Request(i % 64, 0, PIECE)) for i in range(64)]
        + [wire.encode_message(metadata_request)] * 64
        + [wire.encode_message(hash_request)] * 16
    )
    loris.sendall(hs.encode() + wire.encode_message(wire.Extended(0, ext)))
    loris.sendall(wire.encode_message(wire.Interested()))
    loris.settimeout(0.2)
    sent = 0
    deadline = time.monotonic() + 6
    try:
        while time.monotonic() < deadline:
            # A timeout means the seeder stopped reading us: exactly what it should do.
            with contextlib.suppress(TimeoutError, BlockingIOError):
                sent += loris.send(burst)
        # It stopped reading long before we stopped writing.
        assert sent < 64 * MiB
        growth = rss_kib(live.proc.pid) - rss_before  # type: ignore[union-attr]
        assert growth < 40 * 1024, f"RSS grew by {growth} KiB"
        download_block(live, published)
        assert healthy(live)
    finally:
        loris.close()


def test_a_peer_cancelling_and_asking_again_while_never_reading_stays_bounded(
    live: LiveServer, published: tuple[bytes, bytes]
) -> None:
    """A plain peer (no Fast extension, so a cancel costs it no reject to read) that never
    reads, then cancels one pending block and asks for it again, over and over: each
    request went onto the link's queue of requests to serve, and the queue's clean-up
    kept every copy of a block still pending, so the queue (and the cost of each clean-up)
    grew with the bytes sent."""
    info_hash = published[1]
    rss_before = rss_kib(live.proc.pid)  # type: ignore[union-attr]
    loris = socket.create_connection(("127.0.0.1", live.peer_port))
    loris.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        hs = wire.Handshake.build(info_hash, os.urandom(20), fast=False, extensions=False, v2=False)
        loris.sendall(hs.encode() + wire.encode_message(wire.Interested()))
        loris.settimeout(10)
        seen = b""
        while wire.encode_message(wire.Unchoke()) not in seen:
            chunk = loris.recv(4096)
            assert chunk, "closed before the unchoke"
            seen = seen[-64:] + chunk
        # From here on nothing is read: fill the seeder's socket with whole pieces.
        fill = b"".join(wire.encode_message(wire.Request(i, 0, PIECE)) for i in range(64))
        block = wire.Request(64, 5, 100)
        # 30 pairs and a keep-alive: 1,024 bytes, so the block is pending at every cut.
        pair = wire.encode_message(wire.Cancel(64, 5, 100)) + wire.encode_message(block)
        storm = (pair * 30 + wire.encode_message(wire.KeepAlive())) * 64
        loris.settimeout(0.2)
        for _ in range(8):
            with contextlib.suppress(TimeoutError, BlockingIOError):
                loris.sendall(fill)
            time.sleep(0.25)  # served meanwhile, so the same blocks may be asked again
        loris.sendall(wire.encode_message(block))  # behind the blocks the socket cannot take
        sent = 0
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError, BlockingIOError):
                sent += loris.send(storm)
        # Before: the seeder read about 2 MB in those seconds, its loop busy cleaning up.
        assert sent > 8 * MiB
        growth = rss_kib(live.proc.pid) - rss_before  # type: ignore[union-attr]
        assert growth < 40 * 1024, f"RSS grew by {growth} KiB after {sent} bytes"
        started = time.monotonic()
        download_block(live, published)  # before: seconds, behind the clean-ups
        assert time.monotonic() - started < 2
        assert healthy(live)
    finally:
        loris.close()


def test_repeated_have_all_costs_no_walk_over_every_piece(
    live: LiveServer, published: tuple[bytes, bytes]
) -> None:
    """A late HAVE ALL (5 bytes) was answered with a walk over every piece of the torrent
    to find the new ones, even when the peer had them all already: on 2,048 pieces, each
    64 KiB read of them held the seeder's loop for seconds."""
    s3 = make_client(live.endpoint)
    s3.put_object(Bucket="hostile", Key="many.bin", Body=os.urandom(32 * MiB), ACL="public-read")
    many = info_hash_v1(fetch_torrent(live.endpoint, "hostile", "many.bin"))  # 2,048 pieces
    attacker = RawPeer(live.peer_port)
    try:
        while not attacker.handshake(many):  # a new object may still be on its way to seeding
            attacker.close()
            time.sleep(0.5)
            attacker = RawPeer(live.peer_port)
        have_all = wire.encode_message(wire.HaveAll())
        attacker.send_raw(have_all)
        burst = have_all * (64 * 1024 // len(have_all))
        attacker.sock.settimeout(0.2)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError, BlockingIOError):
                attacker.sock.send(burst)
        started = time.monotonic()
        download_block(live, published)  # before: many seconds behind the walks
        assert time.monotonic() - started < 2
    finally:
        attacker.close()


# ---------------------------------------------------------------------- many peers


async def _peer_loop(
    port: int, info_hash: bytes, data: bytes, until: float, counts: list[int], rng: random.Random
) -> None:
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
    try:
        hs = wire.Handshake.build(info_hash, os.urandom(20), fast=True, extensions=False, v2=False)
        writer.write(hs.encode() + wire.encode_message(wire.Interested()))
        await asyncio.wait_for(reader.readexactly(wire.HANDSHAKE_LENGTH), 10)
        unchoked = False
        outstanding = 0
        pieces = (len(data) + PIECE - 1) // PIECE
        while time.monotonic() < until:
            if unchoked and outstanding < 4:
                index = rng.randrange(pieces - 1)
                writer.write(wire.encode_message(wire.Request(index, 0, PIECE)))
                outstanding += 1
                continue
            header = await asyncio.wait_for(reader.readexactly(4), 10)
            (size,) = struct.unpack(">I", header)
            body = await asyncio.wait_for(reader.readexactly(size), 10) if size else b""
            if not body:
                continue
            if body[0] == wire.Unchoke.MSG_ID:
                unchoked = True
            elif body[0] == wire.Choke.MSG_ID:
                unchoked = False
            elif body[0] == wire.Piece.MSG_ID:
                index, begin = struct.unpack(">II", body[1:9])
                start = index * PIECE + begin
                if body[9:] != data[start : start + len(body) - 9]:
                    raise AssertionError("wrong bytes")
                outstanding -= 1
                counts[0] += 1
            elif body[0] == wire.RejectRequest.MSG_ID:
                outstanding -= 1
    finally:
        writer.close()


def _s3_traffic(live: LiveServer, until: float, errors: list[str], ops: list[int]) -> None:
    s3 = make_client(live.endpoint)
    s3.create_bucket(Bucket="alongside")
    body = os.urandom(64 * 1024)
    i = 0
    while time.monotonic() < until:
        try:
            s3.put_object(Bucket="alongside", Key=f"k{i % 50}", Body=body)
            got = s3.get_object(Bucket="alongside", Key=f"k{i % 50}")["Body"].read()
            if hashlib.sha256(got).digest() != hashlib.sha256(body).digest():
                errors.append("S3 GET returned wrong bytes")
            ops[0] += 2
        except Exception as exc:  # counted, asserted below
            errors.append(repr(exc))
        i += 1


def test_two_hundred_peers_alongside_s3_traffic(
    live: LiveServer, published: tuple[bytes, bytes]
) -> None:
    # The issue asks for 60 s; 20 s keeps the suite inside its CI budget.
    duration = 20.0
    data, info_hash = published
    rss_before = rss_kib(live.proc.pid)  # type: ignore[union-attr]
    until = time.monotonic() + duration
    errors: list[str] = []
    ops = [0]
    s3_thread = threading.Thread(target=_s3_traffic, args=(live, until, errors, ops))
    s3_thread.start()
    counts = [0]

    async def swarm() -> list[BaseException | None]:
        rng = random.Random(7)
        tasks = [
            _peer_loop(live.peer_port, info_hash, data, until, counts, random.Random(rng.random()))
            for _ in range(200)
        ]
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(swarm())
    s3_thread.join(30)
    failures = [r for r in results if isinstance(r, BaseException)]
    assert not failures, failures[:3]
    assert not errors, errors[:3]
    assert ops[0] > 20
    assert counts[0] > 200  # every peer got bytes, and the right ones
    growth = rss_kib(live.proc.pid) - rss_before  # type: ignore[union-attr]
    assert growth < 80 * 1024, f"RSS grew by {growth} KiB"
    stats = seeder_stats(live.endpoint)
    assert stats["connections"] <= 2  # everybody left; nothing leaked
    assert healthy(live)
