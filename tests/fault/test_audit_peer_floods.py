"""Hostile peers against the origin seeder, the cases tests/fault/test_hostile_peers.py does
not cover: each closes that peer promptly or is ignored harmlessly, memory stays bounded,
and a real libtorrent peer downloading meanwhile keeps its speed."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import select
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastbencode import bencode  # type: ignore[attr-defined]

from s3torrent.peer import wire
from tests.conftest import LiveServer, make_client, start_server
from tests.seeding import (
    RawPeer,
    fetch_torrent,
    info_hash_v1,
    lt_download,
    rss_kib,
    seeder_stats,
    sha256,
    without_web_seed,
)

pytestmark = pytest.mark.timeout(240)

PIECE = 16 * 1024
SIZE = 64 * PIECE + 123  # 65 pieces of 16 KiB
MiB = 1024 * 1024
MAX_PER_IP = 8


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = start_server(
        tmp_path_factory.mktemp("hostile-audit"),
        env={
            "S3TORRENT_SEEDER__MODE": "fastest",  # every request served: raw peers ask freely
            "S3TORRENT_SEEDER__MAX_PER_IP": str(MAX_PER_IP),
            "S3TORRENT_SEEDER__HANDSHAKE_TIMEOUT": "3",
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


@contextlib.contextmanager
def peer(live: LiveServer) -> Iterator[RawPeer]:
    p = RawPeer(live.peer_port)
    try:
        yield p
    finally:
        p.close()


def unchoked(p: RawPeer, info_hash: bytes, *, fast: bool = True) -> None:
    assert p.handshake(info_hash, fast=fast)
    p.send(wire.Interested())
    p.read_until(wire.Unchoke.MSG_ID)


def block_ok(live: LiveServer, published: tuple[bytes, bytes], index: int = 3) -> None:
    """A bystander still gets correct bytes, promptly."""
    data, info_hash = published
    with peer(live) as p:
        unchoked(p, info_hash)
        p.send(wire.Request(index, 0, PIECE))
        payload = p.read_until(wire.Piece.MSG_ID)
        assert payload[8:] == data[index * PIECE : index * PIECE + PIECE]


# ------------------------------------------------------------------ closed promptly


def test_a_revoked_info_hash_is_refused_at_the_handshake(
    live: LiveServer, published: tuple[bytes, bytes]
) -> None:
    s3 = make_client(live.endpoint)
    s3.put_object(Bucket="hostile", Key="revoked.bin", Body=os.urandom(SIZE), ACL="public-read")
    ih = info_hash_v1(fetch_torrent(live.endpoint, "hostile", "revoked.bin"))
    with peer(live) as p:
        assert p.handshake(ih)  # published: served
    s3.put_object_acl(Bucket="hostile", Key="revoked.bin", ACL="private")
    deadline = time.monotonic() + 5
    while True:
        with peer(live) as p:
            if not p.handshake(ih):
                break
        assert time.monotonic() < deadline, "a revoked torrent is still served"
        time.sleep(0.1)


@pytest.mark.parametrize(
    "attack",
    [
        wire.encode_message(wire.Bitfield(bytes(8))),  # 65 pieces need 9 bytes
        wire.encode_message(wire.Bitfield(bytes(10))),
        wire.encode_message(wire.Bitfield(bytes(8) + b"\x7f")),  # spare bits set
        wire.encode_message(wire.Request(0, 0, 0)),
        wire.encode_message(wire.Request(0, 0, MiB)),
        wire.encode_message(wire.Request(64, 0, PIECE)),  # the last piece is 123 bytes
        wire.encode_message(wire.Have(2**32 - 1)),
        wire.encode_message(wire.Have(65)),
        b"\x80\x00\x00\x00",  # a 2^31 length prefix, nothing after it
        b"\x80\x00\x00\x00" + bytes(4096),
        wire.encode_message(wire.Extended(0, b"d1:m" + b"l" * 8000 + b"e" * 8000 + b"e")),
        wire.encode_message(wire.Extended(0, b"d1:mi1ee")),  # `m` not a dictionary
        wire.encode_message(wire.Extended(0, b"not bencode")),
    ],
    ids=[
        "short-bitfield",
        "long-bitfield",
        "spare-bits",
        "zero-length-request",
        "one-mib-request",
        "past-last-piece",
        "have-2^32-1",
        "have-past-end",
        "length-2^31",
        "length-2^31-body",
        "deep-extension-handshake",
        "bad-m",
        "garbage-extension",
    ],
)
def test_a_broken_message_closes_that_peer_promptly(
    live: LiveServer, published: tuple[bytes, bytes], attack: bytes
) -> None:
    with peer(live) as bystander, peer(live) as attacker:
        unchoked(bystander, published[1])
        assert attacker.handshake(published[1])
        with contextlib.suppress(ConnectionError):
            attacker.send_raw(attack)
        assert attacker.closed_by_peer(timeout=3)
        bystander.send(wire.Request(1, 0, PIECE))
        assert bystander.read_until(wire.Piece.MSG_ID)[8:] == published[0][PIECE : 2 * PIECE]
    assert healthy(live)


def test_a_handshake_at_one_byte_a_second_is_cut_at_the_handshake_timeout(
    live: LiveServer, published: tuple[bytes, bytes]
) -> None:
    hs = wire.Handshake.build(published[1], os.urandom(20), fast=True, extensions=True, v2=False)
    sock = socket.create_connection(("127.0.0.1", live.peer_port), timeout=5)
    started = time.monotonic()
    try:
        for byte in hs.encode():
            try:
                sock.send(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            sock.settimeout(1.0)
            try:
                if sock.recv(1) == b"":
                    break
            except TimeoutError:
                continue
            except ConnectionResetError:
                break
        cut = time.monotonic() - started
    finally:
        sock.close()
    assert cut < 3 + 2.5, cut  # the handshake timeout (3 s here), not 68 s


def test_connections_from_one_address_are_capped(
    live: LiveServer, published: tuple[bytes, bytes]
) -> None:
    held: list[RawPeer] = []
    try:
        for _ in range(MAX_PER_IP):
            p = RawPeer(live.peer_port)
            held.append(p)
            assert p.handshake(published[1])
        extra = [RawPeer(live.peer_port) for _ in range(4)]
        held += extra
        for p in extra:
            assert p.closed_by_peer(timeout=3)
    finally:
        for p in held:
            p.close()
    # The slots come back once those peers left.
    deadline = time.monotonic() + 5
    while seeder_stats(live.endpoint)["connections"] > 0:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    block_ok(live, published)


# ------------------------------------------------------------------ ignored harmlessly


def test_harmless_oddities_are_ignored_and_the_peer_still_served(
    live: LiveServer, published: tuple[bytes, bytes]
) -> None:
    data, info_hash = published
    with peer(live) as p:
        unchoked(p, info_hash)
        # Metadata pieces out of range are rejected (BEP 9 msg_type 2), not served, and
        # the connection stays.
        p.send(wire.Extended(0, bencode({b"m": {b"ut_metadata": 7}})))
        for piece in (1, 2**31, -1):
            p.send(wire.Extended(wire.UT_METADATA_ID, bencode({b"msg_type": 0, b"piece": piece})))
            reply = p.read_until(wire.Extended.MSG_ID)
            assert reply[0] == 7 and b"8:msg_typei2e" in reply, reply[:80]
        # A large (under the 17 KiB cap) extension handshake naming extensions we never
        # heard of: parsed and ignored.
        names = {b"x_%05d" % i: 100 + i % 100 for i in range(1000)}
        p.send(wire.Extended(0, bencode({b"m": names, b"v": b"x" * 500})))
        # DHT port messages and keep-alives mean nothing to us.
        p.send_raw(wire.encode_message(wire.Port(6881)) * 100 + bytes(4) * 100)
        p.send(wire.Request(2, 0, PIECE))
        assert p.read_until(wire.Piece.MSG_ID)[8:] == data[2 * PIECE : 3 * PIECE]


# ------------------------------------------------------------------ others keep their speed


FLOODERS = 4  # connections of one flooding process (the per-address cap is 8 here)


def _flood(port: int, info_hash: bytes, kind: str, seconds: float) -> None:
    """Run in a child process: FLOODERS peers sending `kind` as fast as the seeder reads."""
    if kind == "keepalive":
        burst = bytes(64 * 1024)
    elif kind == "port":
        burst = wire.encode_message(wire.Port(6881)) * (64 * 1024 // 7)
    elif kind == "have":
        burst = b"".join(wire.encode_message(wire.Have(i % 65)) for i in range(64 * 1024 // 9))
    else:  # requests pipelined, never reading a byte of the answers
        burst = b"".join(
            wire.encode_message(wire.Request(i % 64, (i // 64) % PIECE, 1)) for i in range(10_000)
        )
    socks = []
    for _ in range(FLOODERS):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        hs = wire.Handshake.build(info_hash, os.urandom(20), fast=True, extensions=True, v2=False)
        sock.sendall(hs.encode() + wire.encode_message(wire.Interested()))
        sock.setblocking(False)
        socks.append(sock)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and socks:
        _, writable, _ = select.select([], socks, [], 0.2)
        for sock in writable:
            try:
                sock.send(burst)
            except BlockingIOError:
                pass
            except OSError:
                socks.remove(sock)
    for sock in socks:
        sock.close()


@pytest.fixture(scope="module")
def big(live: LiveServer) -> tuple[bytes, bytes]:
    """A 16 MiB object and its torrent without the web seed: the seeder alone serves it."""
    s3 = make_client(live.endpoint)
    data = os.urandom(16 * MiB)
    s3.put_object(Bucket="hostile", Key="big.bin", Body=data, ACL="public-read")
    return data, without_web_seed(fetch_torrent(live.endpoint, "hostile", "big.bin"))


def timed_download(torrent: bytes, data: bytes, dest: Path) -> float:
    started = time.monotonic()
    path = lt_download(torrent, dest, timeout=60)
    took = time.monotonic() - started
    assert sha256(path.read_bytes()) == sha256(data)
    return took


@pytest.mark.parametrize("kind", ["keepalive", "port", "have", "requests"])
def test_flooding_peers_do_not_slow_a_downloading_one(
    live: LiveServer,
    published: tuple[bytes, bytes],
    big: tuple[bytes, bytes],
    tmp_path: Path,
    kind: str,
) -> None:
    """Messages a seed needs little of (keep-alives, DHT ports, HAVEs), or requests never
    read, as fast as the seeder takes them: each small message costs the seeder's loop
    about a microsecond a byte, so four such peers read at full speed slowed a real
    downloader threefold and more. Now the seeder reads a peer's input at a bounded rate
    beyond what serving it earns, and the flood waits in that peer's socket."""
    data, torrent = big
    baseline = timed_download(torrent, data, tmp_path / "alone")
    rss_before = rss_kib(live.proc.pid)  # type: ignore[union-attr]
    received_before = seeder_stats(live.endpoint)["bytes_received"]
    ctx = multiprocessing.get_context("spawn")
    flooder = ctx.Process(target=_flood, args=(live.peer_port, published[1], kind, 30.0))
    flooder.start()
    libtorrent_left = time.monotonic() + 10
    while seeder_stats(live.endpoint)["connections"]:  # the download before it left
        assert time.monotonic() < libtorrent_left
        time.sleep(0.1)
    try:
        time.sleep(1.0)  # the flood under way
        attacked = timed_download(torrent, data, tmp_path / "attacked")
        time.sleep(max(0.0, 4.0 - attacked))
        flooded_for = 1.0 + max(attacked, 4.0)
        stats = seeder_stats(live.endpoint)
        received = stats["bytes_received"] - received_before
        still_open = stats["connections"]
        growth = rss_kib(live.proc.pid) - rss_before  # type: ignore[union-attr]
    finally:
        flooder.terminate()
        flooder.join(10)
    print(f"{kind}: alone {baseline:.2f} s, flooded {attacked:.2f} s, read {received} bytes")
    # The flooders were closed once more waited in their sockets than the burst allows.
    assert still_open == 0, stats
    assert growth < 40 * 1024, f"RSS grew by {growth} KiB"
    # Each flooder: its burst, then the input rate (defaults 64 KiB and 16 KiB/s); the
    # downloader's own requests are earned by what it gets. Before: megabytes a second.
    assert received < FLOODERS * (64 + 16 * flooded_for) * 1024 + 256 * 1024, received
    # A shared, loaded 2-core machine: slack for its noise, not for a flood's share.
    assert attacked < 1.5 * baseline + 1.0, (baseline, attacked)
    block_ok(live, published)
