"""The tracker over HTTP against a live server: raw announces and scrapes, and revocation."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import ipaddress
import os
import socket
import struct
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote_from_bytes

import pytest
from fastbencode import bdecode, bencode

from tests.conftest import (
    LiveServer,
    free_port,
    make_client,
    node_in_process,
    start_server,
)
from tests.seeding import public_read_policy

MAX_NUMWANT = 8


@pytest.fixture(scope="module")
def lean_port() -> int:
    """Port of the separate tracker listener (`tracker.http_listen`)."""
    return free_port()


@pytest.fixture(scope="module")
def udp_port() -> int:
    """Port of the BEP 15 listener (`tracker.udp_listen`)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module", params=[1, 2], ids=["one-process", "two-workers"])
def tracker_server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    lean_port: int,
    udp_port: int,
) -> Iterator[LiveServer]:
    # Everything here announces from 127.0.0.1, far faster than one real host would: lift the
    # per-IP rate limit. X-Forwarded-For from loopback is believed, to test IPv6 peers.
    # Alone, the process serves the tracker port itself; with two workers, the one without
    # the registry does and asks the owner's over the relay: every test runs both ways.
    srv = start_server(
        tmp_path_factory.mktemp("tracker"),
        workers=request.param,
        env={
            "S3TORRENT_TRACKER__ANNOUNCE_RATE_PER_IP": "100000",
            "S3TORRENT_TRACKER__ANNOUNCE_RATE_BURST": "100000",
            "S3TORRENT_TRACKER__MAX_NUMWANT": str(MAX_NUMWANT),
            "S3TORRENT_TRACKER__TRUSTED_PROXIES": '["127.0.0.1/32"]',
            # Exact peer lists below: no origin seeder in them (its own test sets one).
            "S3TORRENT_SEEDER__ENABLED": "false",
            "S3TORRENT_TRACKER__HTTP_LISTEN": f"127.0.0.1:{lean_port}",
            "S3TORRENT_TRACKER__UDP_LISTEN": f"127.0.0.1:{udp_port}",
        },
    )
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def ts3(tracker_server: LiveServer) -> Any:
    return make_client(tracker_server.endpoint)


@pytest.fixture
def tbucket(ts3: Any) -> str:
    name = f"trk-{os.getpid()}-{time.monotonic_ns() % 10**9}"
    ts3.create_bucket(Bucket=name)
    return name


# ---- helpers ----


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as e:
        return int(e.code), e.read()


def info_hash_of(torrent: bytes) -> bytes:
    meta = bdecode(torrent)
    return hashlib.sha1(bencode(meta[b"info"])).digest()


def publish(srv: LiveServer, s3: Any, bucket: str, key: str, data: bytes | None = None) -> bytes:
    """Put a public object and return its torrent's v1 info-hash."""
    s3.put_object(Bucket=bucket, Key=key, Body=data or os.urandom(40_000), ACL="public-read")
    status, body = http_get(f"{srv.endpoint}/{bucket}/{key}?torrent")
    assert status == 200, body[:300]
    return info_hash_of(body)


def peer_id(n: int) -> bytes:
    return b"-TT0001-" + n.to_bytes(12, "big")


def announce_query(info_hash: bytes, pid: bytes, port: int, **extra: str | int) -> str:
    params = {"uploaded": 0, "downloaded": 0, "left": 1000, **extra}
    q = f"info_hash={quote_from_bytes(info_hash)}&peer_id={quote_from_bytes(pid)}&port={port}"
    return q + "".join(f"&{k}={v}" for k, v in params.items())


def announce(
    srv: LiveServer, query: str, headers: dict[str, str] | None = None
) -> dict[bytes, Any]:
    status, body = http_get(f"{srv.endpoint}/_tracker/announce?{query}", headers)
    assert status == 200, body[:300]
    decoded = bdecode(body)
    assert isinstance(decoded, dict)
    return decoded


def scrape(srv: LiveServer, *hashes: bytes) -> dict[bytes, Any]:
    query = "&".join(f"info_hash={quote_from_bytes(h)}" for h in hashes)
    status, body = http_get(f"{srv.endpoint}/_tracker/scrape?{query}")
    assert status == 200, body[:300]
    decoded = bdecode(body)
    assert isinstance(decoded, dict)
    return decoded


def compact_peers(blob: bytes) -> list[tuple[str, int]]:
    assert len(blob) % 6 == 0
    return [
        (socket.inet_ntoa(blob[i : i + 4]), int.from_bytes(blob[i + 4 : i + 6], "big"))
        for i in range(0, len(blob), 6)
    ]


def failure_within(srv: LiveServer, info_hash: bytes, seconds: float = 1.0) -> str:
    """Announce until the tracker refuses; the refusal must come within `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        answer = announce(srv, announce_query(info_hash, peer_id(999), 7999))
        if b"failure reason" in answer:
            return str(answer[b"failure reason"].decode())
        assert time.monotonic() < deadline, f"still served after {seconds} s: {answer}"
        time.sleep(0.02)


# ---- announce answers ----


def test_compact_is_the_default_answer(tracker_server: LiveServer, ts3: Any, tbucket: str) -> None:
    ih = publish(tracker_server, ts3, tbucket, "compact")
    announce(tracker_server, announce_query(ih, peer_id(1), 6001))
    # No compact parameter at all: BEP 23 compact peers, as every modern tracker answers.
    answer = announce(tracker_server, announce_query(ih, peer_id(2), 6002))
    assert isinstance(answer[b"peers"], bytes)
    assert ("127.0.0.1", 6001) in compact_peers(answer[b"peers"])
    assert answer[b"interval"] > 0 and answer[b"min interval"] > 0
    assert answer[b"incomplete"] == 2


def test_compact_zero_gets_dicts_with_peer_ids(
    tracker_server: LiveServer, ts3: Any, tbucket: str
) -> None:
    ih = publish(tracker_server, ts3, tbucket, "dicts")
    announce(tracker_server, announce_query(ih, peer_id(1), 6001, left=0))
    answer = announce(tracker_server, announce_query(ih, peer_id(2), 6002, compact=0))
    assert answer[b"peers"] == [{b"ip": b"127.0.0.1", b"port": 6001, b"peer id": peer_id(1)}]
    assert answer[b"complete"] == 1
    no_ids = announce(tracker_server, announce_query(ih, peer_id(3), 6003, compact=0, no_peer_id=1))
    assert all(b"peer id" not in p for p in no_ids[b"peers"])


def test_numwant_is_capped_with_a_warning(
    tracker_server: LiveServer, ts3: Any, tbucket: str
) -> None:
    ih = publish(tracker_server, ts3, tbucket, "many")
    for n in range(MAX_NUMWANT + 5):
        announce(tracker_server, announce_query(ih, peer_id(n), 6100 + n, left=0))
    answer = announce(tracker_server, announce_query(ih, peer_id(100), 6999, numwant=500))
    assert len(compact_peers(answer[b"peers"])) == MAX_NUMWANT
    assert b"numwant capped" in answer[b"warning message"]
    small = announce(tracker_server, announce_query(ih, peer_id(101), 6998, numwant=3))
    assert len(compact_peers(small[b"peers"])) == 3
    zero = announce(tracker_server, announce_query(ih, peer_id(102), 6997, numwant=0))
    assert zero[b"peers"] == b""
    assert zero[b"complete"] == MAX_NUMWANT + 5


def test_ip_param_is_ignored_without_trust(
    tracker_server: LiveServer, ts3: Any, tbucket: str
) -> None:
    ih = publish(tracker_server, ts3, tbucket, "ip")
    first = announce(tracker_server, announce_query(ih, peer_id(1), 6001, ip="203.0.113.9"))
    assert b"ip parameter ignored" in first[b"warning message"]
    answer = announce(tracker_server, announce_query(ih, peer_id(2), 6002))
    assert compact_peers(answer[b"peers"]) == [("127.0.0.1", 6001)]


def test_ipv6_peers_come_in_peers6(tracker_server: LiveServer, ts3: Any, tbucket: str) -> None:
    ih = publish(tracker_server, ts3, tbucket, "six")
    # The loopback "proxy" is trusted, so the forwarded address is the peer's.
    announce(
        tracker_server,
        announce_query(ih, peer_id(1), 6001, left=0),
        {"X-Forwarded-For": "2001:db8::7"},
    )
    announce(tracker_server, announce_query(ih, peer_id(2), 6002, left=0))
    answer = announce(tracker_server, announce_query(ih, peer_id(3), 6003))
    assert compact_peers(answer[b"peers"]) == [("127.0.0.1", 6002)]
    six = answer[b"peers6"]
    assert len(six) == 18
    assert ipaddress.IPv6Address(six[:16]) == ipaddress.IPv6Address("2001:db8::7")
    assert int.from_bytes(six[16:], "big") == 6001


def test_stopped_removes_the_peer_and_completed_is_counted(
    tracker_server: LiveServer, ts3: Any, tbucket: str
) -> None:
    ih = publish(tracker_server, ts3, tbucket, "life")
    announce(tracker_server, announce_query(ih, peer_id(1), 6001, event="started"))
    announce(tracker_server, announce_query(ih, peer_id(1), 6001, left=0, event="completed"))
    stats = scrape(tracker_server, ih)[b"files"][ih]
    assert stats == {b"complete": 1, b"incomplete": 0, b"downloaded": 1}
    announce(tracker_server, announce_query(ih, peer_id(1), 6001, left=0, event="stopped"))
    answer = announce(tracker_server, announce_query(ih, peer_id(2), 6002))
    assert answer[b"peers"] == b""
    assert scrape(tracker_server, ih)[b"files"][ih][b"downloaded"] == 1


def test_unknown_info_hash_is_unregistered(tracker_server: LiveServer) -> None:
    unknown = announce(tracker_server, announce_query(os.urandom(20), peer_id(1), 6001))
    assert unknown == {b"failure reason": b"unregistered torrent"}
    assert scrape(tracker_server, os.urandom(20)) == {b"files": {}}


MALFORMED = {
    "no info_hash": "peer_id=-TT0001-000000000001&port=6881&left=0",
    "short info_hash": "info_hash=abc&peer_id=-TT0001-000000000001&port=6881&left=0",
    "long info_hash": "info_hash=" + "a" * 21 + "&peer_id=-TT0001-000000000001&port=6881&left=0",
    "bad percent": "info_hash=%zz" + "a" * 18 + "&peer_id=-TT0001-000000000001&port=1&left=0",
    "no peer_id": "info_hash=" + "a" * 20 + "&port=6881&left=0",
    "short peer_id": "info_hash=" + "a" * 20 + "&peer_id=x&port=6881&left=0",
    "no port": "info_hash=" + "a" * 20 + "&peer_id=-TT0001-000000000001&left=0",
    "port zero": "info_hash=" + "a" * 20 + "&peer_id=-TT0001-000000000001&port=0&left=0",
    "port too big": "info_hash=" + "a" * 20 + "&peer_id=-TT0001-000000000001&port=70000&left=0",
    "port text": "info_hash=" + "a" * 20 + "&peer_id=-TT0001-000000000001&port=http&left=0",
    "no left": "info_hash=" + "a" * 20 + "&peer_id=-TT0001-000000000001&port=6881",
    "negative left": "info_hash=" + "a" * 20 + "&peer_id=-TT0001-000000000001&port=1&left=-1",
    "absurd uploaded": "info_hash="
    + "a" * 20
    + "&peer_id=-TT0001-000000000001&port=1&left=0&uploaded="
    + "9" * 400,
    "absurd numwant": "info_hash="
    + "a" * 20
    + "&peer_id=-TT0001-000000000001&port=1&left=0&numwant=99999999999999999999",
    "bad event": "info_hash=" + "a" * 20 + "&peer_id=-TT0001-000000000001&port=1&left=0&event=x",
    "bad compact": "info_hash="
    + "a" * 20
    + "&peer_id=-TT0001-000000000001&port=1&left=0&compact=2",
    "repeated info_hash": "info_hash="
    + "a" * 20
    + "&info_hash="
    + "b" * 20
    + "&peer_id=-TT0001-000000000001&port=1&left=0",
    "query of 6 KB": "info_hash="
    + "a" * 20
    + "&peer_id=-TT0001-000000000001&port=1&left=0&x="
    + "y" * 6000,
    "empty": "",
}


@pytest.mark.parametrize("query", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_announce_is_a_failure_reason(tracker_server: LiveServer, query: str) -> None:
    status, body = http_get(f"{tracker_server.endpoint}/_tracker/announce?{query}")
    assert status == 200
    answer = bdecode(body)
    assert set(answer) == {b"failure reason"}, answer
    assert answer[b"failure reason"]


def test_huge_query_string_is_refused_without_a_500(tracker_server: LiveServer) -> None:
    query = "info_hash=" + "a" * 20 + "&x=" + "y" * 200_000
    status, body = http_get(f"{tracker_server.endpoint}/_tracker/announce?{query}")
    # Past the HTTP line limit aiohttp refuses before we see it; below it we answer in bencode.
    assert status < 500
    if status == 200:
        assert b"failure reason" in bdecode(body)
    status, _ = http_get(f"{tracker_server.endpoint}/_health")
    assert status == 200


def test_tracker_survives_garbage_on_the_socket(tracker_server: LiveServer) -> None:
    for junk in (b"GET /_tracker/announce?\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n", b"\x00" * 100):
        with socket.create_connection(("127.0.0.1", tracker_server.port), timeout=5) as s:
            s.sendall(junk)
            s.shutdown(socket.SHUT_WR)
            reply = s.recv(200)
            assert not reply.startswith(b"HTTP/1.1 5"), reply
    status, _ = http_get(f"{tracker_server.endpoint}/_health")
    assert status == 200


# ---- scrape ----


def test_scrape_answers_several_info_hashes(
    tracker_server: LiveServer, ts3: Any, tbucket: str
) -> None:
    a = publish(tracker_server, ts3, tbucket, "a")
    b = publish(tracker_server, ts3, tbucket, "b")
    announce(tracker_server, announce_query(a, peer_id(1), 6001, left=0))
    announce(tracker_server, announce_query(a, peer_id(2), 6002))
    announce(tracker_server, announce_query(b, peer_id(3), 6003))
    unknown = os.urandom(20)
    files = scrape(tracker_server, a, b, unknown, a)[b"files"]
    assert set(files) == {a, b}
    assert files[a] == {b"complete": 1, b"incomplete": 1, b"downloaded": 0}
    assert files[b] == {b"complete": 0, b"incomplete": 1, b"downloaded": 0}


def test_scrape_refusals_are_bencoded(tracker_server: LiveServer) -> None:
    for query in ("", "info_hash=short", "&".join(["info_hash=" + "%41" * 20] * 2) + "&x=%q"):
        status, body = http_get(f"{tracker_server.endpoint}/_tracker/scrape?{query}")
        assert status == 200
        assert b"failure reason" in bdecode(body)
    many = "&".join(f"info_hash={quote_from_bytes(os.urandom(20))}" for _ in range(65))
    status, body = http_get(f"{tracker_server.endpoint}/_tracker/scrape?{many}")
    assert status == 200 and b"failure reason" in bdecode(body)


def test_scrape_of_a_private_object_is_empty(
    tracker_server: LiveServer, ts3: Any, tbucket: str
) -> None:
    ih = publish(tracker_server, ts3, tbucket, "soon-private")
    assert ih in scrape(tracker_server, ih)[b"files"]
    ts3.put_object_acl(Bucket=tbucket, Key="soon-private", ACL="private")
    assert scrape(tracker_server, ih)[b"files"] == {}


# ---- revocation ----


def test_acl_change_to_private_revokes_within_a_second(
    tracker_server: LiveServer, ts3: Any, tbucket: str
) -> None:
    ih = publish(tracker_server, ts3, tbucket, "acl")
    assert b"peers" in announce(tracker_server, announce_query(ih, peer_id(1), 6001))
    ts3.put_object_acl(Bucket=tbucket, Key="acl", ACL="private")
    assert failure_within(tracker_server, ih) == "unregistered torrent"
    # Public again: the same version's torrent is served again (lazily, on announce).
    ts3.put_object_acl(Bucket=tbucket, Key="acl", ACL="public-read")
    assert b"peers" in announce(tracker_server, announce_query(ih, peer_id(1), 6001))


def test_acl_change_right_after_put_is_not_lost(
    tracker_server: LiveServer, ts3: Any, tbucket: str
) -> None:
    # The put's eager publication may still be deciding when the ACL change lands.
    for n in range(5):
        ih = publish(tracker_server, ts3, tbucket, f"race{n}")
        ts3.put_object_acl(Bucket=tbucket, Key=f"race{n}", ACL="private")
        assert failure_within(tracker_server, ih) == "unregistered torrent"
        time.sleep(0.1)
        assert b"failure reason" in announce(tracker_server, announce_query(ih, peer_id(1), 6001))


def test_delete_revokes_within_a_second(tracker_server: LiveServer, ts3: Any, tbucket: str) -> None:
    ih = publish(tracker_server, ts3, tbucket, "del")
    assert b"peers" in announce(tracker_server, announce_query(ih, peer_id(1), 6001))
    ts3.delete_object(Bucket=tbucket, Key="del")
    assert failure_within(tracker_server, ih) == "unregistered torrent"


def test_overwrite_revokes_the_old_info_hash(
    tracker_server: LiveServer, ts3: Any, tbucket: str
) -> None:
    old = publish(tracker_server, ts3, tbucket, "over", b"old" * 5000)
    assert b"peers" in announce(tracker_server, announce_query(old, peer_id(1), 6001))
    new = publish(tracker_server, ts3, tbucket, "over", b"new" * 5000)
    assert new != old
    assert failure_within(tracker_server, old) == "unregistered torrent"
    assert b"peers" in announce(tracker_server, announce_query(new, peer_id(1), 6001))


def test_public_access_block_revokes_within_a_second(
    tracker_server: LiveServer, ts3: Any, tbucket: str
) -> None:
    ih = publish(tracker_server, ts3, tbucket, "pab")
    assert b"peers" in announce(tracker_server, announce_query(ih, peer_id(1), 6001))
    ts3.put_public_access_block(
        Bucket=tbucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    assert failure_within(tracker_server, ih) == "unregistered torrent"
    ts3.delete_public_access_block(Bucket=tbucket)
    assert b"peers" in announce(tracker_server, announce_query(ih, peer_id(1), 6001))


def test_bucket_policy_removal_revokes_within_a_second(
    tracker_server: LiveServer, ts3: Any, tbucket: str
) -> None:
    ts3.put_object(Bucket=tbucket, Key="pol", Body=os.urandom(9000))
    ts3.put_bucket_policy(Bucket=tbucket, Policy=public_read_policy(tbucket))
    status, torrent = http_get(f"{tracker_server.endpoint}/{tbucket}/pol?torrent")
    assert status == 200
    ih = info_hash_of(torrent)
    assert b"peers" in announce(tracker_server, announce_query(ih, peer_id(1), 6001))
    ts3.delete_bucket_policy(Bucket=tbucket)
    assert failure_within(tracker_server, ih) == "unregistered torrent"


# ---- the origin in peer lists (in-process node: the seeder sets origin_seeders) ----


def test_origin_seeders_are_in_every_peer_list(tmp_path: Path) -> None:
    asyncio.run(asyncio.wait_for(_origin_seeders_scenario(tmp_path), 60))


async def _origin_seeders_scenario(tmp_path: Path) -> None:
    import aiohttp

    async with node_in_process(tmp_path / "data") as (node, endpoint):
        s3 = make_client(endpoint)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, lambda: s3.create_bucket(Bucket="origin"))
        await loop.run_in_executor(
            None,
            lambda: s3.put_object(
                Bucket="origin", Key="before", Body=os.urandom(9000), ACL="public-read"
            ),
        )
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:

            async def get(url: str) -> bytes:
                async with http.get(url) as resp:
                    assert resp.status == 200
                    return await resp.read()

            before = info_hash_of(await get(f"{endpoint}/origin/before?torrent"))
            first = bdecode(
                await get(f"{endpoint}/_tracker/announce?{announce_query(before, peer_id(1), 1)}")
            )
            assert first[b"peers"] == b""
            # Set after a torrent was published, as the seeder does once it listens.
            node.svc.public.origin_seeders = (("10.9.8.7", 6881),)
            await asyncio.sleep(0.05)
            await loop.run_in_executor(
                None,
                lambda: s3.put_object(
                    Bucket="origin", Key="after", Body=os.urandom(9000), ACL="public-read"
                ),
            )
            after = info_hash_of(await get(f"{endpoint}/origin/after?torrent"))
            for ih in (before, after):
                q = announce_query(ih, peer_id(2), 2, numwant=1)
                answer = bdecode(await get(f"{endpoint}/_tracker/announce?{q}"))
                assert compact_peers(answer[b"peers"]) == [("10.9.8.7", 6881)]
                assert answer[b"complete"] == 1  # the origin counts as a seed


# ---- the separate tracker listener ----


def test_tracker_port_shares_swarms_with_the_main_listener(
    tracker_server: LiveServer, ts3: Any, tbucket: str, lean_port: int
) -> None:
    ih = publish(tracker_server, ts3, tbucket, "lean")
    lean = f"http://127.0.0.1:{lean_port}"
    announce(tracker_server, announce_query(ih, peer_id(1), 6001, left=0))
    status, body = http_get(
        f"{lean}/announce?{announce_query(ih, peer_id(2), 6002)}",
        {"X-Forwarded-For": "2001:db8::8"},  # loopback is a trusted proxy here
    )
    assert status == 200
    answer = bdecode(body)
    assert compact_peers(answer[b"peers"]) == [("127.0.0.1", 6001)]
    assert (answer[b"complete"], answer[b"incomplete"]) == (1, 1)
    seen = announce(tracker_server, announce_query(ih, peer_id(3), 6003, left=0))
    assert ipaddress.IPv6Address(seen[b"peers6"][:16]) == ipaddress.IPv6Address("2001:db8::8")
    status, body = http_get(f"{lean}/scrape?info_hash={quote_from_bytes(ih)}")
    assert status == 200
    assert bdecode(body)[b"files"][ih][b"complete"] == 2
    assert http_get(f"{lean}/_tracker/nothing")[0] == 404


# ---- revocation on every listener ----


def udp_announce(port: int, info_hash: bytes, pid: bytes, peer_port: int) -> tuple[int, bytes]:
    """One BEP 15 connect and announce; the answer's action and the rest of it."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.connect(("127.0.0.1", port))
        sock.send(struct.pack(">QiI", 0x41727101980, 0, 1))
        action, tid, connection_id = struct.unpack(">iIQ", sock.recv(2048))
        assert (action, tid) == (0, 1)
        body = struct.pack(">20s20sqqqiIIiH", info_hash, pid, 0, 1000, 0, 2, 0, 7, 50, peer_port)
        sock.send(struct.pack(">QiI", connection_id, 1, 2) + body)
        answer = sock.recv(2048)
        action, tid = struct.unpack_from(">iI", answer)
        assert tid == 2
        return action, answer[8:]


def lean_announce(port: int, query: str) -> dict[bytes, Any]:
    status, body = http_get(f"http://127.0.0.1:{port}/announce?{query}")
    assert status == 200, body[:300]
    decoded = bdecode(body)
    assert isinstance(decoded, dict)
    return decoded


def test_revocation_reaches_the_tracker_port_and_udp_within_a_second(
    tracker_server: LiveServer, ts3: Any, tbucket: str, lean_port: int, udp_port: int
) -> None:
    ih = publish(tracker_server, ts3, tbucket, "everywhere")
    assert b"peers" in lean_announce(lean_port, announce_query(ih, peer_id(1), 6001))
    assert udp_announce(udp_port, ih, peer_id(2), 6002)[0] == 1  # an announce answer
    ts3.put_object_acl(Bucket=tbucket, Key="everywhere", ACL="private")
    deadline = time.monotonic() + 1.0
    lean_refused = udp_refused = False
    while not (lean_refused and udp_refused):
        assert time.monotonic() < deadline, f"still served: lean {lean_refused} udp {udp_refused}"
        answer = lean_announce(lean_port, announce_query(ih, peer_id(3), 6003))
        lean_refused = answer.get(b"failure reason") == b"unregistered torrent"
        action, rest = udp_announce(udp_port, ih, peer_id(4), 6004)
        udp_refused = action == 3 and rest == b"unregistered torrent"
        time.sleep(0.02)


def test_announce_then_s3_get_on_one_keep_alive_connection(
    tracker_server: LiveServer, ts3: Any, tbucket: str
) -> None:
    # The front answers the announce; the GET after it is the S3 application's, whole.
    data = os.urandom(5000)
    ih = publish(tracker_server, ts3, tbucket, "keepalive", data)
    host, port = tracker_server.endpoint.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", f"/_tracker/announce?{announce_query(ih, peer_id(1), 6001)}")
        resp = conn.getresponse()
        assert b"peers" in bdecode(resp.read())
        conn.request("GET", f"/{tbucket}/keepalive")
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (200, data)
        assert resp.getheader("x-amz-request-id")
        conn.request("GET", f"/_tracker/announce?{announce_query(ih, peer_id(2), 6002)}")
        resp = conn.getresponse()
        assert b"peers" in bdecode(resp.read())
    finally:
        conn.close()


def test_a_bucket_change_that_keeps_the_torrent_public_keeps_its_swarm(
    tracker_server: LiveServer, ts3: Any, tbucket: str
) -> None:
    """A change of a bucket's access settings revokes its torrents and republishes those
    still public at once. Until 2026-12-07 the registry forgot their peers with it: a
    PutBucketTagging (or a lifecycle rule, or a policy's time boundary) left every swarm in
    the bucket empty until its peers announced again, half an hour later."""
    ih = publish(tracker_server, ts3, tbucket, "kept")
    announce(tracker_server, announce_query(ih, peer_id(1), 6101))
    ts3.put_bucket_tagging(Bucket=tbucket, Tagging={"TagSet": [{"Key": "team", "Value": "a"}]})
    deadline = time.monotonic() + 5
    while True:
        answer = announce(tracker_server, announce_query(ih, peer_id(2), 6102))
        if b"failure reason" not in answer or time.monotonic() > deadline:
            break
        time.sleep(0.05)  # the few milliseconds between the revocation and republication
    assert ("127.0.0.1", 6101) in compact_peers(answer[b"peers"])
    assert answer[b"incomplete"] == 2
    # Made private, it is refused at once, kept swarm or not.
    ts3.put_object_acl(Bucket=tbucket, Key="kept", ACL="private")
    assert failure_within(tracker_server, ih) == "unregistered torrent"
