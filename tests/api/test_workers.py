"""`serve --workers 2`: a supervisor, an owner worker and another, sharing the S3 port.

Which worker a connection reaches is the kernel's choice (SO_REUSEPORT); `/_health` names
the worker that answered (`x-s3torrent-worker: INDEX/PID`), so a test that needs one worker
opens connections until one lands there and sends its requests on that connection.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote_from_bytes

import pytest
from fastbencode import bdecode  # type: ignore[attr-defined]

from tests.api.test_metering import usage_totals
from tests.conftest import LiveServer, free_port, make_client, sign_request, start_server
from tests.seeding import (
    RawPeer,
    fetch_torrent,
    info_hash_v1,
    lt_download,
    public_read_policy,
    put_public,
    wait_for,
)

WORKER = "x-s3torrent-worker"
FORWARDED = "X-S3torrent-Forwarded-Client"


def worker_of(conn: http.client.HTTPConnection) -> tuple[int, int]:
    """(index, pid) of the worker serving this connection."""
    conn.request("GET", "/_health")
    response = conn.getresponse()
    response.read()
    assert response.status == 200
    return worker_tag(response)


def worker_tag(response: http.client.HTTPResponse) -> tuple[int, int]:
    """(index, pid) that a `/_health` answer names."""
    index, pid = response.getheader(WORKER, "").split("/")
    return int(index), int(pid)


def connect_to(srv: LiveServer, index: int) -> http.client.HTTPConnection:
    """A keep-alive connection that the kernel gave to worker `index`."""
    for _ in range(200):
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        if worker_of(conn)[0] == index:
            return conn
        conn.close()
    raise AssertionError(f"no connection reached worker {index}")


def wait_restarted(srv: LiveServer, index: int, pid: int) -> None:
    """Until a new process serves worker `index` (pid was the one killed)."""

    def replaced() -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        try:
            conn.request("GET", "/_health")
            response = conn.getresponse()
            response.read()
        except (ConnectionError, http.client.RemoteDisconnected):
            return False
        finally:
            conn.close()
        if response.status == 503:
            return False  # a new worker listens a moment before it says it has started
        assert response.status == 200
        got, new_pid = worker_tag(response)
        return got == index and new_pid != pid

    wait_for(replaced, f"worker {index} to be started again", timeout=30)


def send(
    conn: http.client.HTTPConnection,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    signed: bool = False,
) -> tuple[int, bytes]:
    all_headers = dict(headers or {})
    if signed:
        url = f"http://127.0.0.1:{conn.port}{path}"
        all_headers = sign_request(method, url, headers=all_headers, body=body)
    conn.request(method, path, body=body or None, headers=all_headers)
    response = conn.getresponse()
    return response.status, response.read()


def announce_path(info_hash: bytes, peer_id: bytes, port: int, compact: int = 0) -> str:
    return (
        f"/announce?info_hash={quote_from_bytes(info_hash)}&peer_id={quote_from_bytes(peer_id)}"
        f"&port={port}&uploaded=0&downloaded=0&left=100&compact={compact}&numwant=50"
        "&event=started"
    )


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = start_server(tmp_path_factory.mktemp("workers"), workers=2)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def s3w(two: LiveServer) -> Any:
    return make_client(two.endpoint)


def test_both_workers_serve(two: LiveServer) -> None:
    seen: dict[int, int] = {}
    for _ in range(200):
        conn = http.client.HTTPConnection("127.0.0.1", two.port, timeout=10)
        index, pid = worker_of(conn)
        conn.close()
        seen[index] = pid
        if len(seen) == 2:
            break
    assert sorted(seen) == [0, 1]
    assert seen[0] != seen[1] and os.getpid() not in seen.values()


def test_put_get_and_multipart(s3w: Any) -> None:
    s3w.create_bucket(Bucket="wk-objects")
    for i in range(8):
        s3w.put_object(Bucket="wk-objects", Key=f"k{i}", Body=f"v{i}".encode() * 1000)
    for i in range(8):
        body = s3w.get_object(Bucket="wk-objects", Key=f"k{i}")["Body"].read()
        assert body == f"v{i}".encode() * 1000
    part = os.urandom(5 * 1024 * 1024)
    upload = s3w.create_multipart_upload(Bucket="wk-objects", Key="mp")["UploadId"]
    etags = [
        s3w.upload_part(
            Bucket="wk-objects",
            Key="mp",
            UploadId=upload,
            PartNumber=n,
            Body=part[::-1] if n == 2 else part,
        )["ETag"]
        for n in (1, 2)
    ]
    s3w.complete_multipart_upload(
        Bucket="wk-objects",
        Key="mp",
        UploadId=upload,
        MultipartUpload={
            "Parts": [{"PartNumber": n, "ETag": e} for n, e in zip((1, 2), etags, strict=True)]
        },
    )
    assert s3w.get_object(Bucket="wk-objects", Key="mp")["Body"].read() == part + part[::-1]


def test_torrent_downloads_with_libtorrent(two: LiveServer, s3w: Any, tmp_path: Path) -> None:
    s3w.create_bucket(Bucket="wk-torrent")
    data = os.urandom(3 * 1024 * 1024 + 12345)
    put_public(s3w, "wk-torrent", "file.bin", data)
    torrent = fetch_torrent(two.endpoint, "wk-torrent", "file.bin")
    # Tracker, web seed and seeder, each reached through whichever worker the kernel picks.
    got = lt_download(torrent, tmp_path / "dl")
    assert got.read_bytes() == data


def test_forwarded_answers_are_the_owners(two: LiveServer, s3w: Any) -> None:
    s3w.create_bucket(Bucket="wk-webseed")
    answers = []
    for index in (0, 1):
        # A fresh torrent each: the web seed serves a lone client's first range whole.
        data = os.urandom(200_000)
        put_public(s3w, "wk-webseed", f"obj{index}", data)
        url_list = bdecode(fetch_torrent(two.endpoint, "wk-webseed", f"obj{index}"))[b"url-list"]
        url = (url_list[0] if isinstance(url_list, list) else url_list).decode()
        conn = connect_to(two, index)
        conn.request("GET", url[url.index("/_webseed/") :], headers={"Range": "bytes=1000-70999"})
        response = conn.getresponse()
        assert response.read() == data[1000:71000]
        answers.append(
            [
                (k, v)
                for k, v in response.getheaders()
                if k not in ("Date", "ETag", "x-amz-request-id", "x-amz-id-2")
            ]
        )
        status, stats = send(conn, "GET", "/_seeder/stats", signed=True)
        # The seeder runs in the owner: both workers show its address.
        assert status == 200 and json.loads(stats)["address"][1] == two.peer_port, stats[:200]
    # The same headers in the same order, whether the owner answered or forwarded.
    assert answers[0] == answers[1]
    assert ("Content-Range", "bytes 1000-70999/200000") in answers[1]


def test_revocation_on_another_worker_reaches_the_owner(two: LiveServer, s3w: Any) -> None:
    s3w.create_bucket(Bucket="wk-revoke")
    put_public(s3w, "wk-revoke", "obj", os.urandom(300_000))
    torrent = fetch_torrent(two.endpoint, "wk-revoke", "obj")
    info_hash = info_hash_v1(torrent)
    owner = connect_to(two, 0)
    other = connect_to(two, 1)
    status, body = send(owner, "GET", announce_path(info_hash, b"-WK0001-aaaaaaaaaaaa", 7001))
    assert status == 200 and b"failure reason" not in bdecode(body)
    peer = RawPeer(two.peer_port)
    assert peer.handshake(info_hash)

    status, body = send(
        other, "PUT", "/wk-revoke/obj?acl", headers={"x-amz-acl": "private"}, signed=True
    )
    assert status == 200, body
    changed = time.monotonic()

    def revoked() -> bool:
        torrent_status, _ = send(owner, "GET", "/wk-revoke/obj?torrent")
        _, reply = send(owner, "GET", announce_path(info_hash, b"-WK0001-bbbbbbbbbbbb", 7002))
        return torrent_status == 403 and b"failure reason" in bdecode(reply)

    wait_for(revoked, "the owner worker to revoke the torrent", timeout=1.0)
    assert peer.closed_by_peer(timeout=max(0.05, 1.0 - (time.monotonic() - changed)))
    peer.close()


def test_an_overwrite_on_another_worker_is_revoked_before_it_is_answered(
    two: LiveServer, s3w: Any
) -> None:
    """The overwritten version's swarm is refused by the owner at the first announce after
    the other worker answered the PUT that replaced it, also when writes of a private key
    beside it (which wait for nobody: PublicTorrents.may_hold) came first."""
    s3w.create_bucket(Bucket="wk-overwrite")
    put_public(s3w, "wk-overwrite", "obj", os.urandom(300_000))
    s3w.put_object(Bucket="wk-overwrite", Key="private", Body=b"p" * 1000)
    info_hash = info_hash_v1(fetch_torrent(two.endpoint, "wk-overwrite", "obj"))
    owner = connect_to(two, 0)
    other = connect_to(two, 1)
    status, body = send(owner, "GET", announce_path(info_hash, b"-WK0002-aaaaaaaaaaaa", 7011))
    assert status == 200 and b"failure reason" not in bdecode(body)
    for _ in range(3):
        status, body = send(
            other, "PUT", "/wk-overwrite/private", body=os.urandom(1000), signed=True
        )
        assert status == 200, body
    status, body = send(other, "PUT", "/wk-overwrite/obj", body=os.urandom(2000), signed=True)
    assert status == 200, body
    # At once, no polling.
    peer_id = b"-WK0002-bbbbbbbbbbbb"
    status, reply = send(owner, "GET", announce_path(info_hash, peer_id, 7012))
    assert status == 200 and b"failure reason" in bdecode(reply), reply


def test_a_small_published_object_overwritten_on_another_worker_is_revoked_at_once(
    two: LiveServer, s3w: Any
) -> None:
    """An inline object's torrent is made and published at its first ?torrent, which marks
    its key: a small overwrite on another worker reads that mark in its commit, so its event
    still goes to every worker (only writes of keys never published stay in their process,
    ObjectWritten.written_unmarked), and the owner refuses the old swarm at once."""
    s3w.create_bucket(Bucket="wk-small")
    put_public(s3w, "wk-small", "obj", os.urandom(1000))
    owner = connect_to(two, 0)
    other = connect_to(two, 1)
    for n in range(3):
        status, body = send(owner, "GET", "/wk-small/obj?torrent")
        assert status == 200, body
        info_hash = info_hash_v1(body)
        peer_id = b"-WK0003-%012d" % n
        status, body = send(owner, "GET", announce_path(info_hash, peer_id, 7021 + n))
        assert status == 200 and b"failure reason" not in bdecode(body), body
        status, body = send(
            other,
            "PUT",
            "/wk-small/obj",
            body=os.urandom(1000),
            headers={"x-amz-acl": "public-read"},
            signed=True,
        )
        assert status == 200, body
        status, reply = send(owner, "GET", announce_path(info_hash, peer_id, 7021 + n))
        assert status == 200 and b"failure reason" in bdecode(reply), reply


def race(*calls: Callable[[], tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    """Each call on a thread of its own, all released at once; their answers in order."""
    start = threading.Barrier(len(calls), timeout=10)
    answers: list[tuple[int, bytes]] = [(0, b"")] * len(calls)

    def run(i: int) -> None:
        start.wait()
        answers[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return answers


def test_publications_racing_small_overwrites_on_another_worker_leave_no_stale_swarm(
    two: LiveServer, s3w: Any
) -> None:
    """The hostile timing for writes left out of the relay: the first ?torrent of a small
    public object (which marks its key, then publishes) on the owner, at the same moment as
    an overwrite of it on the other worker (which reads the mark in its commit). However
    they interleave, no swarm of a replaced version is admitted afterwards, and the current
    version's is."""
    s3w.create_bucket(Bucket="wk-race")
    owner = connect_to(two, 0)
    other = connect_to(two, 1)
    handed_out: dict[str, set[bytes]] = {}
    for n in range(40):  # a key of its own each time: only the first ?torrent marks it
        key = f"k{n}"
        put_public(s3w, "wk-race", key, os.urandom(800))
        results = race(
            lambda key=key: send(owner, "GET", f"/wk-race/{key}?torrent"),
            lambda key=key: send(
                other,
                "PUT",
                f"/wk-race/{key}",
                body=os.urandom(800),
                headers={"x-amz-acl": "public-read"},
                signed=True,
            ),
        )
        assert results[1][0] == 200, results[1]
        status, body = results[0]
        assert status == 200, body
        handed_out.setdefault(key, set()).add(info_hash_v1(body))
    for n, (key, hashes) in enumerate(handed_out.items()):
        status, body = send(owner, "GET", f"/wk-race/{key}?torrent")
        assert status == 200, body
        current = info_hash_v1(body)
        for m, info_hash in enumerate(sorted(hashes | {current})):
            peer_id = b"-WK0004-%06d%06d" % (n, m)
            status, reply = send(owner, "GET", announce_path(info_hash, peer_id, 7100 + m))
            assert status == 200, reply
            refused = b"failure reason" in bdecode(reply)
            assert refused == (info_hash != current), (key, info_hash.hex(), reply)


def test_forwarded_client_header_from_tcp_is_ignored(two: LiveServer, s3w: Any) -> None:
    s3w.create_bucket(Bucket="wk-spoof")
    put_public(s3w, "wk-spoof", "obj", os.urandom(100_000))
    info_hash = info_hash_v1(fetch_torrent(two.endpoint, "wk-spoof", "obj"))
    spoof = {FORWARDED: "10.9.8.7"}
    for index, port in ((0, 7101), (1, 7102)):
        conn = connect_to(two, index)
        peer_id = f"-WK0002-spoofer{index}abcd".encode()[:20]
        status, _ = send(conn, "GET", announce_path(info_hash, peer_id, port), headers=spoof)
        assert status == 200
    status, body = send(
        connect_to(two, 1), "GET", announce_path(info_hash, b"-WK0003-listener0000", 7103)
    )
    assert status == 200
    peers = {int(p[b"port"]): p[b"ip"] for p in bdecode(body)[b"peers"]}
    # Both announces are listed, each with the address the worker's socket saw.
    assert peers[7101] == peers[7102] == b"127.0.0.1", peers
    assert b"10.9.8.7" not in peers.values()


def test_killed_worker_is_started_again(two: LiveServer) -> None:
    other = connect_to(two, 1)
    _, pid = worker_of(other)
    other.close()
    os.kill(pid, signal.SIGKILL)
    # Meanwhile the owner answers every new connection.
    for _ in range(20):
        conn = http.client.HTTPConnection("127.0.0.1", two.port, timeout=10)
        try:
            assert worker_of(conn)[0] in (0, 1)
        except (ConnectionError, http.client.RemoteDisconnected):
            pass  # accepted by the killed worker just before it died
        finally:
            conn.close()

    wait_restarted(two, 1, pid)
    assert "worker 1 (pid" in (two.log_path.read_text() if two.log_path else "")


def test_usage_sums_workers_and_sigterm_stops_all(tmp_path: Path) -> None:
    srv = start_server(tmp_path, workers=2)
    try:
        s3 = make_client(srv.endpoint)
        s3.create_bucket(Bucket="wk-usage")
        put_public(s3, "wk-usage", "obj", b"x" * 1000)
        served = {0: 0, 1: 0}
        pids = set()
        for _ in range(40):
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
            index, pid = worker_of(conn)
            pids.add(pid)
            status, body = send(conn, "GET", "/wk-usage/obj")
            assert status == 200 and body == b"x" * 1000
            served[index] += 1
            conn.close()
        assert served[0] and served[1], served
    finally:
        assert srv.stop() == 0
    for pid in pids:  # every worker is gone, none orphaned
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    totals = usage_totals(srv, "wk-usage")
    assert totals[("GetObject", "Requests-Tier2")] == 40
    assert totals[("GetObject", "DataTransfer-Out-Bytes")] == 40 * 1000


def test_acknowledged_puts_survive_kill9_of_every_process(tmp_path: Path) -> None:
    srv = start_server(tmp_path, workers=2)
    s3 = make_client(srv.endpoint, max_pool_connections=8)
    s3.create_bucket(Bucket="wk-durable")
    acknowledged: dict[str, bytes] = {}
    stop = threading.Event()

    def writer(n: int) -> None:
        client = make_client(srv.endpoint, max_pool_connections=1)
        i = 0
        while not stop.is_set():
            key, body = f"w{n}/{i}", os.urandom(100 + (i % 7) * 20_000)
            try:
                client.put_object(Bucket="wk-durable", Key=key, Body=body)
            except Exception:
                return  # the server is gone
            acknowledged[key] = body
            i += 1

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    wait_for(lambda: len(acknowledged) >= 60, "60 acknowledged PUTs", timeout=60)
    srv.kill9()
    stop.set()
    for t in threads:
        t.join(30)
    srv.start()
    try:
        s3 = make_client(srv.endpoint)
        for key, body in list(acknowledged.items()):
            assert s3.get_object(Bucket="wk-durable", Key=key)["Body"].read() == body, key
    finally:
        srv.stop()


def test_a_worker_that_cannot_start_stops_the_start_with_its_message(tmp_path: Path) -> None:
    """A failure only the owner meets (its UDP tracker port is taken) is the supervisor's
    one-line error and exit status, as a single process's would be."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "s3torrent.cli",
                "serve",
                "--workers",
                "2",
                "--data-dir",
                str(tmp_path / "data"),
                "--listen",
                f"127.0.0.1:{free_port()}",
                "--peer-listen",
                f"127.0.0.1:{free_port()}",
            ],
            env={**os.environ, "S3TORRENT_TRACKER__UDP_LISTEN": f"127.0.0.1:{port}"},
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode != 0
    assert f"cannot listen for the UDP tracker on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


GETS_200 = 's3torrent_requests_total{operation="GetObject",status="200"}'


def metrics_via(srv: LiveServer, index: int) -> dict[str, float]:
    """/_metrics as a connection to worker `index` gets it (forwarded to the owner)."""
    conn = connect_to(srv, index)
    try:
        status, body = send(conn, "GET", "/_metrics", signed=True)
    finally:
        conn.close()
    assert status == 200, body[:300]
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in body.decode().splitlines()
        if line and not line.startswith("#")
    }


def test_metrics_sum_every_worker(two: LiveServer, s3w: Any) -> None:
    """Prometheus sees the node: requests either worker answered, whichever worker is
    scraped, and counters that never go back when a worker is started again (they showed
    only the answering worker's requests, half of them with two workers)."""
    s3w.create_bucket(Bucket="wk-metrics")
    put_public(s3w, "wk-metrics", "m", b"m" * 100)
    before = metrics_via(two, 0).get(GETS_200, 0.0)
    served = {0: 0, 1: 0}
    for index in (0, 1):
        conn = connect_to(two, index)
        for _ in range(5 + 7 * index):
            status, body = send(conn, "GET", "/wk-metrics/m")
            assert status == 200 and body == b"m" * 100
            served[index] += 1
        conn.close()
    want = before + sum(served.values())
    wait_for(lambda: metrics_via(two, 0).get(GETS_200) == want, f"{GETS_200} = {want}")
    assert metrics_via(two, 1)[GETS_200] == want  # the same sum through the other worker
    time.sleep(2.5)  # a few more pushes: nothing counted twice
    assert metrics_via(two, 0)[GETS_200] == want
    # Worker 1 dies and comes back: its counts stay in the sum, which never decreases.
    other = connect_to(two, 1)
    _, pid = worker_of(other)
    other.close()
    os.kill(pid, signal.SIGKILL)

    wait_restarted(two, 1, pid)
    conn = connect_to(two, 1)
    assert send(conn, "GET", "/wk-metrics/m")[0] == 200
    conn.close()
    wait_for(lambda: metrics_via(two, 0).get(GETS_200) == want + 1, f"{GETS_200} = {want + 1}")


def test_worker_totals_are_not_taken_over_tcp(two: LiveServer) -> None:
    """Only another worker, on the owner's Unix socket, may report totals."""
    from s3torrent.metering.worker_push import TOTALS_PATH

    for index in (0, 1):
        conn = connect_to(two, index)
        status, _ = send(
            conn,
            "POST",
            TOTALS_PATH,
            body=b'{"requests":[["GetObject",200,1000000]]}',
            headers={"X-S3torrent-Worker-Index": "7", "X-S3torrent-Incarnation": "x"},
        )
        conn.close()
        assert status in (400, 403, 404, 405), status  # no such route, or not S3
    assert metrics_via(two, 0).get(GETS_200, 0.0) < 1000000


def test_swarm_counters_of_a_torrent_published_on_another_worker(two: LiveServer, s3w: Any) -> None:
    """Objects written before their bucket became public are published by the first request
    that names them (a bucket-wide access change republishes only what was published). The
    announces arrive at the other worker, which hands them to the owner, the tracker; the
    peers' reports must still reach the usage tables."""
    from tests.api.test_metering import admin_get, eventually

    bucket = "wk-late-public"
    s3w.create_bucket(Bucket=bucket)
    s3w.put_object(Bucket=bucket, Key="obj", Body=os.urandom(50_000))  # private
    s3w.put_bucket_policy(Bucket=bucket, Policy=public_read_policy(bucket))
    conn = connect_to(two, 1)
    status, torrent = send(conn, "GET", f"/{bucket}/obj?torrent")
    assert status == 200
    ih = info_hash_v1(torrent)
    for n, pid in enumerate((b"-XX0001-aaaaaaaaaaaa", b"-XX0001-bbbbbbbbbbbb")):
        base = (
            f"/_tracker/announce?info_hash={quote_from_bytes(ih)}&peer_id={quote_from_bytes(pid)}"
            "&port=51413&compact=1"
        )
        status, body = send(conn, "GET", f"{base}&uploaded=0&downloaded=0&left=50000&event=started")
        assert status == 200 and b"failure reason" not in body, body
        status, body = send(
            conn, "GET", f"{base}&uploaded={1000 * n}&downloaded=50000&left=0&event=completed"
        )
        assert status == 200 and b"failure reason" not in body, body
    conn.close()

    def swarm() -> list[Any]:
        objects = admin_get(two, f"/_admin/savings?bucket={bucket}&key=obj")["objects"]
        return [(o["swarm_completed"], o["swarm_downloaded"]) for o in objects]

    assert eventually(swarm, [(2, 100_000)], timeout=20) == [(2, 100_000)]


def fresh_announce(srv: LiveServer, path: str) -> tuple[int, bytes, dict[str, str]]:
    """An announce as the first request of a new connection: the front of whichever worker
    the kernel picks answers it, itself (the owner) or through the tracker relay."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=15)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read(), dict(response.getheaders())
    finally:
        conn.close()


def read_responses(sock: socket.socket, count: int) -> list[bytes]:
    """`count` HTTP responses (Content-Length framed) from `sock`, their bodies in order."""
    data, bodies = b"", list[bytes]()
    while len(bodies) < count:
        head_end = data.find(b"\r\n\r\n")
        if head_end >= 0:
            head = data[:head_end].decode("latin-1").lower()
            length = int(head.split("content-length:")[1].split("\r\n")[0])
            if len(data) >= head_end + 4 + length:
                assert head.startswith("http/1.1 200"), head
                bodies.append(data[head_end + 4 : head_end + 4 + length])
                data = data[head_end + 4 + length :]
                continue
        chunk = sock.recv(65536)
        assert chunk, "connection closed before every answer"
        data += chunk
    return bodies


def test_announces_opening_connections_share_one_swarm_on_either_worker(
    two: LiveServer, s3w: Any
) -> None:
    s3w.create_bucket(Bucket="wk-relay")
    put_public(s3w, "wk-relay", "obj", os.urandom(100_000))
    info_hash = info_hash_v1(fetch_torrent(two.endpoint, "wk-relay", "obj"))
    # 24 connections: the kernel gives about half to worker 1, whose front relays.
    for n in range(24):
        peer_id = f"-WK0009-relay{n:07d}".encode()
        status, body, _ = fresh_announce(two, announce_path(info_hash, peer_id, 7300 + n))
        assert status == 200, body
        answer = bdecode(body)
        assert b"failure reason" not in answer, answer
        ports = {int(p[b"port"]) for p in answer[b"peers"]} - {two.peer_port}
        assert ports == set(range(7300, 7300 + n)), (n, sorted(ports))
    status, body, _ = fresh_announce(
        two, f"/_tracker/scrape?info_hash={quote_from_bytes(info_hash)}"
    )
    assert status == 200 and bdecode(body)[b"files"][info_hash][b"incomplete"] == 24
    # Pipelined as a connection's first bytes: answered in order, on either worker.
    # Four connections (twelve announces): with the 24 above, within the default per-IP
    # burst of 60 announces that all of this module's clients on 127.0.0.1 share.
    for attempt in range(4):
        paths = [
            announce_path(info_hash, f"-WK0009-pipe{attempt}{k}aaaaaa".encode()[:20], 7400 + k)
            for k in range(3)
        ]
        with socket.create_connection(("127.0.0.1", two.port), timeout=15) as sock:
            sock.sendall(b"".join(f"GET {p} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for p in paths))
            bodies = read_responses(sock, 3)
        for k, reply in enumerate(bodies):
            ports = {int(p[b"port"]) for p in bdecode(reply)[b"peers"]}
            assert set(range(7300, 7324)) <= ports and 7400 + k not in ports


def test_relayed_announces_are_503_while_the_owner_restarts(tmp_path: Path) -> None:
    srv = start_server(tmp_path, workers=2)
    try:
        s3 = make_client(srv.endpoint)
        s3.create_bucket(Bucket="wk-owner-gone")
        put_public(s3, "wk-owner-gone", "obj", os.urandom(50_000))
        info_hash = info_hash_v1(fetch_torrent(srv.endpoint, "wk-owner-gone", "obj"))
        path = announce_path(info_hash, b"-WK0010-aaaaaaaaaaaa", 7500)
        owner = connect_to(srv, 0)
        _, pid = worker_of(owner)
        owner.close()
        os.kill(pid, signal.SIGKILL)
        # Every new connection reaches worker 1, whose front cannot reach the registry: the
        # client is told to come back (the owner's socket may still reset a connection).
        status, body, headers = 0, b"", dict[str, str]()
        for _ in range(20):
            try:
                status, body, headers = fresh_announce(srv, path)
                break
            except (ConnectionError, http.client.RemoteDisconnected):
                time.sleep(0.05)
        assert status == 503, body
        assert headers.get("Retry-After") == "1"
        assert body == b"the tracker is not available; try again\n"
        wait_restarted(srv, 0, pid)

        def answered() -> bool:
            try:
                status, body, _ = fresh_announce(srv, path)
            except (ConnectionError, http.client.RemoteDisconnected):
                return False
            return status == 200 and b"failure reason" not in body

        wait_for(answered, "announces answered again after the owner's restart", timeout=30)
    finally:
        srv.stop()


def listening_pids(port: int, pids: list[int]) -> set[int]:
    """Which of `pids` hold a TCP socket listening on `port` (from /proc)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            for row in list(rows)[1:]:
                fields = row.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{inode}]")
    holders: set[int] = set()
    for pid in pids:
        fd_dir = Path(f"/proc/{pid}/fd")
        for fd in fd_dir.iterdir():
            try:
                if os.readlink(fd) in inodes:
                    holders.add(pid)
                    break
            except OSError:
                continue
    return holders


def test_the_tracker_port_is_the_other_workers_and_survives_their_restart(
    tmp_path: Path,
) -> None:
    """With several workers, the ones without the registry take the tracker port together
    and ask the owner's registry over the relay; the owner, whose core answers every
    relayed announce, stays off it. Its announces join the main listener's swarms, and a
    worker that dies is restarted onto the port."""
    tracker_port = free_port()
    srv = start_server(
        tmp_path,
        workers=2,
        env={"S3TORRENT_TRACKER__HTTP_LISTEN": f"127.0.0.1:{tracker_port}"},
    )
    try:
        s3 = make_client(srv.endpoint)
        s3.create_bucket(Bucket="wk-tracker-port")
        put_public(s3, "wk-tracker-port", "obj", os.urandom(60_000))
        info_hash = info_hash_v1(fetch_torrent(srv.endpoint, "wk-tracker-port", "obj"))
        owner_conn, worker_conn = connect_to(srv, 0), connect_to(srv, 1)
        _, owner_pid = worker_of(owner_conn)
        _, worker_pid = worker_of(worker_conn)
        owner_conn.close()
        worker_conn.close()
        assert listening_pids(tracker_port, [owner_pid, worker_pid]) == {worker_pid}

        lean = f"http://127.0.0.1:{tracker_port}"
        # One peer through the main listener (either worker), then more on the tracker port:
        # one swarm, kept by the owner.
        status, body, _ = fresh_announce(
            srv, "/_tracker" + announce_path(info_hash, b"-WK0011-main00000000", 7600, 1)
        )
        assert status == 200 and b"failure reason" not in body, body
        for n in range(1, 12):
            path = announce_path(info_hash, f"-WK0011-port{n:08d}".encode(), 7600 + n)
            with urllib.request.urlopen(lean + path, timeout=15) as response:
                answer = bdecode(response.read())
            assert b"failure reason" not in answer, answer
            ports = {int(p[b"port"]) for p in answer[b"peers"]} - {srv.peer_port}
            assert ports == set(range(7600, 7600 + n)), (n, sorted(ports))

        # The worker on the port dies: the supervisor starts another, which takes the port.
        os.kill(worker_pid, signal.SIGKILL)
        wait_restarted(srv, 1, worker_pid)
        path = announce_path(info_hash, b"-WK0011-after0000000", 7700)

        def answered() -> bool:
            try:
                with urllib.request.urlopen(lean + path, timeout=5) as response:
                    return b"failure reason" not in response.read()
            except OSError:
                return False

        wait_for(answered, "the tracker port answered by the restarted worker", timeout=30)
        with urllib.request.urlopen(lean + path, timeout=15) as response:
            ports = {int(p[b"port"]) for p in bdecode(response.read())[b"peers"]}
        assert set(range(7600, 7612)) <= ports  # the owner kept the swarm throughout
    finally:
        srv.stop()


def test_a_connection_that_keeps_announcing_leaves_the_owner(tmp_path: Path) -> None:
    """The owner answers a connection's first announces itself, then gives the connection
    to another worker (handoff.py): the same TCP connection goes on, answers in order,
    and what it asks next (announces, S3 requests) is that worker's."""
    # Its own server: more announces from 127.0.0.1 than the default per-IP burst allows.
    two = start_server(
        tmp_path,
        workers=2,
        env={
            "S3TORRENT_TRACKER__ANNOUNCE_RATE_PER_IP": "100000",
            "S3TORRENT_TRACKER__ANNOUNCE_RATE_BURST": "100000",
        },
    )
    try:
        announce_and_move(two)
    finally:
        two.stop()


def announce_and_move(two: LiveServer) -> None:
    s3 = make_client(two.endpoint)
    s3.create_bucket(Bucket="wk-handoff")
    put_public(s3, "wk-handoff", "obj", os.urandom(40_000))
    info_hash = info_hash_v1(fetch_torrent(two.endpoint, "wk-handoff", "obj"))
    conn = connect_to(two, 0)  # one S3 request first: this connection stays the owner's
    for n in range(3):
        conn.request("GET", announce_path(info_hash, f"-WK0012-keep{n:08d}".encode(), 7800 + n))
        response = conn.getresponse()
        body = response.read()
        assert response.status == 200 and b"failure reason" not in body, body
    assert worker_of(conn)[0] == 0
    conn.close()

    # Announces as their connection's first requests: the kernel gives about half of
    # these connections to the owner, which gives each away after its second announce,
    # so all of them end on worker 1 (by chance alone: 1 in 256). Pipelined announces
    # are answered in order whoever holds the connection.
    for attempt in range(8):
        with socket.create_connection(("127.0.0.1", two.port), timeout=15) as sock:
            for n in range(3):
                port = 7900 + 10 * attempt + n
                path = announce_path(info_hash, f"-WK0012-m{attempt}{n:010d}".encode(), port)
                sock.sendall(f"GET /_tracker{path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                (reply,) = read_responses(sock, 1)
                ports = {int(p[b"port"]) for p in bdecode(reply)[b"peers"]}
                assert set(range(7900 + 10 * attempt, port)) <= ports, (attempt, n, ports)
            paths = [
                announce_path(info_hash, f"-WK0012-p{attempt}{k:010d}".encode(), 7990 + k)
                for k in range(3)
            ]
            sock.sendall(
                b"".join(f"GET /_tracker{p} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for p in paths)
            )
            for reply in read_responses(sock, 3):
                assert b"failure reason" not in reply
            sock.sendall(b"GET /_health HTTP/1.1\r\nHost: x\r\n\r\n")
            head = b""
            while b"\r\n\r\n" not in head:
                head += sock.recv(4096)
            assert f"{WORKER}: 1/".encode() in head.lower(), (attempt, head)
