"""A scrape (BEP 48, BEP 15) answers only for the torrents its client may use: each
info-hash asked is decided with the scraper's own address and the time, as an announce is,
on the main listener, the tracker port, UDP and through another worker's relay.

Until 2026-12-07 a scrape resolved the hashes and answered for every published torrent,
whoever asked: a client in a network the bucket policy denies, refused by every announce,
still learnt that the torrent is served and how many seed and leech it (the WebSocket
tracker's scrape already decided per hash)."""

from __future__ import annotations

import json
import os
import socket
import struct
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote_from_bytes

import pytest
from fastbencode import bdecode  # type: ignore[attr-defined]

from tests.api.test_torrent_context import http_get, public_read_policy
from tests.conftest import LiveServer, free_port, make_client, start_server
from tests.seeding import fetch_torrent, info_hash_v1

DENIED = "127.0.0.2"
ALLOWED = "127.0.0.1"


@pytest.fixture(scope="module", params=[1, 2], ids=["one-worker", "two-workers"])
def srv(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveServer, int, int]]:
    # free_port: free for TCP and UDP, and outside the ephemeral range (tests/ports.py).
    udp_port, lean_port = free_port(), free_port()
    server = start_server(
        tmp_path_factory.mktemp("scrape"),
        env={
            "S3TORRENT_TRACKER__UDP_LISTEN": f"127.0.0.1:{udp_port}",
            "S3TORRENT_TRACKER__HTTP_LISTEN": f"127.0.0.1:{lean_port}",
        },
        workers=request.param,
    )
    yield server, udp_port, lean_port
    server.stop()


def _publish_denying(server: LiveServer, bucket: str) -> bytes:
    s3 = make_client(server.endpoint)
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="data.bin", Body=os.urandom(300_000))
    policy: dict[str, Any] = public_read_policy(bucket)
    policy["Statement"].append(
        {
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:GetObject",
            "Resource": f"arn:aws:s3:::{bucket}/*",
            "Condition": {"IpAddress": {"aws:SourceIp": f"{DENIED}/32"}},
        }
    )
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    return info_hash_v1(fetch_torrent(server.endpoint, bucket, "data.bin"))


def _http_scrape(base: str, ih: bytes, source: str) -> dict[bytes, Any]:
    status, body = http_get(f"{base}/scrape?info_hash={quote_from_bytes(ih)}", source)
    assert status == 200, body
    files: dict[bytes, Any] = bdecode(body).get(b"files", {})
    return files


def _udp_scrape(port: int, ih: bytes, source: str) -> tuple[int, int, int]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
        sock.send(struct.pack(">QiI", 0x41727101980, 0, 1))
        _action, _tid, connection_id = struct.unpack(">iIQ", sock.recv(2048))
        sock.send(struct.pack(">QiI", connection_id, 2, 3) + ih)
        answer = sock.recv(2048)
        action, tid, seeders, completed, leechers = struct.unpack(">iIiii", answer)
        assert (action, tid) == (2, 3)
        return seeders, completed, leechers


def test_a_denied_client_learns_nothing_from_a_scrape(srv: tuple[LiveServer, int, int]) -> None:
    server, udp_port, lean_port = srv
    ih = _publish_denying(server, f"scrape-{server.workers}")
    for base in (server.endpoint, f"{server.endpoint}/_tracker", f"http://127.0.0.1:{lean_port}"):
        assert ih in _http_scrape(base, ih, ALLOWED), base
        assert ih not in _http_scrape(base, ih, DENIED), base
    # UDP answers are positional: a refused hash reads as unknown, all zeros.
    assert _udp_scrape(udp_port, ih, ALLOWED)[0] >= 1  # the origin seeds it
    assert _udp_scrape(udp_port, ih, DENIED) == (0, 0, 0)
