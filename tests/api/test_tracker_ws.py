"""The WebSocket (WebTorrent) tracker against a live server, driven by aiohttp's client."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from fastbencode import bdecode, bencode

from tests.conftest import LiveServer, make_client, start_server

MAX_MESSAGE = 8192
PER_IP = 6


@pytest.fixture(scope="module")
def ws_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = start_server(
        tmp_path_factory.mktemp("wstracker"),
        env={
            "S3TORRENT_TRACKER__WS_MAX_MESSAGE_BYTES": str(MAX_MESSAGE),
            "S3TORRENT_TRACKER__WS_MAX_CONNECTIONS_PER_IP": str(PER_IP),
            "S3TORRENT_TORRENT__WEBTORRENT_SCRIPT_URL": "http://127.0.0.1:1/webtorrent.min.js",
        },
    )
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def ws_s3(ws_server: LiveServer) -> Any:
    return make_client(ws_server.endpoint)


_n = [0]


@pytest.fixture
def public_object(ws_s3: Any) -> tuple[str, str, bytes]:
    """(bucket, key, info hash) of a fresh public object."""
    _n[0] += 1
    bucket = f"ws-{os.getpid()}-{_n[0]}"
    ws_s3.create_bucket(Bucket=bucket)
    ws_s3.put_object(Bucket=bucket, Key="f.bin", Body=os.urandom(100_000), ACL="public-read")
    return bucket, "f.bin", info_hash(ws_s3, bucket, "f.bin")


def info_hash(s3: Any, bucket: str, key: str) -> bytes:
    meta = bdecode(s3.get_object_torrent(Bucket=bucket, Key=key)["Body"].read())
    return hashlib.sha1(bencode(meta[b"info"])).digest()


def ws_url(srv: LiveServer) -> str:
    return "ws" + srv.endpoint[4:] + "/_tracker/ws"


def b(value: bytes) -> str:
    return value.decode("latin-1")


def announce(h: bytes, peer: bytes, offers: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "action": "announce",
        "info_hash": b(h),
        "peer_id": b(peer),
        "numwant": offers,
        "uploaded": 0,
        "downloaded": 0,
        "left": 100_000,
        "event": "started",
        "offers": [
            {"offer_id": b(bytes([i + 1]) * 20), "offer": {"type": "offer", "sdp": f"sdp-{i}"}}
            for i in range(offers)
        ],
        **extra,
    }


async def receive(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5.0) -> dict[str, Any]:
    msg = await ws.receive(timeout=timeout)
    assert msg.type is aiohttp.WSMsgType.TEXT, msg
    body: dict[str, Any] = json.loads(msg.data)
    return body


PEER_A, PEER_B = b"A" * 20, bytes(range(236, 256))


def test_offer_and_answer_are_relayed_and_scrape_counts(
    ws_server: LiveServer, public_object: tuple[str, str, bytes]
) -> None:
    _, _, h = public_object

    async def run() -> None:
        async with aiohttp.ClientSession() as session:
            a = await session.ws_connect(ws_url(ws_server))
            bb = await session.ws_connect(ws_url(ws_server))
            await a.send_json(announce(h, PEER_A))
            first = await receive(a)
            assert first["action"] == "announce" and first["interval"] > 0
            assert first["info_hash"] == b(h) and first["incomplete"] == 1
            # B announces with offers: A (the only other peer) gets one, B its answer.
            await bb.send_json(announce(h, PEER_B, offers=3))
            response = await receive(bb)
            assert response["incomplete"] == 2
            offer = await receive(a)
            assert offer["peer_id"] == b(PEER_B) and offer["offer"]["sdp"].startswith("sdp-")
            assert offer["info_hash"] == b(h)
            await a.send_json(
                {
                    "action": "announce",
                    "info_hash": b(h),
                    "peer_id": b(PEER_A),
                    "to_peer_id": offer["peer_id"],
                    "offer_id": offer["offer_id"],
                    "answer": {"type": "answer", "sdp": "the answer"},
                }
            )
            answer = await receive(bb)
            assert answer["answer"] == {"type": "answer", "sdp": "the answer"}
            assert answer["peer_id"] == b(PEER_A) and answer["offer_id"] == offer["offer_id"]
            await a.send_json({"action": "scrape", "info_hash": [b(h)]})
            scrape = await receive(a)
            assert scrape["files"][b(h)] == {"complete": 0, "incomplete": 2, "downloaded": 0}
            await a.close()
            await bb.close()

    asyncio.run(run())


def test_private_object_is_refused(ws_server: LiveServer, ws_s3: Any) -> None:
    bucket = f"ws-private-{os.getpid()}"
    ws_s3.create_bucket(Bucket=bucket)
    ws_s3.put_object(Bucket=bucket, Key="p.bin", Body=os.urandom(50_000), ACL="public-read")
    h = info_hash(ws_s3, bucket, "p.bin")
    ws_s3.put_object_acl(Bucket=bucket, Key="p.bin", ACL="private")

    async def run() -> None:
        async with aiohttp.ClientSession() as session, session.ws_connect(ws_url(ws_server)) as ws:
            await ws.send_json(announce(h, PEER_A, offers=1))
            body = await receive(ws)
            assert body["failure reason"] == "unregistered torrent"
            assert body["info_hash"] == b(h)
            await ws.send_json({"action": "scrape", "info_hash": b(h)})
            assert (await receive(ws))["files"] == {}

    asyncio.run(run())


def test_revocation_closes_the_swarm_within_a_second(
    ws_server: LiveServer, ws_s3: Any, public_object: tuple[str, str, bytes]
) -> None:
    bucket, key, h = public_object

    async def run() -> None:
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(ws_url(ws_server))
            await ws.send_json(announce(h, PEER_A))
            assert "failure reason" not in await receive(ws)
            started = time.monotonic()
            await asyncio.to_thread(ws_s3.put_object_acl, Bucket=bucket, Key=key, ACL="private")
            body = await receive(ws, timeout=2)
            assert body["failure reason"] and body["info_hash"] == b(h)
            closing = await ws.receive(timeout=2)
            assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            assert time.monotonic() - started < 1.0 + 0.5  # the ACL round trip included
            # And a new announce for it is refused.
            again = await session.ws_connect(ws_url(ws_server))
            await again.send_json(announce(h, PEER_A))
            assert (await receive(again))["failure reason"] == "unregistered torrent"
            await again.close()

    asyncio.run(run())


def test_oversized_and_bad_messages(ws_server: LiveServer) -> None:
    async def run() -> None:
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(ws_url(ws_server))
            await ws.send_str("not json")
            assert (await receive(ws))["failure reason"] == "invalid JSON"
            await ws.send_str(json.dumps({"action": "announce", "offers": "x" * MAX_MESSAGE}))
            msg = await ws.receive(timeout=5)
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            assert ws.close_code == 1009  # message too big

    asyncio.run(run())


def test_connections_per_address_are_bounded(ws_server: LiveServer) -> None:
    async def run() -> None:
        async with aiohttp.ClientSession() as session:
            open_ = [await session.ws_connect(ws_url(ws_server)) for _ in range(PER_IP)]
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(ws_url(ws_server))
            assert refused.value.status == 429
            await open_[0].close()
            await asyncio.sleep(0.2)
            open_[0] = await session.ws_connect(ws_url(ws_server))  # a place is free again
            for ws in open_:
                await ws.close()

    asyncio.run(run())


def test_plain_get_is_told_to_upgrade(ws_server: LiveServer) -> None:
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(ws_server.endpoint + "/_tracker/ws", timeout=5)
    assert err.value.code == 426


# ---- the download page ----


def page(srv: LiveServer, bucket: str, key: str) -> tuple[int, str, str]:
    url = f"{srv.endpoint}/{bucket}/{key}?torrent&format=html"
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.headers["Content-Type"], r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read().decode()


def test_download_page_of_a_public_object(
    ws_server: LiveServer, public_object: tuple[str, str, bytes]
) -> None:
    bucket, key, _ = public_object
    status, ctype, text = page(ws_server, bucket, key)
    assert status == 200 and ctype.startswith("text/html")
    config = json.loads(text.split('id="s3t-config">', 1)[1].split("</script>", 1)[0])
    assert config["webtorrent"] == "http://127.0.0.1:1/webtorrent.min.js"
    assert config["torrent"] == "?torrent" and config["length"] == 100_000
    assert "<h1>f.bin</h1>" in text


def test_download_page_escapes_the_name(ws_server: LiveServer, ws_s3: Any) -> None:
    bucket = f"ws-names-{os.getpid()}"
    ws_s3.create_bucket(Bucket=bucket)
    # The torrent's name has no `<` or `>` (metainfo.torrent_name makes it portable), but
    # `&` and `'` stay in it and must reach the page escaped.
    key = "<script>x&'y.bin"
    ws_s3.put_object(Bucket=bucket, Key=key, Body=b"1" * 1000, ACL="public-read")
    status, _, text = page(ws_server, bucket, urllib.parse.quote(key))
    assert status == 200
    assert "<script>x" not in text
    # In the page's markup escaped; in its JSON block (where only `<` could end it) as is.
    assert "<h1>_script_x&amp;&#x27;y.bin</h1>" in text
    assert '"_script_x&\'y.bin"' in text
    assert text.count("<script") == 2  # the JSON block and the module, nothing else


def test_download_page_of_a_private_object_is_refused(ws_server: LiveServer, ws_s3: Any) -> None:
    bucket = f"ws-page-private-{os.getpid()}"
    ws_s3.create_bucket(Bucket=bucket)
    ws_s3.put_object(Bucket=bucket, Key="p.bin", Body=b"1" * 1000)
    status, _, _ = page(ws_server, bucket, "p.bin")
    assert status == 403


def test_browser_traffic_from_announces_joins_the_savings_report(
    ws_server: LiveServer, public_object: tuple[str, str, bytes]
) -> None:
    from tests.api.test_metering import admin_get

    bucket, key, h = public_object

    async def run() -> None:
        async with aiohttp.ClientSession() as session:
            a = await session.ws_connect(ws_url(ws_server))
            bb = await session.ws_connect(ws_url(ws_server))
            # The metering sampler's first look at a swarm is its baseline: let it see this
            # one before anything is transferred.
            await asyncio.sleep(2.5)
            await a.send_json(announce(h, PEER_A, uploaded=0, downloaded=40_000))
            await bb.send_json(announce(h, PEER_B, uploaded=30_000, downloaded=60_000))
            for ws in (a, bb):
                assert "failure reason" not in (response := await receive(ws)), response
            await a.send_json(announce(h, PEER_A, uploaded=0, downloaded=100_000, left=0))
            assert "failure reason" not in (response := await receive(a)), response
            deadline = time.monotonic() + 10
            while True:
                report = await asyncio.to_thread(
                    admin_get, ws_server, f"/_admin/savings?bucket={bucket}"
                )
                [obj] = [o for o in report["objects"] if o["key"] == key] or [None]
                if obj is not None and obj["swarm_downloaded"] >= 160_000:
                    break
                assert time.monotonic() < deadline, str(report["objects"])
                await asyncio.sleep(0.3)
            assert obj["swarm_downloaded"] == 100_000 + 60_000
            assert obj["swarm_uploaded"] == 30_000
            await a.close()
            await bb.close()

    asyncio.run(run())
