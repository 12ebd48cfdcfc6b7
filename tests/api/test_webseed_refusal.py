"""A web seed refusal closes its connection: libtorrent drops a web seed's connection on a 503,
and with it the answers to the requests it pipelined behind the refused one. Bytes the server
sent there would count as delivered to a client that never keeps them, and the swarm would
wait for pieces nobody has (all leechers stalled ~3 s at the end of a 4-leecher swarm)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from fastbencode import bdecode  # type: ignore[attr-defined]

from tests.api.test_torrent import http, torrent_url
from tests.conftest import LiveServer, make_client, start_server

BUCKET = "refusals"


@pytest.fixture(scope="module", params=[1, 2], ids=["one-process", "two-workers"])
def srv(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """Two workers: a connection the non-owner accepts is forwarded to the owner, whose
    Connection: close must reach the client too."""
    live = start_server(tmp_path_factory.mktemp("webseed-refusal"), workers=int(request.param))
    make_client(live.endpoint).create_bucket(Bucket=BUCKET)
    yield live
    live.stop()


def publish(srv: LiveServer, key: str, size: int, bucket: str = BUCKET) -> tuple[bytes, str, int]:
    """A public object of random bytes: its data, its web seed URL and its piece length."""
    data = os.urandom(size)
    make_client(srv.endpoint).put_object(Bucket=bucket, Key=key, Body=data, ACL="public-read")
    status, _, body = http("GET", torrent_url(srv.endpoint, bucket, key))
    assert status == 200, body
    meta = bdecode(body)
    [url] = [u.decode() for u in meta[b"url-list"]]
    return data, url, int(meta[b"info"][b"piece length"])


def _request(path: str, host: str, start: int, end: int) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nRange: bytes={start}-{end}\r\n\r\n").encode()


def _read_all(sock: socket.socket, limit: int) -> bytes:
    """Everything until the server closes (bounded: the test fails rather than hangs)."""
    out = bytearray()
    while len(out) < limit:
        chunk = sock.recv(65536)
        if not chunk:
            return bytes(out)
        out += chunk
    raise AssertionError(f"the server kept the connection open past {limit} bytes")


def _get(url: str, start: int, end: int) -> tuple[int, bytes]:
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(
            _request(parts.path, parts.netloc, start, end).replace(
                b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"
            )
        )
        raw = _read_all(sock, 1 << 24)
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.mark.parametrize("n", range(3))
def test_a_refusal_closes_the_connection_and_leaves_pipelined_pieces_unsent(
    srv: LiveServer, n: int
) -> None:
    data, url, piece = publish(srv, f"pipelined-{n}.bin", 1 << 20)
    assert len(data) // piece >= 4
    # Client one takes piece 0: nobody else has it, so the web seed sends it.
    assert _get(url, 0, piece - 1) == (206, data[:piece])
    # A second connection pipelines piece 0 (held now: refused) and then piece 2.
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(
            _request(parts.path, parts.netloc, 0, piece - 1)
            + _request(parts.path, parts.netloc, 2 * piece, 3 * piece - 1)
        )
        raw = _read_all(sock, 1 << 22)
    assert raw.startswith(b"HTTP/1.1 503"), raw[:200]
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert b"retry-after:" in head.lower()
    assert b"connection: close" in head.lower()
    # Nothing after the 503's own body: the pipelined request went unanswered...
    assert b"HTTP/1.1" not in rest
    # ...so piece 2 was never taken for sent: the next client asking for it gets it.
    assert _get(url, 2 * piece, 3 * piece - 1) == (206, data[2 * piece : 3 * piece])
