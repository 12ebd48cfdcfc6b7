"""Audit of the WebSocket (WebTorrent) tracker from an attacker's side, against a live server.

Each test drives raw WebSockets (aiohttp's client) the way WebTorrent's tracker client
(bittorrent-tracker 11, `lib/client/websocket-tracker.js`) speaks: ids are 20-byte binary
strings (`hex2bin`), one socket per tracker URL shared by every torrent of a client.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import random
import socket
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from fastbencode import bdecode, bencode

from s3torrent.peer.policy import PolicySettings, SwarmPolicy
from s3torrent.tracker.ws_protocol import (
    MAX_PENDING_OFFERS,
    NO_SUCH_OFFER,
    Close,
    Send,
    WsAnnounce,
    WsAnswer,
    WsLimits,
    WsTracker,
    failure,
    parse_message,
)
from tests.api.test_tracker_ws import announce, b, info_hash, receive, ws_url
from tests.conftest import LiveServer, make_client, start_server

PROXY_HOP = "127.0.0.1"
ADMITTED = "10.7.1.1"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server(
        tmp_path_factory.mktemp("audit-ws"),
        env={
            # The test client is its own reverse proxy: X-Forwarded-For names the browser.
            "S3TORRENT_TRUSTED_PROXIES": json.dumps([PROXY_HOP]),
            "S3TORRENT_TRACKER__TRUSTED_PROXIES": json.dumps([PROXY_HOP]),
        },
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def s3(srv: LiveServer) -> Any:
    return make_client(srv.endpoint)


_n = [0]


def public_object(s3: Any, policy: dict[str, Any] | None = None) -> tuple[str, bytes]:
    """(bucket, info hash) of a fresh object, public by its ACL or by a policy's condition."""
    _n[0] += 1
    bucket = f"audit-ws-{os.getpid()}-{_n[0]}"
    s3.create_bucket(Bucket=bucket)
    acl = "private" if policy is not None else "public-read"
    s3.put_object(Bucket=bucket, Key="f.bin", Body=os.urandom(60_000), ACL=acl)
    if policy is None:
        return bucket, info_hash(s3, bucket, "f.bin")
    s3.put_bucket_policy(Bucket=bucket, Policy=_policy(bucket, policy))
    # The torrent as a client the policy admits gets it (`?torrent` is decided as a GET).
    url = f"{s3.meta.endpoint_url}/{bucket}/f.bin?torrent"
    request = urllib.request.Request(url, headers={"X-Forwarded-For": ADMITTED})
    with urllib.request.urlopen(request, timeout=5) as r:
        meta = bdecode(r.read())
    return bucket, hashlib.sha1(bencode(meta[b"info"])).digest()


async def connect(
    session: aiohttp.ClientSession, srv: LiveServer, client: str = "10.0.0.1"
) -> aiohttp.ClientWebSocketResponse:
    return await session.ws_connect(ws_url(srv), headers={"X-Forwarded-For": client})


async def joined(ws: aiohttp.ClientWebSocketResponse, h: bytes, peer: bytes, **extra: Any) -> None:
    await ws.send_json(announce(h, peer, **extra))
    body = await receive(ws)
    assert "failure reason" not in body, body


async def silent(ws: aiohttp.ClientWebSocketResponse, seconds: float = 0.5) -> None:
    """Nothing arrives on ws for `seconds` (what would have arrived by then did)."""
    with pytest.raises(asyncio.TimeoutError):
        msg = await ws.receive(timeout=seconds)
        pytest.fail(f"unexpected {msg}")


A, B, C = b"A" * 20, b"B" * 20, b"C" * 20


def answer_to(h: bytes, me: bytes, to: bytes, offer_id: bytes = b"o" * 20) -> dict[str, Any]:
    return {
        "action": "announce",
        "info_hash": b(h),
        "peer_id": b(me),
        "to_peer_id": b(to),
        "offer_id": b(offer_id),
        "answer": {"type": "answer", "sdp": "stolen?"},
    }


def test_answers_and_offers_stay_inside_one_torrents_swarm(srv: LiveServer, s3: Any) -> None:
    _, x = public_object(s3)
    _, y = public_object(s3)

    async def run() -> None:
        async with aiohttp.ClientSession() as session:
            a = await connect(session, srv)
            m = await connect(session, srv)
            await joined(a, x, A)
            await joined(m, y, B)
            # M (in Y only) addresses A by peer id, naming Y and then X.
            await m.send_json(answer_to(y, B, A))
            assert (await receive(m))["failure reason"] == "answer to no offer of yours"
            await m.send_json(answer_to(x, B, A))
            refused = await receive(m)
            assert refused["failure reason"] == "answer from outside the swarm"
            # M announces Y with offers: A (in X) gets none.
            await joined(m, y, B, offers=5)
            await silent(a)
            # M joins X under a peer id of its own: A gets its offers only now.
            await joined(m, x, C, offers=1)
            relayed = await receive(a)
            assert relayed["info_hash"] == b(x) and relayed["peer_id"] == b(C)

    asyncio.run(run())


def test_a_peer_id_in_use_cannot_be_taken_to_steal_answers(srv: LiveServer, s3: Any) -> None:
    _, x = public_object(s3)

    async def run() -> None:
        async with aiohttp.ClientSession() as session:
            victim = await connect(session, srv)
            thief = await connect(session, srv, "10.6.6.6")
            other = await connect(session, srv, "10.0.0.2")
            await joined(victim, x, A)
            await thief.send_json(announce(x, A))
            assert (await receive(thief))["failure reason"] == "peer id in use"
            # Nor can it stop the victim's membership in its name.
            await thief.send_json(announce(x, A, event="stopped"))
            assert (await receive(thief))["failure reason"] == "peer id in use"
            await joined(other, x, B, offers=1)
            offer = await receive(victim)
            # The answer to B's offer goes to B, whoever claims to be A.
            await thief.send_json(answer_to(x, A, B, offer["offer_id"].encode("latin-1")))
            assert (await receive(thief))["failure reason"] == "answer from outside the swarm"
            await silent(other)

    asyncio.run(run())


def _policy(bucket: str, condition: dict[str, Any]) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "s3:GetObject",
                    "Resource": f"arn:aws:s3:::{bucket}/*",
                }
                | ({"Condition": condition} if condition else {})
            ],
        }
    )


def test_an_expiring_policy_stops_connected_sockets_within_a_second(
    srv: LiveServer, s3: Any
) -> None:
    until = (datetime.now(UTC) + timedelta(seconds=4)).replace(microsecond=0)
    _, h = public_object(
        s3, {"DateLessThan": {"aws:CurrentTime": until.strftime("%Y-%m-%dT%H:%M:%SZ")}}
    )
    _, other = public_object(s3)

    async def run() -> None:
        async with aiohttp.ClientSession() as session:
            a = await connect(session, srv)
            bb = await connect(session, srv, "10.0.0.2")
            await joined(a, h, A)
            await joined(a, other, A)  # A's socket stays open: it has another torrent
            await joined(bb, h, B)
            wait = (until - datetime.now(UTC)).total_seconds()
            body = await receive(a, timeout=wait + 1.5)
            assert datetime.now(UTC) < until + timedelta(seconds=1.2)
            assert body["failure reason"] and body["info_hash"] == b(h)
            # B's socket, left with no torrent, is closed.
            assert (await receive(bb))["info_hash"] == b(h)
            assert (await bb.receive(timeout=2)).type is aiohttp.WSMsgType.CLOSE
            # No more offers or scrapes for it on the socket still open, nor on a new one.
            again = await connect(session, srv, "10.0.0.2")
            for ws, peer in ((a, A), (again, B)):
                await ws.send_json(announce(h, peer, offers=1))
                assert (await receive(ws))["failure reason"] == "unregistered torrent"
                await ws.send_json({"action": "scrape", "info_hash": [b(h)]})
                assert (await receive(ws))["files"] == {}
            await silent(a)

    asyncio.run(run())


def test_the_source_address_behind_a_trusted_proxy_decides(srv: LiveServer, s3: Any) -> None:
    _, h = public_object(s3, {"IpAddress": {"aws:SourceIp": "10.7.0.0/16"}})

    async def run() -> None:
        async with aiohttp.ClientSession() as session:
            inside = await connect(session, srv, ADMITTED)
            outside = await connect(session, srv, "10.8.1.1")
            await joined(inside, h, A)
            await outside.send_json(announce(h, B, offers=1))
            assert (await receive(outside))["failure reason"] == "unregistered torrent"
            await outside.send_json({"action": "scrape", "info_hash": b(h)})
            assert (await receive(outside))["files"] == {}
            await silent(inside)

    asyncio.run(run())


def test_malformed_nested_and_odd_messages_keep_the_socket(srv: LiveServer) -> None:
    async def run() -> None:
        async with aiohttp.ClientSession() as session:
            ws = await connect(session, srv)
            for text in (
                "[" * 60_000,
                '{"a":' * 10_000 + "1" + "}" * 10_000,
                "null",
                '"x"',
                '{"action":"announce","info_hash":"'
                + "ab" * 20
                + '","peer_id":"'
                + "A" * 20
                + '"}',
                '{"action":"announce","info_hash":"\\u0100' + "a" * 19 + '","peer_id":"x"}',
                '{"action":"scrape","info_hash":[]}',
                '{"action":"scrape","info_hash":' + json.dumps(["a" * 20] * 65) + "}",
                '{"action":"announce","info_hash":"'
                + "a" * 20
                + '","peer_id":"'
                + "a" * 20
                + '","numwant":1e999,"offers":[]}',
            ):
                await ws.send_str(text)
                body = await receive(ws)
                assert body["failure reason"], body
            await ws.send_bytes(b"\xff\xfe")
            assert (await receive(ws))["failure reason"]
            assert not ws.closed

    asyncio.run(run())


def test_a_deeply_nested_offer_is_relayed_or_refused_not_lost(srv: LiveServer, s3: Any) -> None:
    _, h = public_object(s3)

    async def run() -> None:
        async with aiohttp.ClientSession() as session:
            a = await connect(session, srv)
            m = await connect(session, srv, "10.0.0.2")
            await joined(a, h, A)
            depth = 990
            nested = "[" * depth + "]" * depth
            text = json.dumps(announce(h, B, offers=1)).replace('"sdp-0"', nested)
            await m.send_str(text)
            reply = await receive(m)
            assert "failure reason" not in reply or reply["failure reason"] != "internal error"
            # Whatever it decided, the socket still answers.
            await m.send_json({"action": "scrape", "info_hash": b(h)})
            got = await receive(m)
            while got.get("action") != "scrape":
                got = await receive(m)

    asyncio.run(run())


def test_a_ping_flood_from_a_socket_that_never_reads(srv: LiveServer, s3: Any) -> None:
    _, h = public_object(s3)

    async def run() -> None:
        async with aiohttp.ClientSession() as session:
            flood = await connect(session, srv, "10.0.0.9")
            good = await connect(session, srv)
            payload = b"p" * 125
            started = time.monotonic()
            for _ in range(20_000):
                await flood.ping(payload)
                if time.monotonic() - started > 5:
                    break
            # Another socket is answered promptly all the same.
            t0 = time.monotonic()
            await joined(good, h, A)
            assert time.monotonic() - t0 < 1.0

    asyncio.run(run())


def test_announces_from_one_address_are_rate_limited_as_http_ones(srv: LiveServer, s3: Any) -> None:
    """One address announcing again and again (each announce up to 10 offers, each offer a
    WebRTC connection the receiving browser sets up): before 2026-12-07 every announce was
    relayed (500 in a second here); now the HTTP tracker's budget per address applies
    (`tracker.announce_rate_per_ip`, 5/s, a burst of 60)."""
    _, h = public_object(s3)

    async def run() -> None:
        async with aiohttp.ClientSession() as session:
            victim = await connect(session, srv)
            flood = await connect(session, srv, "10.0.0.66")
            await joined(victim, h, A)
            started = time.monotonic()
            for _ in range(300):
                await flood.send_json(announce(h, B, offers=1, numwant=1, event=None))
            refused = 0
            for _ in range(300):
                body = await receive(flood)
                refused += body.get("failure reason") == "rate limited"
            elapsed = time.monotonic() - started
            offers = 300 - refused  # each announce not refused relays its offer to A
            assert offers <= 60 + 5 * elapsed + 1, (offers, elapsed)
            for _ in range(offers):
                assert "offer" in await receive(victim)
            await silent(victim)
            # Leaving is never refused, and another address has a budget of its own.
            await flood.send_json(announce(h, B, event="stopped"))
            await victim.send_json(announce(h, A))
            assert (await receive(victim))["incomplete"] == 1  # B left

    asyncio.run(run())


def test_a_change_that_keeps_the_torrent_public_keeps_its_browsers(
    srv: LiveServer, s3: Any
) -> None:
    bucket, h = public_object(s3)

    async def run() -> None:
        async with aiohttp.ClientSession() as session:
            a = await connect(session, srv)
            bb = await connect(session, srv, "10.0.0.2")
            await joined(a, h, A)
            await joined(bb, h, B)
            await asyncio.to_thread(
                s3.put_bucket_tagging,
                Bucket=bucket,
                Tagging={"TagSet": [{"Key": "team", "Value": "web"}]},
            )
            await silent(a, 1.5)
            await bb.send_json(announce(h, B, offers=1, event=None))
            assert (await receive(bb))["incomplete"] == 2
            assert (await receive(a))["offer"]

    asyncio.run(run())


def test_a_policy_narrowed_to_some_addresses_keeps_only_their_sockets(
    srv: LiveServer, s3: Any
) -> None:
    """A policy for everyone replaced by one for a network: the torrent stays public (it is
    revoked and published again), the sockets of that network stay in its swarm, the others
    are told within a second. Before 2026-12-07 every socket was told the torrent is no
    longer public and closed, and WebTorrent reconnects 10 s to 5 min later."""
    bucket, h = public_object(s3, {})

    async def run() -> None:
        async with aiohttp.ClientSession() as session:
            inside = await connect(session, srv, ADMITTED)
            outside = await connect(session, srv, "10.8.1.1")
            await joined(inside, h, A)
            await joined(outside, h, B)
            started = time.monotonic()
            await asyncio.to_thread(
                s3.put_bucket_policy,
                Bucket=bucket,
                Policy=_policy(bucket, {"IpAddress": {"aws:SourceIp": "10.7.0.0/16"}}),
            )
            told = await receive(outside, timeout=3)
            assert told["failure reason"] == "torrent is no longer public"
            assert (await outside.receive(timeout=2)).type is aiohttp.WSMsgType.CLOSE
            assert time.monotonic() - started < 1.0 + 0.5  # the policy's round trip included
            await silent(inside)
            # `inside` gets offers again without announcing again.
            again = await connect(session, srv, "10.7.2.2")
            await joined(again, h, C, offers=1)
            assert (await receive(inside))["offer"]

    asyncio.run(run())


# ---- the core's suspension while a revoked swarm is decided again (no sockets) ----


def _core_with(*peers: bytes) -> WsTracker:
    """Connections 1.. from 10.0.0.1.., each announcing one peer of H_CORE."""
    core = WsTracker()
    for conn, peer in enumerate(peers, start=1):
        assert core.connect(conn, f"10.0.0.{conn}")
        core.announce(conn, core_announce(peer))
    return core


H_CORE = bytes(range(100, 120))


def core_announce(
    peer: bytes, offers: int = 0, event: str | None = None, left: int = 100_000
) -> WsAnnounce:
    message = announce(H_CORE, peer, offers, event=event, left=left)
    request = parse_message(json.dumps(message), WsLimits())
    assert isinstance(request, WsAnnounce)
    return request


def _sent(actions: list[Send | Close]) -> list[tuple[int, dict[str, Any]]]:
    return [(a.conn, json.loads(a.text)) for a in actions if isinstance(a, Send)]


def test_a_suspended_swarm_relays_nothing_and_resumes_whom_the_decision_admits() -> None:
    core = _core_with(A, B, C)
    generation = core.suspend(H_CORE)
    assert generation is not None
    assert core.suspended_addresses(H_CORE) == {1: "10.0.0.1", 2: "10.0.0.2", 3: "10.0.0.3"}
    # Meanwhile: no offer reaches a held peer, a held peer cannot answer, counts are zero.
    assert core.peers(H_CORE) == 0
    relayed = core.announce(3, core_announce(C, offers=2))
    assert [conn for conn, _ in _sent(relayed)] == [3]  # its own answer only
    answer = WsAnswer(H_CORE, A, C, b"o" * 20, {"type": "answer"})
    assert _sent(core.answer(1, answer))[0][1]["failure reason"]
    actions = core.resume(H_CORE, generation, admitted=[1, 3])
    # 2 is told and closed (no other torrent); 1 is back; 3 announced again meanwhile.
    assert [(c, body["failure reason"]) for c, body in _sent(actions)] == [
        (2, "torrent is no longer public")
    ]
    assert [a.conn for a in actions if isinstance(a, Close)] == [2]
    assert core.peers(H_CORE) == 2
    relayed = core.announce(3, core_announce(C, offers=1))
    assert [conn for conn, _ in _sent(relayed)] == [3, 1]


def test_only_the_last_suspensions_resume_counts_and_it_resumes_every_held_peer() -> None:
    core = _core_with(A, B)
    first = core.suspend(H_CORE)
    core.announce(2, core_announce(B))  # B announces again in between (admitted then)
    second = core.suspend(H_CORE)
    assert first is not None and second is not None and second != first
    assert core.resume(H_CORE, first, admitted=[1, 2]) == []  # stale: nothing happens
    assert core.peers(H_CORE) == 0
    actions = core.resume(H_CORE, second, admitted=[])
    assert sorted(c for c, _ in _sent(actions)) == [1, 2]
    assert core.suspend(H_CORE) is None  # nobody left to hold


def test_a_held_peer_that_stopped_or_whose_id_was_taken_is_not_put_back() -> None:
    core = _core_with(A, B)
    generation = core.suspend(H_CORE)
    assert generation is not None
    assert core.announce(1, core_announce(A, event="stopped")) == []
    core.disconnect(2)
    assert core.connect(3, "10.0.0.3")
    core.announce(3, core_announce(B))  # B's id, now another socket's
    actions = core.resume(H_CORE, generation, admitted=[1, 2, 3])
    assert actions == []  # 1 stopped A itself, 2 is gone, and 3's B is its own
    assert core.peers(H_CORE) == 1
    core.disconnect(1)
    assert core.peers(H_CORE) == 1  # socket 1's leaving takes nothing of socket 3's


def test_disconnect_takes_out_only_its_own_peer_of_an_id() -> None:
    core = _core_with(A)
    assert core.connect(2, "10.0.0.2")
    generation = core.suspend(H_CORE)
    assert generation is not None
    core.announce(2, core_announce(A))  # A's id, free while suspended: socket 2 takes it
    assert core.resume(H_CORE, generation, admitted=[1])[0] == Send(
        1, failure("torrent is no longer public", "announce", H_CORE)
    )
    core.disconnect(1)
    assert core.peers(H_CORE) == 1


def test_a_browser_completes_once_however_often_it_says_so() -> None:
    """`completed` is scrape's `downloaded` and the savings report's completions. One
    browser toggling `left` between 0 and more counted a completion per toggle; the HTTP
    tracker counts one per peer (its `completed` flag)."""
    core = _core_with(A)
    for _ in range(5):
        core.announce(1, core_announce(A, event="completed", left=0))
        core.announce(1, core_announce(A, left=1))
    core.announce(1, core_announce(A, event="completed", left=0))
    assert core.stats(H_CORE).completed == 1


# ---- the web seed's view of a browser swarm (no sockets) ----


def test_the_web_seed_serves_a_browser_whose_swarm_has_no_one_else() -> None:
    """Pieces the web seed sent a browser that left count as held for web_seed_memory; a
    browser asking for them while the WebSocket swarm holds only itself has nobody to get
    them from."""
    policy = SwarmPolicy(8, 1 << 16, PolicySettings(), rng=random.Random(3), now=0.0)
    for index in range(8):  # the first browser, on three connections, took every piece
        for connection in range(3):
            policy.web_seed_request("192.0.2.1", 0.0, ("192.0.2.1", 40000 + connection))
        policy.web_seed_sent(index, 1 << 16, 0.0, client="192.0.2.1")
    later = 10.0  # it left; another browser behind the same address asks on two connections
    for connection in range(2):
        policy.web_seed_request("192.0.2.1", later, ("192.0.2.1", 50000 + connection))
    assert not policy.web_seed_allows(3, later, client="192.0.2.1", peer_wire=False)
    policy.tracked_browsers(2)  # a seeding browser is there too: get it from that one
    assert not policy.web_seed_allows(3, later, client="192.0.2.1", peer_wire=False)
    policy.tracked_browsers(1)
    assert policy.web_seed_allows(3, later, client="192.0.2.1", peer_wire=False)
    policy.tracked_downloaders(2, later)  # an HTTP tracker's swarm: its rules, not this
    assert not policy.web_seed_allows(3, later, client="192.0.2.1", peer_wire=False)


# ---- frames as a raw client sends them ----


def _frame(opcode: int, payload: bytes, fin: bool) -> bytes:
    """One masked client frame (RFC 6455 5.2)."""
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 1 << 16:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _raw_socket(srv: LiveServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /_tracker/ws HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            "X-Forwarded-For: 10.0.0.77\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def _read_frame(sock: socket.socket) -> tuple[int, bytes]:
    def exactly(n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = sock.recv(n - len(out))
            assert chunk, "closed"
            out += chunk
        return out

    first, second = exactly(2)
    n = second & 0x7F
    if n == 126:
        n = int.from_bytes(exactly(2), "big")
    elif n == 127:
        n = int.from_bytes(exactly(8), "big")
    return first & 0x0F, exactly(n)


def test_a_fragmented_announce_is_read_whole_and_an_oversized_one_closes(
    srv: LiveServer, s3: Any
) -> None:
    _, h = public_object(s3)
    text = json.dumps(announce(h, A)).encode()
    with _raw_socket(srv) as sock:
        third = len(text) // 3
        sock.sendall(_frame(0x1, text[:third], fin=False))
        sock.sendall(_frame(0x9, b"ping in between", fin=True))  # control frames may interleave
        sock.sendall(_frame(0x0, text[third : 2 * third], fin=False))
        sock.sendall(_frame(0x0, text[2 * third :], fin=True))
        replies = [_read_frame(sock) for _ in range(2)]
        assert replies[0] == (0xA, b"ping in between")
        assert replies[1][0] == 0x1 and json.loads(replies[1][1])["info_hash"] == b(h)
        # 64 KiB (the default ws_max_message_bytes) in 16 fragments of 4 KiB, and one more.
        for _ in range(17):
            sock.sendall(_frame(0x0 if _ else 0x1, b" " * 4096, fin=False))
        opcode, payload = _read_frame(sock)
        assert opcode == 0x8 and int.from_bytes(payload[:2], "big") == 1009


def test_sockets_from_one_ipv6_subscriber_are_bounded_as_one_address(srv: LiveServer) -> None:
    """An IPv6 subscriber holds a /64: counted per address, one took 32 sockets from each of
    2^64 addresses. The limit now goes by the unit the announce budget uses (an IPv4
    address, an IPv6 /64)."""

    async def run() -> None:
        async with aiohttp.ClientSession() as session:
            opened = [
                await connect(session, srv, f"2001:db8:1:2::{n:x}")
                for n in range(1, WsLimits().max_connections_per_ip + 1)
            ]
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await connect(session, srv, "2001:db8:1:2::ffff")
            assert refused.value.status == 429
            # Another /64 is another subscriber.
            other = await connect(session, srv, "2001:db8:1:3::1")
            for ws in [*opened, other]:
                await ws.close()

    asyncio.run(run())


def test_ipv4_clients_of_a_dual_stack_socket_are_each_their_own_address() -> None:
    """A dual-stack socket names IPv4 clients ::ffff:a.b.c.d: the tracker counts them as
    the IPv4 addresses they are, not as one IPv6 /64 that every IPv4 client shares."""
    from s3torrent.tracker import ws

    core = WsTracker(WsLimits(max_connections_per_ip=1))
    assert ws._canonical("::ffff:192.0.2.1") == "192.0.2.1"
    assert core.connect(1, ws._canonical("::ffff:192.0.2.1"))
    assert core.connect(2, ws._canonical("::ffff:192.0.2.2"))
    assert not core.connect(3, ws._canonical("192.0.2.2"))
    assert ws._canonical("") == ""  # no peer name: as it is


def test_answers_go_only_to_offers_the_answerer_was_sent(srv: LiveServer, s3: Any) -> None:
    """A member of a swarm addressed answers to any other member by peer id, as many and as
    large as it liked: 64 KiB each, so a browser reading slower than the sender was dropped
    as slow once its outbox held a MiB. An answer is now relayed only for an offer the
    tracker relayed to the answerer from that peer, once."""
    _, h = public_object(s3)

    async def run() -> None:
        async with aiohttp.ClientSession() as session:
            victim = await connect(session, srv)
            mallory = await connect(session, srv, "10.0.0.13")
            await joined(victim, h, A)
            await joined(mallory, h, B)
            await mallory.send_json(answer_to(h, B, A, offer_id=b"z" * 20))
            assert (await receive(mallory))["failure reason"] == "answer to no offer of yours"
            await silent(victim)
            # The victim offers; mallory (the only other peer) is sent it and may answer it.
            await joined(victim, h, A, offers=1)
            offer = await receive(mallory)
            offer_id = offer["offer_id"].encode("latin-1")
            await mallory.send_json(answer_to(h, B, A, offer_id=offer_id))
            assert (await receive(victim))["answer"]
            await mallory.send_json(answer_to(h, B, A, offer_id=offer_id))
            assert (await receive(mallory))["failure reason"] == "answer to no offer of yours"
            await silent(victim)

    asyncio.run(run())


def test_offers_pending_per_connection_are_bounded() -> None:
    core = _core_with(A, B)
    for n in range(MAX_PENDING_OFFERS + 1):
        message = announce(H_CORE, A, 1, event=None)
        message["offers"][0]["offer_id"] = b(n.to_bytes(20, "big"))
        request = parse_message(json.dumps(message), WsLimits())
        assert isinstance(request, WsAnnounce)
        core.announce(1, request)

    def answer(n: int) -> list[tuple[int, dict[str, Any]]]:
        return _sent(core.answer(2, WsAnswer(H_CORE, B, A, n.to_bytes(20, "big"), {})))

    assert answer(0) == [(2, json.loads(failure(NO_SUCH_OFFER, "announce", H_CORE)))]
    assert answer(1)[0][0] == 1 and answer(MAX_PENDING_OFFERS)[0][0] == 1
