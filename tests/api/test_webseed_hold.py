"""The web seed holds WebTorrent's requests while its peer wire serves it (peer/web_hold.py),
and never past its bounds: a held request without a peer wire is answered after a short
wait, a revocation during the hold sends no byte, other clients are answered at once, and
no more than MAX_HELD requests of a torrent wait at once."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from s3torrent.peer.web_hold import MAX_HELD, PEER_WAIT
from tests.api.test_webseed_refusal import publish
from tests.conftest import LiveServer, make_client, start_server

BUCKET = "holds"
WEBTORRENT = "WebTorrent/2.8.5 (https://webtorrent.io)"


@pytest.fixture(scope="module", params=[1, 2], ids=["one-process", "two-workers"])
def srv(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """Two workers: a web-seed request the non-owner accepts is held at the owner."""
    live = start_server(tmp_path_factory.mktemp("webseed-hold"), workers=int(request.param))
    make_client(live.endpoint).create_bucket(Bucket=BUCKET)
    yield live
    live.stop()


def _publish(srv: LiveServer, key: str, size: int) -> tuple[bytes, str, int]:
    return publish(srv, key, size, BUCKET)


def _send(url: str, start: int, end: int, agent: str) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    sock.sendall(
        (
            f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nRange: bytes={start}-{end}\r\n"
            f"User-Agent: {agent}\r\nConnection: close\r\n\r\n"
        ).encode()
    )
    return sock


def _answer(sock: socket.socket) -> tuple[int, bytes]:
    out = bytearray()
    with sock:
        while len(out) < 1 << 24:
            chunk = sock.recv(65536)
            if not chunk:
                break
            out += chunk
    head, _, body = bytes(out).partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def _get(url: str, start: int, end: int, agent: str) -> tuple[int, bytes, float]:
    started = time.monotonic()
    status, body = _answer(_send(url, start, end, agent))
    return status, body, time.monotonic() - started


def test_webtorrent_without_a_peer_wire_waits_for_one_then_gets_its_bytes(
    srv: LiveServer,
) -> None:
    data, url, piece = _publish(srv, "alone.bin", 256 * 1024)
    status, body, took = _get(url, 0, piece - 1, WEBTORRENT)
    assert (status, body) == (206, data[:piece])
    assert took >= 0.9 * PEER_WAIT  # it waited for a peer wire that never came


def test_other_clients_are_answered_at_once(srv: LiveServer) -> None:
    data, url, piece = _publish(srv, "others.bin", 256 * 1024)
    for i, agent in enumerate(("libtorrent/2.0.11", "Mozilla/5.0 Chrome/120", "")):
        status, body, took = _get(url, i * piece, (i + 1) * piece - 1, agent)
        assert (status, body) == (206, data[i * piece : (i + 1) * piece]), agent
        assert took < 0.75 * PEER_WAIT, (agent, took)


def test_a_revocation_during_the_hold_sends_no_byte(srv: LiveServer) -> None:
    data, url, piece = _publish(srv, "revoked.bin", 256 * 1024)
    sock = _send(url, 0, piece - 1, WEBTORRENT)
    time.sleep(0.5)  # held now
    make_client(srv.endpoint).put_object_acl(Bucket=BUCKET, Key="revoked.bin", ACL="private")
    revoked = time.monotonic()
    status, body = _answer(sock)
    assert status == 403, body[:200]
    assert data[:1024] not in body
    assert time.monotonic() - revoked < PEER_WAIT + 1.0


def test_no_more_than_max_held_requests_wait(srv: LiveServer) -> None:
    """A client posing as WebTorrent many times over holds connections, never more than
    MAX_HELD of a torrent: the next request is answered at once."""
    data, url, piece = _publish(srv, "many.bin", 256 * 1024)
    held = [_send(url, 0, piece - 1, WEBTORRENT) for _ in range(MAX_HELD)]
    try:
        time.sleep(0.5)  # all of them held
        status, body, took = _get(url, piece, 2 * piece - 1, WEBTORRENT)
        assert (status, body) == (206, data[piece : 2 * piece])
        assert took < 0.75 * PEER_WAIT, took
    finally:
        results: list[tuple[int, bytes]] = []
        threads = [threading.Thread(target=lambda s=s: results.append(_answer(s))) for s in held]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
    # Released after PEER_WAIT: the first gets the piece, the others are sent to the swarm.
    assert len(results) == MAX_HELD
    assert [r for r in results if r != (206, data[:piece]) and r[0] != 503] == []
