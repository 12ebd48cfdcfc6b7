"""Real clients that insist on MSE/PE encryption download from our origin seeder alone.

libtorrent with encryption forced both ways (RC4 only, then plaintext only after the
encrypted handshake) and aria2c requiring ARC4; the seeder's counters show which payload
the handshake selected, so a silent fallback to the plain wire would fail the test.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from s3torrent.peer import mse, wire
from tests.conftest import LiveServer, free_port, make_client, start_server
from tests.mse_initiator import Initiator
from tests.seeding import (
    RawPeer,
    aria2_download,
    fetch_torrent,
    info_hash_v1,
    lt_add,
    lt_session,
    put_public,
    seeder_stats,
    sha256,
    wait_for,
    without_web_seed,
)

MiB = 1024 * 1024
PE_FORCED = 0  # libtorrent's settings_pack::enc_policy
PE_PLAINTEXT, PE_RC4 = 1, 2  # ... and enc_level

pytestmark = pytest.mark.timeout(180)


def publish(s3: Any, endpoint: str, bucket: str, key: str, size: int) -> tuple[bytes, bytes]:
    data = os.urandom(size)
    put_public(s3, bucket, key, data)
    return data, without_web_seed(fetch_torrent(endpoint, bucket, key))


def mse_counts(endpoint: str) -> dict[str, int]:
    counts: dict[str, int] = seeder_stats(endpoint)["mse"]
    return counts


def lt_forced_download(torrent: bytes, save: Path, level: int) -> Path:
    session = lt_session(out_enc_policy=PE_FORCED, in_enc_policy=PE_FORCED, allowed_enc_level=level)
    handle = lt_add(session, save, torrent=torrent)
    try:
        wait_for(lambda: handle.status().is_seeding, "libtorrent to finish", 60)
        return save / handle.status().name
    finally:
        session.remove_torrent(handle)
        del session


@pytest.mark.parametrize(
    ("level", "selected"), [(PE_RC4, "rc4"), (PE_PLAINTEXT, "plaintext")], ids=["rc4", "plaintext"]
)
def test_libtorrent_forcing_encryption_downloads_from_the_seeder(
    server: LiveServer, s3: Any, bucket: str, tmp_path: Path, level: int, selected: str
) -> None:
    data, torrent = publish(s3, server.endpoint, bucket, f"enc-{selected}.bin", 3 * MiB + 77)
    before = mse_counts(server.endpoint)
    path = lt_forced_download(torrent, tmp_path / "dl", level)
    assert sha256(path.read_bytes()) == sha256(data)
    after = mse_counts(server.endpoint)
    assert after[selected] > before[selected]


@pytest.mark.skipif(shutil.which("aria2c") is None, reason="aria2c not installed")
def test_aria2_requiring_arc4_downloads_from_the_seeder(
    server: LiveServer, s3: Any, bucket: str, tmp_path: Path
) -> None:
    data, torrent = publish(s3, server.endpoint, bucket, "aria-enc.bin", 2 * MiB + 5)
    (tmp_path / "t.torrent").write_bytes(torrent)
    before = mse_counts(server.endpoint)["rc4"]
    aria2_download(
        tmp_path / "t.torrent",
        tmp_path / "out",
        "aria-enc.bin",
        data,
        tmp_path,
        free_port(),
        extra=("--bt-require-crypto=true", "--bt-min-crypto-level=arc4"),
    )
    assert mse_counts(server.endpoint)["rc4"] > before


def test_garbage_opening_is_closed_within_the_sync_window(server: LiveServer) -> None:
    peer = RawPeer(server.peer_port)
    try:
        peer.send_raw(bytes(range(1, 97)) + os.urandom(mse.MAX_PAD + 20))
        assert peer.closed_by_peer()
    finally:
        peer.close()


def test_stalled_mse_handshake_times_out(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "srv", env={"S3TORRENT_SEEDER__HANDSHAKE_TIMEOUT": "1"})
    try:
        peer = RawPeer(srv.peer_port)
        try:
            peer.send_raw(bytes(range(1, 97)))  # a public key, then nothing
            start = time.monotonic()
            assert len(peer.read_exactly(mse.KEY_LENGTH)) == mse.KEY_LENGTH  # Yb
            assert peer.closed_by_peer(timeout=5)
            assert time.monotonic() - start < 4
        finally:
            peer.close()
    finally:
        srv.stop()


def test_disabled_encryption_refuses_mse_and_keeps_plain_peers(
    tmp_path: Path,
) -> None:
    srv = start_server(tmp_path / "srv", env={"S3TORRENT_SEEDER__ENCRYPTION": "disabled"})
    try:
        s3 = make_client(srv.endpoint)
        s3.create_bucket(Bucket="plain")
        _, torrent = publish(s3, srv.endpoint, "plain", "p.bin", 100_000)
        info_hash = info_hash_v1(torrent)
        mse_peer = RawPeer(srv.peer_port)
        try:
            mse_peer.send_raw(bytes(range(1, 97)))
            assert mse_peer.closed_by_peer()  # no Yb: a closed connection
            assert not mse_peer.buf
        finally:
            mse_peer.close()
        plain = RawPeer(srv.peer_port)
        try:
            assert plain.handshake(info_hash)
        finally:
            plain.close()
        assert mse_counts(srv.endpoint) == {"plaintext": 0, "rc4": 0}
    finally:
        srv.stop()


def mse_handshake(port: int, info_hash: bytes) -> bytes | None:
    """An RC4-only MSE handshake carrying a BitTorrent handshake for info_hash: the
    seeder's own handshake in the clear, or None when it closes the connection."""
    handshake = wire.Handshake.build(
        info_hash, b"-TT0001-" + os.urandom(12), fast=True, extensions=True, v2=False
    ).encode()
    a = Initiator(skey=info_hash, provide=mse.CRYPTO_RC4, initial_payload=handshake)
    peer = RawPeer(port)
    try:
        peer.send_raw(a.opening())
        step2 = peer.read_exactly(mse.KEY_LENGTH)
        peer.send_raw(a.step3(step2))
        while True:
            try:
                chunk = peer.sock.recv(65536)
            except (ConnectionError, TimeoutError):
                return None
            if not chunk:
                return None
            try:
                clear = a.step4(chunk)
            except AssertionError:
                continue  # VC not found yet: more bytes to come
            while len(clear) < wire.HANDSHAKE_LENGTH:
                more = peer.sock.recv(65536)
                if not more:
                    return None
                clear += a.decrypt(more)
            return clear[: wire.HANDSHAKE_LENGTH]
    finally:
        peer.close()


def test_mse_reaches_published_torrents_only_while_public(
    server: LiveServer, s3: Any, bucket: str
) -> None:
    _, torrent = publish(s3, server.endpoint, bucket, "toggle.bin", 70_000)
    info_hash = info_hash_v1(torrent)
    answer = mse_handshake(server.peer_port, info_hash)
    assert answer is not None and wire.Handshake.parse(answer).info_hash == info_hash
    s3.put_object_acl(Bucket=bucket, Key="toggle.bin", ACL="private")
    wait_for(lambda: mse_handshake(server.peer_port, info_hash) is None, "MSE refusal", 10)
    s3.put_object_acl(Bucket=bucket, Key="toggle.bin", ACL="public-read")
    wait_for(lambda: mse_handshake(server.peer_port, info_hash) is not None, "MSE again", 10)


def test_forced_encryption_reaches_the_seeder_with_the_default_workers(tmp_path: Path) -> None:
    """`serve` runs one worker per core by default, and only the owner seeds: a torrent
    written and fetched through any worker is found by an encrypted handshake once the
    client has announced, which every client does before it connects to its peers."""
    srv = start_server(tmp_path / "srv", workers=2)
    try:
        s3 = make_client(srv.endpoint)
        s3.create_bucket(Bucket="workers")
        data, torrent = publish(s3, srv.endpoint, "workers", "w.bin", 2 * MiB + 3)
        before = mse_counts(srv.endpoint)["rc4"]
        path = lt_forced_download(torrent, tmp_path / "dl", PE_RC4)
        assert sha256(path.read_bytes()) == sha256(data)
        assert mse_counts(srv.endpoint)["rc4"] > before
    finally:
        srv.stop()
