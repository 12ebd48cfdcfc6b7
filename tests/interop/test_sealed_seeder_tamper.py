"""The seeder opens a sealed blob a span at a time (peer/opened_spans.py): a chunk that
fails its tag closes the connection, and no byte of its span is ever sent."""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

import pytest
from fastbencode import bdecode  # type: ignore[attr-defined]

from s3torrent.peer import wire
from s3torrent.store.sealed_format import CHUNK, TAG, sealed_size
from tests.conftest import LiveServer
from tests.seeding import RawPeer, fetch_torrent, info_hash_v1, without_web_seed

MiB = 1024 * 1024
BLOCK = 16 * 1024

pytestmark = pytest.mark.timeout(120)


def _blob_of(srv: LiveServer, size_at_rest: int, before: set[Path]) -> Path:
    new = [
        p
        for p in (srv.data_dir / "blobs").glob("*/*/*")
        if p.is_file() and p not in before and p.stat().st_size == size_at_rest
    ]
    assert len(new) == 1, new
    return new[0]


def _pieces(peer: RawPeer) -> list[bytes]:
    """Piece payloads the seeder sends until it closes the connection."""
    got = []
    try:
        while True:
            mid, payload = peer.read_message()
            if mid == wire.Piece.MSG_ID:
                got.append(payload)
    except (ConnectionError, TimeoutError, OSError):
        return got


def test_a_tampered_chunk_closes_the_peer_and_none_of_its_span_is_sent(
    server: LiveServer, s3: Any, bucket: str
) -> None:
    size = 4 * MiB
    data = os.urandom(size)
    before = {p for p in (server.data_dir / "blobs").glob("*/*/*")}
    s3.put_object(
        Bucket=bucket, Key="t.bin", Body=data, ACL="public-read", ServerSideEncryption="AES256"
    )
    torrent = without_web_seed(fetch_torrent(server.endpoint, bucket, "t.bin"))
    piece_length = bdecode(torrent)[b"info"][b"piece length"]
    blob = _blob_of(server, sealed_size(size), before)
    bad = 3 * MiB // CHUNK  # a chunk well past the first span
    raw = bytearray(blob.read_bytes())
    raw[bad * (CHUNK + TAG) + 100] ^= 0x55
    blob.write_bytes(bytes(raw))

    peer = RawPeer(server.peer_port)
    try:
        assert peer.handshake(info_hash_v1(torrent))
        peer.send(wire.Interested())
        peer.read_until(wire.Unchoke.MSG_ID)
        # A block of an intact span is served, and right.
        peer.send(wire.Request(0, 0, BLOCK))
        first = peer.read_until(wire.Piece.MSG_ID)
        assert first == struct.pack(">II", 0, 0) + data[:BLOCK]
        # Blocks of the span that holds the bad chunk, the first one before it.
        at = bad * CHUNK - BLOCK
        requests = [
            wire.Request(off // piece_length, off % piece_length, BLOCK)
            for off in range(at, at + 4 * BLOCK, BLOCK)
        ]
        peer.send(*requests)
        sent = _pieces(peer)
    finally:
        peer.close()
    assert sent == []  # closed: not even the intact block in front of the bad chunk
    assert server.log_path is not None
    assert "fails authentication" in server.log_path.read_text()
