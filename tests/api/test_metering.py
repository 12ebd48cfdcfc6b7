"""Metering against a live server: every channel counted once, exactly, and flushed durably."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastbencode import bdecode, bencode  # type: ignore[attr-defined]

from tests.conftest import (
    ROOT_AK,
    ROOT_SK,
    LiveServer,
    add_user,
    free_port,
    make_client,
    sign_request,
    start_server,
)


@pytest.fixture(scope="module")
def metered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, int]]:
    metrics_port = free_port()
    srv = start_server(
        tmp_path_factory.mktemp("metering"),
        env={"S3TORRENT_METERING__METRICS_LISTEN": f"127.0.0.1:{metrics_port}"},
    )
    yield srv, metrics_port
    srv.stop()


def usage_totals(srv: LiveServer, bucket: str) -> dict[tuple[str, str], float]:
    """(Operation, UsageType) -> UsageValue summed over time, from the CSV report."""
    res = srv.cli("usage", "--bucket", bucket, "--by", "hour", "--format", "csv")
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    out: Counter[tuple[str, str]] = Counter()
    for r in rows:
        assert r["Service"] == "s3torrent" and r["Resource"] == bucket
        out[(r["Operation"], r["UsageType"])] += float(r["UsageValue"])
    return dict(out)


def admin_get(srv: LiveServer, path: str, ak: str = ROOT_AK, sk: str = ROOT_SK) -> Any:
    url = srv.endpoint + path
    req = urllib.request.Request(url, headers=sign_request("GET", url, ak=ak, sk=sk))
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def admin_totals(srv: LiveServer, bucket: str) -> dict[tuple[str, str], float]:
    """Like usage_totals, from GET /_admin/usage (no CLI process to start)."""
    out: Counter[tuple[str, str]] = Counter()
    for r in admin_get(srv, f"/_admin/usage?bucket={bucket}&by=hour")["rows"]:
        out[(r["Operation"], r["UsageType"])] += r["UsageValue"]
    return dict(out)


def eventually(read: Any, expected: Any, timeout: float = 15.0) -> Any:
    """read() once it equals expected (counts arrive with the next flush), else its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if value == expected or time.monotonic() > deadline:
            return value
        time.sleep(0.3)


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as r:
        body: bytes = r.read()
        return body


def lt_session() -> Any:
    import libtorrent as lt

    return lt.session(
        {
            "listen_interfaces": "127.0.0.1:0",
            "enable_dht": False,
            "enable_lsd": False,
            "enable_upnp": False,
            "enable_natpmp": False,
            "alert_mask": lt.alert.category_t.error_notification,
        }
    )


def lt_download(
    torrent: bytes, dest: Path, *, web_seed: bool, peer: tuple[str, int] | None = None
) -> int:
    """Download with libtorrent from one source only; return the payload bytes it received."""
    import libtorrent as lt

    t = dict(bdecode(torrent))
    t.pop(b"announce", None)
    t.pop(b"announce-list", None)
    if not web_seed:
        t.pop(b"url-list", None)
    ses = lt_session()
    atp = lt.add_torrent_params()
    atp.ti = lt.torrent_info(lt.bdecode(bencode(t)))
    atp.save_path = str(dest)
    h = ses.add_torrent(atp)
    if peer is not None:
        h.connect_peer(peer)
    deadline = time.monotonic() + 60
    while not h.status().is_seeding:
        assert time.monotonic() < deadline, f"libtorrent timed out: {h.status().state}"
        time.sleep(0.1)
    received = int(h.status().total_payload_download)
    ses.remove_torrent(h)
    del ses
    return received


def test_known_workload_is_counted_exactly_channel_by_channel(
    metered: tuple[LiveServer, int], tmp_path: Path
) -> None:
    srv, _ = metered
    s3 = make_client(srv.endpoint)
    bucket = "metered-workload"
    sent_in: list[int] = []
    s3.meta.events.register(
        "before-send.s3.PutObject",
        lambda request, **_: sent_in.append(int(request.headers["Content-Length"])),
    )
    s3.create_bucket(Bucket=bucket)
    data = os.urandom(100_000)
    small = os.urandom(10_000)
    s3.put_object(Bucket=bucket, Key="big", Body=data, ACL="public-read")
    s3.put_object(Bucket=bucket, Key="small", Body=small, ACL="public-read")

    got = 0
    for rng in ("bytes=0-99", "bytes=1000-5999", "bytes=-500"):
        got += len(s3.get_object(Bucket=bucket, Key="big", Range=rng)["Body"].read())
    got += len(s3.get_object(Bucket=bucket, Key="big")["Body"].read())
    assert got == 100 + 5000 + 500 + 100_000
    s3.head_object(Bucket=bucket, Key="big")
    torrent_big = fetch(f"{srv.endpoint}/{bucket}/big?torrent")
    torrent_small = fetch(f"{srv.endpoint}/{bucket}/small?torrent")

    # Web seed: the only source is its URL (one range GET for a one-block object).
    webseed_got = lt_download(torrent_small, tmp_path / "ws", web_seed=True)
    assert webseed_got == len(small)
    # The seeder: the only source is the origin peer.
    seeder_got = lt_download(
        torrent_big, tmp_path / "bt", web_seed=False, peer=("127.0.0.1", srv.peer_port)
    )
    assert seeder_got == len(data)

    eventually(lambda: admin_totals(srv, bucket).get(("GetObject-BitTorrent", "Requests-Tier2")), 7)
    totals = usage_totals(srv, bucket)
    blocks = -(-len(data) // 16384)
    assert totals == {
        ("CreateBucket", "Requests-Tier1"): 1,
        ("PutObject", "Requests-Tier1"): 2,
        ("PutObject", "DataTransfer-In-Bytes"): sum(sent_in),
        ("GetObject", "Requests-Tier2"): 4,
        ("GetObject", "DataTransfer-Out-Bytes"): got,
        # The web seed is a channel of its own, apart from REST GETs.
        ("GetObject-WebSeed", "Requests-Tier2"): 1,
        ("GetObject-WebSeed", "DataTransfer-Out-Bytes"): webseed_got,
        ("HeadObject", "Requests-Tier2"): 1,
        ("GetObjectTorrent", "Requests-Tier2"): 2,
        ("GetObjectTorrent", "DataTransfer-Out-Bytes"): len(torrent_big) + len(torrent_small),
        ("GetObject-BitTorrent", "Requests-Tier2"): blocks,
        ("GetObject-BitTorrent", "DataTransfer-Out-Bytes"): seeder_got,
    }
    assert sum(sent_in) == len(data) + len(small)

    res = srv.cli("savings", "--bucket", bucket, "--format", "json")
    assert res.returncode == 0, res.stderr
    by_key = {o["key"]: o for o in json.loads(res.stdout)["objects"]}
    assert by_key["big"]["rest_bytes"] == got
    assert by_key["big"]["seeder_bytes"] == seeder_got
    assert by_key["big"]["torrent_file_requests"] == 1
    assert by_key["small"]["rest_bytes"] == 0
    assert by_key["small"]["web_seed_bytes"] == webseed_got
    assert by_key["small"]["origin_bytes"] == webseed_got


def announce(srv: LiveServer, info_hash: bytes, peer_id: bytes, **values: Any) -> dict[Any, Any]:
    q = "&".join(
        [f"info_hash={quote(info_hash)}", f"peer_id={quote(peer_id)}", "port=51413", "compact=1"]
        + [f"{k}={v}" for k, v in values.items()]
    )
    return dict(bdecode(fetch(f"{srv.endpoint}/_tracker/announce?{q}")))


def test_swarm_reports_are_sampled_per_torrent(metered: tuple[LiveServer, int]) -> None:
    srv, _ = metered
    s3 = make_client(srv.endpoint)
    bucket = "metered-swarm"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="obj", Body=os.urandom(50_000), ACL="public-read")
    info = dict(bdecode(fetch(f"{srv.endpoint}/{bucket}/obj?torrent")))
    import hashlib

    ih = hashlib.sha1(bencode(info[b"info"])).digest()
    for n, pid in enumerate((b"-XX0001-aaaaaaaaaaaa", b"-XX0001-bbbbbbbbbbbb")):
        r = announce(srv, ih, pid, uploaded=0, downloaded=0, left=50_000, event="started")
        assert b"failure reason" not in r, r
        announce(srv, ih, pid, uploaded=1000 * n, downloaded=50_000, left=0, event="completed")

    def swarm() -> list[Any]:
        objects: list[Any] = admin_get(srv, f"/_admin/savings?bucket={bucket}&key=obj")["objects"]
        return [(o["swarm_completed"], o["swarm_downloaded"]) for o in objects]

    assert eventually(swarm, [(2, 100_000)]) == [(2, 100_000)]
    [obj] = admin_get(srv, f"/_admin/savings?bucket={bucket}&key=obj")["objects"]
    assert obj["swarm_completed"] == 2
    assert obj["swarm_downloaded"] == 100_000
    assert obj["swarm_uploaded"] == 1000
    assert obj["origin_bytes"] == 0
    assert obj["offloaded_bytes"] == 100_000
    assert obj["offload_ratio"] == 1.0
    assert obj["cost_avoided"] == round(100_000 / 2**30 * 0.09, 6)
    # The same counters by hour (an announce may straddle an hour: sum the periods).
    history = admin_get(srv, f"/_admin/savings/history?bucket={bucket}&by=hour")
    assert history["by"] == "hour" and {p["bucket"] for p in history["periods"]} == {bucket}
    assert sum(p["swarm_downloaded"] for p in history["periods"]) == 100_000
    assert sum(p["offloaded_bytes"] for p in history["periods"]) == 100_000
    assert history["total_origin_bytes"] == 0


def test_200_concurrent_requests_lose_no_counts(
    metered: tuple[LiveServer, int],
) -> None:
    import aiohttp

    srv, _ = metered
    s3 = make_client(srv.endpoint)
    bucket = "metered-concurrent"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"z" * 777, ACL="public-read")
    n = 1000

    async def run() -> int:
        total = 0
        conn = aiohttp.TCPConnector(limit=200)
        async with aiohttp.ClientSession(connector=conn) as session:
            sem = asyncio.Semaphore(200)

            async def one(i: int) -> int:
                async with sem:
                    method = "HEAD" if i % 4 == 0 else "GET"
                    async with session.request(method, f"{srv.endpoint}/{bucket}/k") as r:
                        assert r.status == 200
                        return len(await r.read())

            for got in await asyncio.gather(*(one(i) for i in range(n))):
                total += got
        return total

    received = asyncio.run(run())
    assert received == 777 * n * 3 // 4
    expected = {
        ("CreateBucket", "Requests-Tier1"): 1,
        ("PutObject", "Requests-Tier1"): 1,
        ("PutObject", "DataTransfer-In-Bytes"): 777,
        ("GetObject", "Requests-Tier2"): n * 3 // 4,
        ("GetObject", "DataTransfer-Out-Bytes"): received,
        ("HeadObject", "Requests-Tier2"): n // 4,
    }
    assert eventually(lambda: admin_totals(srv, bucket), expected) == expected


def test_admin_usage_over_http_root_sees_all_user_sees_own(
    metered: tuple[LiveServer, int],
) -> None:
    srv, _ = metered
    carol = add_user(srv, f"carol{os.getpid()}")
    root = make_client(srv.endpoint)
    mine = make_client(srv.endpoint, carol.access_key, carol.secret_key)
    root.create_bucket(Bucket="metered-root-only")
    mine.create_bucket(Bucket="metered-carol")
    mine.put_object(Bucket="metered-carol", Key="a", Body=b"abc")
    eventually(lambda: admin_totals(srv, "metered-carol").get(("PutObject", "Requests-Tier1")), 1)

    def get(path: str, ak: str | None = None, sk: str | None = None) -> tuple[int, bytes]:
        url = srv.endpoint + path
        headers = sign_request("GET", url, ak=ak, sk=sk) if ak and sk else {}
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers)) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    status, body = get("/_admin/usage?by=hour", "S3TROOTTESTKEY000001",
                       "root-secret-key-for-tests-0000000000000")  # fmt: skip
    assert status == 200
    resources = {r["Resource"] for r in json.loads(body)["rows"]}
    assert {"metered-root-only", "metered-carol"} <= resources
    status, body = get("/_admin/usage", carol.access_key, carol.secret_key)
    assert status == 200
    rows = json.loads(body)["rows"]
    assert {r["Resource"] for r in rows} == {"metered-carol"}
    ops = {(r["Operation"], r["UsageType"]): r["UsageValue"] for r in rows}
    assert ops[("PutObject", "DataTransfer-In-Bytes")] == 3
    status, _ = get("/_admin/usage?bucket=metered-root-only", carol.access_key, carol.secret_key)
    assert status == 403
    status, _ = get("/_admin/usage")
    assert status == 403
    status, body = get("/_admin/usage?from=yesterday", carol.access_key, carol.secret_key)
    assert status == 400 and b"InvalidArgument" in body
    status, body = get("/_admin/savings", carol.access_key, carol.secret_key)
    assert status == 200 and json.loads(body)["objects"] == []
    status, body = get("/_admin/savings/history", carol.access_key, carol.secret_key)
    assert status == 200 and json.loads(body)["periods"] == []
    path = "/_admin/savings/history?bucket=metered-root-only"
    assert get(path, carol.access_key, carol.secret_key)[0] == 403
    assert get("/_admin/savings/history")[0] == 403
    status, body = get("/_admin/savings/history?by=week", carol.access_key, carol.secret_key)
    assert status == 400 and b"InvalidArgument" in body


def test_prometheus_metrics_on_their_own_listener(metered: tuple[LiveServer, int]) -> None:
    srv, port = metered
    s3 = make_client(srv.endpoint)
    s3.create_bucket(Bucket="metered-prom")
    s3.put_object(Bucket="metered-prom", Key="p", Body=b"q" * 10)
    s3.get_object(Bucket="metered-prom", Key="p")["Body"].read()
    text = fetch(f"http://127.0.0.1:{port}/metrics").decode()
    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert samples['s3torrent_requests_total{operation="GetObject",status="200"}'] >= 1
    assert samples['s3torrent_transfer_bytes_total{channel="PutObject",direction="in"}'] >= 10
    assert samples['s3torrent_request_duration_seconds_count{operation="GetObject"}'] >= 1
    for gauge in (
        "s3torrent_torrents_registered",
        "s3torrent_hash_jobs_queued",
        "s3torrent_peer_connections",
        's3torrent_swarm_peers{role="seeder"}',
    ):
        assert gauge in samples, gauge
    # Not on the S3 port.
    with pytest.raises(urllib.error.HTTPError):
        fetch(f"{srv.endpoint}/metrics")


def test_flushed_counts_survive_kill9(tmp_path: Path) -> None:
    srv = start_server(tmp_path)
    try:
        s3 = make_client(srv.endpoint)
        s3.create_bucket(Bucket="metered-crash")
        s3.put_object(Bucket="metered-crash", Key="k", Body=b"x" * 1234)
        for _ in range(5):
            s3.get_object(Bucket="metered-crash", Key="k")["Body"].read()
        expected = {
            ("CreateBucket", "Requests-Tier1"): 1,
            ("PutObject", "Requests-Tier1"): 1,
            ("PutObject", "DataTransfer-In-Bytes"): 1234,
            ("GetObject", "Requests-Tier2"): 5,
            ("GetObject", "DataTransfer-Out-Bytes"): 5 * 1234,
        }
        assert eventually(lambda: admin_totals(srv, "metered-crash"), expected) == expected
        srv.kill9()
        srv.start()  # same data directory and ports
        assert admin_totals(srv, "metered-crash") == expected
        # Counting goes on after the restart, added to what was there.
        s3.get_object(Bucket="metered-crash", Key="k")["Body"].read()
    finally:
        srv.stop()  # a clean stop flushes the rest
    totals = usage_totals(srv, "metered-crash")
    assert totals[("GetObject", "Requests-Tier2")] == 6
