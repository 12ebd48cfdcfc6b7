"""Real BitTorrent clients download objects from our origin seeder alone.

The web seed is removed from the .torrent (the info dict stays byte for byte) and DHT, LSD
and PEX are off, so the only source of bytes is the peer listener our tracker hands out.
"""

from __future__ import annotations

import os
import shutil
import struct
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_from_bytes

import pytest
from fastbencode import bdecode  # type: ignore[attr-defined]

from s3torrent.peer import wire
from tests.conftest import LiveServer, free_port, make_client, start_server
from tests.seeding import (
    RawPeer,
    aria2_download,
    fetch_torrent,
    host_ipv4,
    info_hash_v1,
    lt_add,
    lt_download,
    lt_session,
    put_public,
    seeder_stats,
    sha256,
    transmission_download,
    wait_for,
    without_web_seed,
)

MiB = 1024 * 1024

pytestmark = pytest.mark.timeout(180)


def publish(s3: Any, endpoint: str, bucket: str, key: str, size: int) -> tuple[bytes, bytes]:
    data = os.urandom(size)
    put_public(s3, bucket, key, data)
    return data, without_web_seed(fetch_torrent(endpoint, bucket, key))


def torrent_stats(endpoint: str, torrent: bytes) -> dict[str, Any]:
    stats = seeder_stats(endpoint)["torrents"]
    found: dict[str, Any] = stats[info_hash_v1(torrent).hex()]
    return found


# 1 byte; an exact multiple of the 16 KiB piece length (256 pieces); 64 MiB (2048 pieces).
@pytest.mark.parametrize("size", [1, 4 * MiB, 64 * MiB], ids=["1B", "4MiB-exact", "64MiB"])
def test_libtorrent_downloads_from_the_seeder_alone(
    server: LiveServer, s3: Any, bucket: str, tmp_path: Path, size: int
) -> None:
    data, torrent = publish(s3, server.endpoint, bucket, "obj.bin", size)
    path = lt_download(torrent, tmp_path / "dl")
    assert sha256(path.read_bytes()) == sha256(data)
    # One downloader gets one copy: the per-torrent counter the metering callback mirrors.
    sent = torrent_stats(server.endpoint, torrent)["bytes_sent"]
    assert size <= sent <= size + size // 10 + 16384


@pytest.fixture(scope="module")
def hybrid_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = start_server(
        tmp_path_factory.mktemp("hybrid"), env={"S3TORRENT_TORRENT__FORMAT": "hybrid"}
    )
    yield srv
    srv.stop()


@pytest.mark.parametrize("size", [1, 3 * MiB + 5], ids=["1B", "3MiB+5"])
def test_libtorrent_downloads_a_hybrid_torrent_from_the_seeder(
    hybrid_server: LiveServer, tmp_path: Path, size: int
) -> None:
    s3 = make_client(hybrid_server.endpoint)
    bucket = f"hybrid-{size}"
    s3.create_bucket(Bucket=bucket)
    data, torrent = publish(s3, hybrid_server.endpoint, bucket, "h.bin", size)
    info = bdecode(torrent)[b"info"]
    assert info[b"meta version"] == 2 and b"pieces" in info
    path = lt_download(torrent, tmp_path / "dl")
    assert sha256(path.read_bytes()) == sha256(data)


def test_magnet_link_downloads_with_libtorrent(
    server: LiveServer, s3: Any, bucket: str, tmp_path: Path
) -> None:
    data, torrent = publish(s3, server.endpoint, bucket, "magnet.bin", 2 * MiB + 77)
    tracker = f"{server.endpoint}/_tracker/announce"
    magnet = f"magnet:?xt=urn:btih:{info_hash_v1(torrent).hex()}&tr={quote(tracker, safe='')}"
    path = lt_download(None, tmp_path / "dl", magnet=magnet)
    assert path.name == "magnet.bin"
    assert sha256(path.read_bytes()) == sha256(data)


@pytest.mark.skipif(shutil.which("aria2c") is None, reason="aria2c not installed")
def test_aria2_downloads_from_the_seeder_alone(
    server: LiveServer, s3: Any, bucket: str, tmp_path: Path
) -> None:
    data, torrent = publish(s3, server.endpoint, bucket, "aria.bin", 5 * MiB + 3)
    (tmp_path / "t.torrent").write_bytes(torrent)
    aria2_download(
        tmp_path / "t.torrent", tmp_path / "out", "aria.bin", data, tmp_path, free_port()
    )


@pytest.mark.skipif(shutil.which("transmission-cli") is None, reason="transmission-cli missing")
def test_transmission_downloads_from_the_seeder_alone(tmp_path: Path) -> None:
    ip = host_ipv4()
    if ip is None:
        pytest.skip("no non-loopback IPv4 address for the seeder")
    srv = start_server(
        tmp_path / "srv",
        "--peer-listen",
        f"{ip}:{free_port()}",
        env={"S3TORRENT_SEEDER__PUBLIC_HOST": ip},
    )
    try:
        s3 = make_client(srv.endpoint)
        s3.create_bucket(Bucket="transmission")
        data, torrent = publish(s3, srv.endpoint, "transmission", "tr.bin", 3 * MiB + 11)
        (tmp_path / "t.torrent").write_bytes(torrent)
        transmission_download(
            tmp_path / "t.torrent", tmp_path / "out", "tr.bin", data, tmp_path, free_port()
        )
    finally:
        srv.stop()


def announce(endpoint: str, info_hash: bytes) -> dict[bytes, Any]:
    query = (
        f"info_hash={quote_from_bytes(info_hash)}&peer_id={quote_from_bytes(os.urandom(20))}"
        "&port=6999&uploaded=0&downloaded=0&left=100&compact=1"
    )
    with urllib.request.urlopen(f"{endpoint}/_tracker/announce?{query}", timeout=10) as r:
        answer: dict[bytes, Any] = bdecode(r.read())
    return answer


def test_revocation_stops_a_download_and_refuses_reconnects(
    server: LiveServer, s3: Any, bucket: str, tmp_path: Path
) -> None:
    size = 32 * MiB
    _, torrent = publish(s3, server.endpoint, bucket, "revoked.bin", size)
    session = lt_session(download_rate_limit=4 * MiB, ignore_limits_on_local_network=False)
    handle = lt_add(session, tmp_path / "dl", torrent=torrent)
    try:
        wait_for(lambda: handle.status().progress > 0.05, "the download to start", 30)
        s3.put_object_acl(Bucket=bucket, Key="revoked.bin", ACL="private")
        revoked_at = time.monotonic()
        wait_for(
            lambda: torrent_stats(server.endpoint, torrent)["connections"] == 0,
            "the seeder to drop the torrent's peers",
            5,
        )
        assert time.monotonic() - revoked_at < 1.5
        time.sleep(0.5)
        stalled = handle.status().total_wanted_done
        time.sleep(2.0)
        status = handle.status()
        assert not status.is_seeding and status.total_wanted_done == stalled
        assert stalled < size
        assert b"failure reason" in announce(server.endpoint, info_hash_v1(torrent))
        peer = RawPeer(server.peer_port)
        try:
            assert not peer.handshake(info_hash_v1(torrent))
        finally:
            peer.close()
    finally:
        session.remove_torrent(handle)
        del session


def test_hybrid_last_piece_is_served_with_its_implied_zero_padding(tmp_path: Path) -> None:
    """libtorrent 2.0.x asks for a hybrid torrent's last piece at its full length."""
    srv = start_server(
        tmp_path / "srv",
        env={"S3TORRENT_TORRENT__FORMAT": "hybrid", "S3TORRENT_SEEDER__MODE": "fastest"},
    )
    try:
        s3 = make_client(srv.endpoint)
        s3.create_bucket(Bucket="padded")
        data, torrent = publish(s3, srv.endpoint, "padded", "p.bin", 33 * MiB + 5)
        info = bdecode(torrent)[b"info"]
        piece_length = info[b"piece length"]
        assert piece_length == 32 * 1024  # so a whole block lies in the padding
        last = len(data) // piece_length
        peer = RawPeer(srv.peer_port)
        try:
            assert peer.handshake(info_hash_v1(torrent))
            peer.send(wire.Interested())
            peer.read_until(wire.Unchoke.MSG_ID)
            peer.send(
                wire.Request(last, 0, 16 * 1024),  # 5 bytes of the object, then zeros
                wire.Request(last, 16 * 1024, 16 * 1024),  # zeros only
            )
            first = peer.read_until(wire.Piece.MSG_ID)
            second = peer.read_until(wire.Piece.MSG_ID)
        finally:
            peer.close()
        assert first[:8] == struct.pack(">II", last, 0)
        assert first[8:] == data[last * piece_length :] + bytes(16 * 1024 - 5)
        assert second == struct.pack(">II", last, 16 * 1024) + bytes(16 * 1024)
    finally:
        srv.stop()
