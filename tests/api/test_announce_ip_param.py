"""`tracker.trust_ip_param` lets a client name the address its peers should reach it at (the
announce's `ip`: a client behind NAT, a LAN tracker). That address is the client's own
word, not where the announce came from: the access decision's aws:SourceIp stays the
announce's own source (the socket's peer, or the client a trusted proxy names) on HTTP, on
the tracker port, over UDP and through another worker's relay.

Until 2026-12-07 the tracker asked the decision with the `ip` it was told: a client in a
network the bucket policy denies announced `ip=` an allowed address and was admitted, and
got the swarm's peers, libtorrent as well as a hand-made announce."""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote_from_bytes

import pytest
from fastbencode import bdecode, bencode  # type: ignore[attr-defined]

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
        tmp_path_factory.mktemp("ip-param"),
        env={
            "S3TORRENT_TRACKER__TRUST_IP_PARAM": "true",
            "S3TORRENT_TRACKER__UDP_LISTEN": f"127.0.0.1:{udp_port}",
            "S3TORRENT_TRACKER__HTTP_LISTEN": f"127.0.0.1:{lean_port}",
        },
        workers=request.param,
    )
    yield server, udp_port, lean_port
    server.stop()


def _publish_denying(server: LiveServer, bucket: str) -> bytes:
    """A public object whose bucket policy denies DENIED; its .torrent."""
    s3 = make_client(server.endpoint)
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="data.bin", Body=os.urandom(300_000))
    policy = public_read_policy(bucket)
    policy["Statement"].append(
        {
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:GetObject",
            "Resource": f"arn:aws:s3:::{bucket}/*",
            "Condition": {"IpAddress": {"aws:SourceIp": f"{DENIED}/32"}},
        }
    )
    import json

    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    return fetch_torrent(server.endpoint, bucket, "data.bin")


def _http_announce(base: str, ih: bytes, source: str, ip: str | None) -> dict[bytes, Any]:
    query = (
        f"info_hash={quote_from_bytes(ih)}&peer_id={quote_from_bytes(os.urandom(20))}"
        "&port=51413&uploaded=0&downloaded=0&left=100&compact=1"
    )
    if ip is not None:
        query += f"&ip={ip}"
    status, body = http_get(f"{base}/announce?{query}", source)
    assert status == 200, body
    answer: dict[bytes, Any] = bdecode(body)
    return answer


def _udp_announce(port: int, ih: bytes, source: str, ip: str | None) -> tuple[int, bytes]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
        sock.send(struct.pack(">QiI", 0x41727101980, 0, 1))
        action, tid, connection_id = struct.unpack(">iIQ", sock.recv(2048))
        assert (action, tid) == (0, 1)
        ip_raw = int.from_bytes(socket.inet_aton(ip), "big") if ip is not None else 0
        body = struct.pack(
            ">20s20sqqqiIIiH", ih, os.urandom(20), 0, 1000, 0, 2, ip_raw, 7, 50, 51413
        )
        sock.send(struct.pack(">QiI", connection_id, 1, 2) + body)
        answer = sock.recv(2048)
        action, tid = struct.unpack_from(">iI", answer)
        assert tid == 2
        return action, answer[8:]


def test_a_denied_client_naming_an_allowed_ip_is_refused(
    srv: tuple[LiveServer, int, int],
) -> None:
    server, udp_port, lean_port = srv
    ih = info_hash_v1(_publish_denying(server, f"ip-param-{server.workers}"))
    for base in (server.endpoint, f"{server.endpoint}/_tracker", f"http://127.0.0.1:{lean_port}"):
        # The allowed client is admitted, whatever address it names for its peers...
        assert b"failure reason" not in _http_announce(base, ih, ALLOWED, None), base
        assert b"failure reason" not in _http_announce(base, ih, ALLOWED, "192.0.2.9"), base
        # ...and the denied one is refused, whatever address it names.
        refused = _http_announce(base, ih, DENIED, None)
        assert refused.get(b"failure reason") == b"unregistered torrent", base
        spoofed = _http_announce(base, ih, DENIED, ALLOWED)
        assert spoofed.get(b"failure reason") == b"unregistered torrent", (base, spoofed)
    assert _udp_announce(udp_port, ih, ALLOWED, "192.0.2.9")[0] == 1
    assert _udp_announce(udp_port, ih, DENIED, None) == (3, b"unregistered torrent")
    assert _udp_announce(udp_port, ih, DENIED, ALLOWED) == (3, b"unregistered torrent")


def test_libtorrent_announcing_an_allowed_ip_from_a_denied_address_gets_no_peers(
    srv: tuple[LiveServer, int, int], tmp_path: Path
) -> None:
    import libtorrent as lt

    server, _udp_port, _lean_port = srv
    torrent = _publish_denying(server, f"ip-param-lt-{server.workers}")
    meta = bdecode(torrent)
    meta.pop(b"url-list", None)
    meta.pop(b"announce-list", None)
    meta[b"announce"] = f"{server.endpoint}/announce".encode()
    session = lt.session(
        {
            "listen_interfaces": f"{DENIED}:0",
            "outgoing_interfaces": DENIED,
            "announce_ip": ALLOWED,
            "enable_dht": False,
            "enable_lsd": False,
            "enable_upnp": False,
            "enable_natpmp": False,
            "enable_outgoing_utp": False,
            "enable_incoming_utp": False,
            "ssrf_mitigation": False,
            "alert_mask": lt.alert.category_t.tracker_notification
            | lt.alert.category_t.error_notification,
        }
    )
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(lt.bdecode(bencode(meta)))
    params.save_path = str(tmp_path)
    handle = session.add_torrent(params)
    replies: list[str] = []
    errors: list[str] = []
    try:
        deadline = time.monotonic() + 20
        while not (replies or errors) and time.monotonic() < deadline:
            session.wait_for_alert(500)
            for alert in session.pop_alerts():
                if isinstance(alert, lt.tracker_reply_alert):
                    replies.append(alert.message())
                elif isinstance(alert, lt.tracker_error_alert):
                    errors.append(alert.message())
    finally:
        session.remove_torrent(handle)
    assert not replies, replies
    assert errors and "unregistered torrent" in errors[0], errors
