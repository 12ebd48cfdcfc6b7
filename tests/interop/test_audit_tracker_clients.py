"""Audit: real clients on an IPv6-only server find the origin seeder through the UDP
tracker (BEP 15 over IPv6) alone, and the HTTP tracker answers an IPv6 announce with BEP 7
`peers6`; every byte is checked. No web seed and no HTTP tracker in the torrent: the UDP
tracker is the only way to the bytes."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import struct
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote_from_bytes

import aiohttp
import pytest
from fastbencode import bdecode, bencode  # type: ignore[attr-defined]

from tests.conftest import LiveServer, make_client
from tests.interop.clients import DRIVERS, Job, missing
from tests.ports import free_port

pytestmark = [pytest.mark.interop, pytest.mark.slow]


class IPv6Server(LiveServer):
    @property
    def endpoint(self) -> str:
        return f"http://[::1]:{self.port}"


def _free_udp6_port() -> int:
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        s.bind(("::1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def udp_port() -> int:
    try:
        return _free_udp6_port()
    except OSError:
        pytest.skip("::1 is not configured")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, udp_port: int) -> Iterator[IPv6Server]:
    data = tmp_path_factory.mktemp("udp6") / "data"
    data.mkdir()
    port, peer = free_port(), free_port()
    srv = IPv6Server(
        data_dir=data,
        port=port,
        peer_port=peer,
        extra_args=["--listen", f"[::1]:{port}", "--peer-listen", f"[::1]:{peer}"],
        env={"S3TORRENT_TRACKER__UDP_LISTEN": f"[::1]:{udp_port}"},
    )
    srv.start()
    yield srv
    srv.stop()


def _publish(server: IPv6Server, bucket: str, data: bytes) -> dict[bytes, object]:
    s3 = make_client(server.endpoint)
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="v6.bin", Body=data, ACL="public-read")
    with urllib.request.urlopen(f"{server.endpoint}/{bucket}/v6.bin?torrent", timeout=10) as r:
        meta: dict[bytes, object] = bdecode(r.read())
    return meta


def _download_through(
    tracker: bytes, meta: dict[bytes, object], client: str, data: bytes, workdir: Path
) -> bytes:
    """What `client` downloads over IPv6 with `tracker` as the torrent's only source of
    peers (no web seed): the origin seeder must be found through it."""
    del meta[b"url-list"]
    meta[b"announce"] = tracker
    meta[b"announce-list"] = [[tracker]]
    job = Job(
        torrent=bencode(meta),
        magnet=None,
        name="v6.bin",
        data=data,
        workdir=workdir,
        timeout=60,
        address="::1",
    )
    return DRIVERS[client](job)


# Not aria2: it speaks UDP trackers only through its DHT socket ("udp is not supported yet"
# with DHT off); test_ipv6.py has it over the HTTP tracker. Not transmission: it drops
# loopback peers.
@pytest.mark.parametrize("client", ["libtorrent", "qbittorrent"])
def test_a_client_finds_the_seeder_over_the_udp_tracker_on_ipv6(
    server: IPv6Server, udp_port: int, tmp_path: Path, client: str
) -> None:
    why = missing(client)
    assert why is None, why
    data = os.urandom(2_000_000)
    meta = _publish(server, f"udp6-{client}", data)
    tracker = f"udp://[::1]:{udp_port}/announce".encode()
    tiers = meta[b"announce-list"]
    assert isinstance(tiers, list) and tracker in tiers[0]
    assert _download_through(tracker, meta, client, data, tmp_path) == data


def test_qbittorrent_finds_the_seeder_over_the_http_tracker_on_ipv6(
    server: IPv6Server, tmp_path: Path
) -> None:
    # test_ipv6.py has aria2 and libtorrent over the HTTP tracker; qBittorrent here.
    why = missing("qbittorrent")
    assert why is None, why
    data = os.urandom(1_500_000)
    meta = _publish(server, "http6-qbittorrent", data)
    tracker = f"http://[::1]:{server.port}/announce".encode()
    assert _download_through(tracker, meta, "qbittorrent", data, tmp_path) == data


def test_an_ipv6_http_announce_gets_ipv6_peers_in_peers6(
    server: IPv6Server, tmp_path: Path
) -> None:
    data = os.urandom(100_000)
    meta = _publish(server, "http6", data)
    info_hash = hashlib.sha1(bencode(meta[b"info"])).digest()
    query = (
        f"info_hash={quote_from_bytes(info_hash, safe='')}&peer_id=-XX0001-abcdefghijkl"
        "&port=51413&uploaded=0&downloaded=0&left=100000&compact=1&key=1A2B3C4D"
    )
    url = f"{server.endpoint}/announce?{query}"
    with urllib.request.urlopen(url, timeout=10) as r:
        body = bdecode(r.read())
    assert b"failure reason" not in body, body
    peers6 = body[b"peers6"]
    entries = [peers6[i : i + 18] for i in range(0, len(peers6), 18)]
    seeder = socket.inet_pton(socket.AF_INET6, "::1") + struct.pack(">H", server.peer_port)
    assert seeder in entries
    assert body[b"peers"] == b""  # nobody on IPv4 in this swarm
    # A second client sees the first one in peers6, at the address it came from.
    other = query.replace("abcdefghijkl", "mnopqrstuvwx").replace("51413", "51414")
    with urllib.request.urlopen(f"{server.endpoint}/announce?{other}", timeout=10) as r:
        again = bdecode(r.read())
    first = socket.inet_pton(socket.AF_INET6, "::1") + struct.pack(">H", 51413)
    assert first in [again[b"peers6"][i : i + 18] for i in range(0, len(again[b"peers6"]), 18)]


# --- what one address may make the tracker look up -----------------------------------------


def _udp_ask(client: socket.socket, packet: bytes) -> bytes:
    client.send(packet)
    return client.recv(2048)


def _udp_client(source: str, port: int) -> socket.socket:
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.settimeout(10)
    client.bind((source, 0))
    client.connect(("127.0.0.1", port))
    return client


def _udp_connect(client: socket.socket) -> int:
    answer = _udp_ask(client, struct.pack(">QiI", 0x41727101980, 0, 1))
    return int(struct.unpack(">iIQ", answer)[2])


async def _ws_scrape(srv: LiveServer, info_hash: bytes) -> object:
    url = f"ws://127.0.0.1:{srv.port}/_tracker/ws"
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        await ws.send_json({"action": "scrape", "info_hash": info_hash.decode("latin-1")})
        answer = await ws.receive(timeout=10)
        return json.loads(answer.data)["files"]


def test_random_info_hashes_from_one_address_cost_a_bounded_number_of_lookups(
    tmp_path: Path,
) -> None:
    s3 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s3.bind(("127.0.0.1", 0))
    udp = int(s3.getsockname()[1])
    s3.close()
    data = tmp_path / "data"
    data.mkdir()
    srv = LiveServer(
        data_dir=data,
        port=free_port(),
        peer_port=free_port(),
        env={
            "S3TORRENT_TRACKER__UDP_LISTEN": f"127.0.0.1:{udp}",
            # A budget that does not refill within the test: what is spent stays spent.
            "S3TORRENT_TRACKER__ANNOUNCE_RATE_PER_IP": "0.001",
            "S3TORRENT_TRACKER__ANNOUNCE_RATE_BURST": "10",
        },
    )
    srv.start()
    try:
        client = make_client(srv.endpoint)
        client.create_bucket(Bucket="lookups")
        client.put_object(Bucket="lookups", Key="o.bin", Body=b"x" * 50_000, ACL="public-read")
        with urllib.request.urlopen(f"{srv.endpoint}/lookups/o.bin?torrent", timeout=10) as r:
            info_hash = hashlib.sha1(bencode(bdecode(r.read())[b"info"])).digest()
        # Started again, the server knows the torrent only from its database: the first
        # request that names it has it looked up (PublicTorrents.resolve).
        srv.stop()
        srv.start()
        with _udp_client("127.0.0.1", udp) as attacker, _udp_client("127.0.0.2", udp) as other:
            cid = _udp_connect(attacker)
            # 74 random hashes a datagram: each was a database query on the owner (25 ms
            # a datagram), for as many datagrams as one address cared to send.
            for tid in range(3):
                flood = struct.pack(">QiI", cid, 2, 100 + tid) + os.urandom(20 * 74)
                assert len(_udp_ask(attacker, flood)) == 8 + 12 * 74
            # Its budget is spent: the torrent it names now is not looked up for it...
            probe = struct.pack(">QiI", cid, 2, 7) + info_hash
            assert struct.unpack(">iIiii", _udp_ask(attacker, probe)) == (2, 7, 0, 0, 0)
            query = (
                f"info_hash={quote_from_bytes(info_hash, safe='')}&peer_id=-XX0001-abcdefghijkl"
                "&port=51413&uploaded=0&downloaded=0&left=50000"
            )
            with urllib.request.urlopen(f"{srv.endpoint}/announce?{query}", timeout=10) as r:
                assert bdecode(r.read()) == {b"failure reason": b"rate limited"}
            assert asyncio.run(_ws_scrape(srv, info_hash)) == {}  # browsers' tracker too
            # ...while another address has it looked up and gets its swarm (the origin).
            other_cid = _udp_connect(other)
            probe = struct.pack(">QiI", other_cid, 2, 8) + info_hash
            assert struct.unpack(">iIiii", _udp_ask(other, probe)) == (2, 8, 1, 0, 0)
            # Once decided, the torrent costs no lookup: the first address has it too.
            probe = struct.pack(">QiI", cid, 2, 9) + info_hash
            assert struct.unpack(">iIiii", _udp_ask(attacker, probe)) == (2, 9, 1, 0, 0)
    finally:
        srv.stop()


def test_a_server_on_the_ipv6_wildcard_serves_torrents_a_client_can_use(tmp_path: Path) -> None:
    # No public URL: the server names its own address. Before, '[::]' named 127.0.0.1 in
    # the torrent's tracker, web seed and origin, where nothing listened (IPv6 only).
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    port, peer = free_port(), free_port()
    srv = IPv6Server(
        data_dir=data_dir,
        port=port,
        peer_port=peer,
        extra_args=["--listen", f"[::]:{port}", "--peer-listen", f"[::]:{peer}"],
    )
    srv.start()
    try:
        data = os.urandom(1_000_000)
        meta = _publish(srv, "wildcard6", data)
        assert meta[b"announce"] == f"http://[::1]:{port}/announce".encode()
        del meta[b"url-list"]  # the bytes come from the origin the tracker names
        job = Job(
            torrent=bencode(meta),
            magnet=None,
            name="v6.bin",
            data=data,
            workdir=tmp_path,
            timeout=60,
            address="::1",
        )
        assert DRIVERS["libtorrent"](job) == data
    finally:
        srv.stop()
