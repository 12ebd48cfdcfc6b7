"""The tracker as a real dual-stack client meets it: libtorrent announces from each of its
listen sockets (IPv4 and IPv6) with one peer id and one key, and must be listed to each
family's peers at its address in that family."""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import LiveServer, make_client, start_server
from tests.ports import free_port
from tests.scale.test_nodes import info_hash_of

pytestmark = [pytest.mark.interop, pytest.mark.slow, pytest.mark.timeout(120)]

lt = pytest.importorskip("libtorrent")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[LiveServer, int]]:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("::1 is not configured")
    udp = free_port()
    srv = start_server(
        tmp_path,
        env={
            "S3TORRENT_TRACKER__UDP_LISTEN": f"127.0.0.1:{udp},[::1]:{udp}",
            "S3TORRENT_TRACKER__ANNOUNCE_RATE_BURST": "1000",
        },
    )
    try:
        yield srv, udp
    finally:
        srv.stop()


def _udp_peers(udp: int, info_hash: bytes, host: str, peer: int) -> set[int]:
    """The ports of the peers a UDP announce from `host` is answered with."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(struct.pack(">QiI", 0x41727101980, 0, 1), (host, udp))
        cid = struct.unpack(">iIQ", sock.recvfrom(2048)[0])[2]
        request = struct.pack(
            ">QiI20s20sqqqiIIiH",
            cid, 1, 2, info_hash, f"-AS0001-{peer:012d}".encode(), 0, 100, 0, 2, 0,
            peer, 50, 50000 + peer,
        )  # fmt: skip
        sock.sendto(request, (host, udp))
        answer = sock.recvfrom(2048)[0]
    assert struct.unpack(">i", answer[:4])[0] == 1, answer
    size = 18 if family == socket.AF_INET6 else 6
    body = answer[20:]
    return {int.from_bytes(body[i + size - 2 : i + size], "big") for i in range(0, len(body), size)}


def test_libtorrent_on_both_families_is_listed_to_each_at_its_own_address(
    server: tuple[LiveServer, int], tmp_path: Path
) -> None:
    """Keyed by peer id alone, each of its announces moved its one entry to its own family:
    IPv4 peers found it only while its IPv4 announce was the last one, and the other way
    round (libtorrent 2.1 sends the same peer id and key from both sockets)."""
    srv, udp = server
    s3 = make_client(srv.endpoint)
    s3.create_bucket(Bucket="dual")
    s3.put_object(Bucket="dual", Key="f", Body=os.urandom(300_000), ACL="public-read")
    torrent = s3.get_object_torrent(Bucket="dual", Key="f")["Body"].read()
    info_hash = info_hash_of(torrent)
    session = lt.session(
        {
            "listen_interfaces": "127.0.0.1:0,[::1]:0",
            "enable_dht": False,
            "enable_lsd": False,
            "enable_upnp": False,
            "enable_natpmp": False,
            "announce_to_all_trackers": True,
            "announce_to_all_tiers": True,
            "alert_mask": lt.alert.category_t.status_notification
            | lt.alert.category_t.error_notification,
        }
    )
    listen4, listen6 = _listen_ports(session)
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(lt.bdecode(torrent))
    params.save_path = str(tmp_path / "client")
    params.trackers = [f"udp://127.0.0.1:{udp}/announce", f"udp://[::1]:{udp}/announce"]
    handle = session.add_torrent(params)
    try:
        deadline = time.monotonic() + 30
        listed = 0
        while listed < 3:  # three rounds in a row: both announces made, in either order
            seen4 = _udp_peers(udp, info_hash, "127.0.0.1", 1)
            seen6 = _udp_peers(udp, info_hash, "::1", 2)
            listed = listed + 1 if listen4 in seen4 and listen6 in seen6 else 0
            assert time.monotonic() < deadline, (
                f"libtorrent ({listen4} on IPv4, {listen6} on IPv6) seen by IPv4 at {seen4}, "
                f"by IPv6 at {seen6}"
            )
            handle.force_reannounce()
            time.sleep(1)
    finally:
        session.remove_torrent(handle)


def _listen_ports(session: object) -> tuple[int, int]:
    """libtorrent's IPv4 and IPv6 TCP listen ports, from its alerts (bounded: 10 s)."""
    ports: dict[bool, int] = {}
    deadline = time.monotonic() + 10
    while len(ports) < 2 and time.monotonic() < deadline:
        session.wait_for_alert(500)  # type: ignore[attr-defined]
        for alert in session.pop_alerts():  # type: ignore[attr-defined]
            if (
                isinstance(alert, lt.listen_succeeded_alert)
                and alert.socket_type == lt.socket_type_t.tcp
            ):
                ports[":" in str(alert.address)] = alert.port
    assert len(ports) == 2, ports
    return ports[False], ports[True]
