"""Real BitTorrent clients find each other through our tracker (HTTP and UDP) and trade bytes.

The web seed is removed from the .torrent (its info dict stays byte-identical), so the only
way a downloader gets the bytes is from another client it learned about from our tracker:
client A (libtorrent) is handed the complete file and seeds it after its recheck; client B
(aria2c, transmission-cli, or a second libtorrent) starts empty. A's upload counter proves
the bytes came from A and not from an origin seeder.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastbencode import bdecode, bencode

from tests.conftest import LiveServer, free_port, make_client, start_server
from tests.seeding import aria2_download, host_ipv4, transmission_download

lt = pytest.importorskip("libtorrent")

SIZE = 3 * 1024 * 1024 + 12345
TIMEOUT = 60.0


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def udp_port() -> int:
    return free_udp_port()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, udp_port: int) -> Iterator[LiveServer]:
    srv = start_server(
        tmp_path_factory.mktemp("clients"),
        env={
            "S3TORRENT_TRACKER__UDP_LISTEN": f"127.0.0.1:{udp_port},[::1]:{udp_port}",
            # Lets client A name a non-loopback address (see the transmission test).
            "S3TORRENT_TRACKER__TRUST_IP_PARAM": "true",
            # The origin is unavailable: peers can only get the bytes from each other.
            "S3TORRENT_SEEDER__ENABLED": "false",
        },
    )
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def published(live: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    """(object bytes, its .torrent as the server serves it)."""
    s3 = make_client(live.endpoint)
    s3.create_bucket(Bucket="swarm")
    data = os.urandom(SIZE)
    s3.put_object(Bucket="swarm", Key="payload.bin", Body=data, ACL="public-read")
    import urllib.request

    with urllib.request.urlopen(f"{live.endpoint}/swarm/payload.bin?torrent", timeout=10) as r:
        return data, r.read()


def without_web_seed(torrent: bytes, *, trackers: list[str] | None = None) -> bytes:
    """The torrent with `url-list` dropped (and trackers replaced); the info dict untouched."""
    meta = bdecode(torrent)
    info_before = info_bytes(torrent)
    meta.pop(b"url-list", None)
    if trackers is not None:
        meta[b"announce"] = trackers[0].encode()
        meta[b"announce-list"] = [[t.encode() for t in trackers]]
    out = bytes(bencode(meta))
    assert info_bytes(out) == info_before
    return out


def info_bytes(torrent: bytes) -> bytes:
    # Our torrents are canonical bencode, so re-encoding the decoded info dict is the exact
    # byte range the info-hash covers.
    return bytes(bencode(bdecode(torrent)[b"info"]))


def lt_session(port: int, announce_ip: str | None = None) -> Any:
    settings = {
        # Loopback too: libtorrent announces only from a listen socket that can reach the
        # tracker, and ours is on 127.0.0.1.
        "listen_interfaces": f"127.0.0.1:{port}"
        + (f",{announce_ip}:{port}" if announce_ip else ""),
        "announce_ip": announce_ip or "",
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "ssrf_mitigation": False,
        "allow_multiple_connections_per_ip": True,
        "announce_to_all_trackers": True,
        "announce_to_all_tiers": True,
        "alert_mask": lt.alert.category_t.error_notification
        | lt.alert.category_t.tracker_notification
        | lt.alert.category_t.status_notification,
    }
    return lt.session(settings)


@contextlib.contextmanager
def seeding_libtorrent(
    torrent: bytes, data: bytes, workdir: Path, announce_ip: str | None = None
) -> Iterator[Any]:
    """Client A: libtorrent with the complete file in its save path, seeding after recheck."""
    info = lt.torrent_info(lt.bdecode(torrent))
    save = workdir / "a"
    save.mkdir()
    (save / info.name()).write_bytes(data)
    session = lt_session(free_port(), announce_ip)
    params = lt.add_torrent_params()
    params.ti = info
    params.save_path = str(save)
    handle = session.add_torrent(params)
    try:
        wait_for(lambda: handle.status().is_seeding, "client A to finish its recheck and seed")
        yield handle
    finally:
        session.remove_torrent(handle)
        del session


def wait_for(predicate: Any, what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def tracker_saw(handle: Any, what: str) -> None:
    """Client A announced successfully (no tracker error) at least once."""

    def ok() -> bool:
        trackers = handle.trackers()
        return any(
            ep.get("info_hashes", [{}])[0].get("updating") is False
            and ep["info_hashes"][0].get("last_error", {}).get("value", 0) == 0
            and ep["info_hashes"][0].get("start_sent")
            for t in trackers
            for ep in t.get("endpoints", [])
        )

    wait_for(ok, what, 20)


def uploaded(handle: Any) -> int:
    return int(handle.status().total_payload_upload)


# ---- tests ----


def test_torrent_lists_http_and_udp_tracker_in_one_tier(
    live: LiveServer, published: tuple[bytes, bytes], udp_port: int
) -> None:
    meta = bdecode(published[1])
    assert meta[b"announce-list"] == [
        [
            f"{live.endpoint}/announce".encode(),
            f"udp://127.0.0.1:{udp_port}/announce".encode(),
            # For browsers (WebTorrent); the clients below skip a scheme they do not speak.
            f"ws://127.0.0.1:{live.port}/_tracker/ws".encode(),
        ]
    ]


@pytest.mark.skipif(shutil.which("aria2c") is None, reason="aria2c not installed")
def test_aria2_downloads_from_libtorrent_via_our_tracker(
    live: LiveServer, published: tuple[bytes, bytes], tmp_path: Path
) -> None:
    data, torrent = published
    stripped = without_web_seed(torrent, trackers=[f"{live.endpoint}/_tracker/announce"])
    (tmp_path / "t.torrent").write_bytes(stripped)
    with seeding_libtorrent(stripped, data, tmp_path) as a:
        tracker_saw(a, "client A's announce to be accepted")
        aria2_download(
            tmp_path / "t.torrent", tmp_path / "b", "payload.bin", data, tmp_path, free_port()
        )
        wait_for(lambda: uploaded(a) >= len(data), "client A's upload counter", 10)


@pytest.mark.skipif(shutil.which("transmission-cli") is None, reason="transmission-cli missing")
def test_transmission_downloads_from_libtorrent_via_our_tracker(
    live: LiveServer, published: tuple[bytes, bytes], tmp_path: Path
) -> None:
    data, torrent = published
    # transmission drops every 127.0.0.0/8 peer a tracker hands it ("martian"), so A seeds
    # on this host's other address and names it in its announces (the server trusts `ip`).
    ip = host_ipv4()
    if ip is None:
        pytest.skip("no non-loopback IPv4 address for client A")
    stripped = without_web_seed(torrent, trackers=[f"{live.endpoint}/_tracker/announce"])
    (tmp_path / "t.torrent").write_bytes(stripped)
    with seeding_libtorrent(stripped, data, tmp_path, announce_ip=ip) as a:
        tracker_saw(a, "client A's announce to be accepted")
        transmission_download(
            tmp_path / "t.torrent", tmp_path / "b", "payload.bin", data, tmp_path, free_port()
        )
        wait_for(lambda: uploaded(a) >= len(data), "client A's upload counter", 10)


def test_libtorrent_peers_meet_over_the_udp_tracker(
    live: LiveServer, published: tuple[bytes, bytes], tmp_path: Path, udp_port: int
) -> None:
    data, torrent = published
    stripped = without_web_seed(torrent, trackers=[f"udp://127.0.0.1:{udp_port}/announce"])
    with seeding_libtorrent(stripped, data, tmp_path) as a:
        tracker_saw(a, "client A's UDP announce to be accepted")
        save = tmp_path / "b"
        save.mkdir()
        session = lt_session(free_port())
        params = lt.add_torrent_params()
        params.ti = lt.torrent_info(lt.bdecode(stripped))
        params.save_path = str(save)
        b = session.add_torrent(params)
        try:
            try:
                wait_for(lambda: b.status().is_seeding, "client B to download (UDP tracker)")
            except AssertionError as e:
                alerts = [a.message() for a in session.pop_alerts()][-15:]
                raise AssertionError(f"{e}: {b.status().num_peers} peers; {alerts}") from None
        finally:
            session.remove_torrent(b)
        assert (save / "payload.bin").read_bytes() == data
        assert uploaded(a) >= len(data)


def test_udp_tracker_answers_on_ipv6(
    live: LiveServer, published: tuple[bytes, bytes], udp_port: int
) -> None:
    info_hash = hashlib.sha1(info_bytes(published[1])).digest()
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.connect(("::1", udp_port))
        s.send(struct.pack(">QiI", 0x41727101980, 0, 7))
        action, tid, connection_id = struct.unpack(">iIQ", s.recv(100))
        assert (action, tid) == (0, 7)
        s.send(struct.pack(">QiI", connection_id, 2, 8) + info_hash + os.urandom(20))
        reply = s.recv(100)
        action, tid = struct.unpack(">iI", reply[:8])
        assert (action, tid) == (2, 8)
        assert len(reply) == 8 + 2 * 12
        # The unknown hash still takes its slot, with zeros.
        assert reply[20:] == b"\0" * 12
