"""Two s3torrent nodes sharing PostgreSQL, Redis and an S3 backend (moto) behave as one."""

from __future__ import annotations

import hashlib
import itertools
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote_from_bytes

import fastbencode
import pytest
import sqlalchemy as sa

from s3torrent.store import metadata as md
from tests.conftest import LiveServer, free_port, make_client
from tests.scale.engines import Engine

pytestmark = pytest.mark.timeout(180)

_redis_dbs = itertools.count(1)


class Cluster:
    """Nodes started on one shared configuration; each on its own ports and data dir."""

    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.tmp = tmp
        self.env = env
        # Nodes of one database share the master key file (it seals the users' secrets).
        self.env.setdefault("S3TORRENT_ENCRYPTION__MASTER_KEY_FILE", str(tmp / "master-keys.json"))
        self.nodes: dict[str, LiveServer] = {}
        self.peer_ports = {name: free_port() for name in ("a", "b")}
        self.env["S3TORRENT_SEEDER__PEER_ADDRESSES"] = (
            "[" + ",".join(f'"127.0.0.1:{p}"' for p in self.peer_ports.values()) + "]"
        )

    def start(self, name: str) -> LiveServer:
        data = self.tmp / name
        data.mkdir(parents=True, exist_ok=True)
        node = self.nodes.get(name)
        if node is None:
            node = LiveServer(
                data_dir=data,
                port=free_port(),
                peer_port=self.peer_ports[name],
                env={**self.env, "S3TORRENT_NODE_ID": f"node-{name}"},
            )
            self.nodes[name] = node
        node.start(timeout=60)
        return node

    def stop(self) -> None:
        for node in self.nodes.values():
            if node.proc is not None:
                node.stop(timeout=20)


@pytest.fixture
def cluster(
    tmp_path: Path, pg_url: str, redis_server: Engine, moto: Engine
) -> Iterator[tuple[Cluster, str]]:
    # A Redis database per test (0-15): registries and event channels do not mix.
    redis_url = f"redis://127.0.0.1:{redis_server.port}/{next(_redis_dbs) % 16}"
    env = {
        "S3TORRENT_METADATA_URL": pg_url,
        "S3TORRENT_REDIS_URL": redis_url,
        "S3TORRENT_BLOBS_URL": f"s3://blobs-{os.getpid()}-{tmp_path.name[-8:].lower()}/data",
        "S3TORRENT_BLOBS__ENDPOINT_URL": moto.url,
        "S3TORRENT_BLOBS__ACCESS_KEY": "moto",
        "S3TORRENT_BLOBS__SECRET_KEY": "moto",
        "S3TORRENT_JOBS__CLAIM_TTL": "2",
        "S3TORRENT_JOBS__POLL_INTERVAL": "0.5",
        "S3TORRENT_METERING__FLUSH_INTERVAL": "0.2",
    }
    c = Cluster(tmp_path, env)
    try:
        yield c, pg_url
    finally:
        c.stop()


def info_hash_of(torrent: bytes) -> bytes:
    meta = fastbencode.bdecode(torrent)
    return hashlib.sha1(fastbencode.bencode(meta[b"info"])).digest()


def announce(node: LiveServer, info_hash: bytes, peer: int, port: int) -> dict[bytes, Any]:
    import urllib.request

    pid = f"-TT0001-{peer:012d}".encode()
    q = (
        f"info_hash={quote_from_bytes(info_hash)}&peer_id={quote_from_bytes(pid)}"
        f"&port={port}&left=100&compact=1"
    )
    with urllib.request.urlopen(f"{node.endpoint}/_tracker/announce?{q}", timeout=5) as r:
        answer: dict[bytes, Any] = fastbencode.bdecode(r.read())
    return answer


def compact_peers(blob: bytes) -> set[tuple[str, int]]:
    return {
        (".".join(str(b) for b in blob[i : i + 4]), int.from_bytes(blob[i + 4 : i + 6], "big"))
        for i in range(0, len(blob), 6)
    }


def test_put_on_one_node_is_readable_torrentable_and_tracked_on_the_other(
    cluster: tuple[Cluster, str],
) -> None:
    c, _ = cluster
    a, b = c.start("a"), c.start("b")
    sa3, sb3 = make_client(a.endpoint), make_client(b.endpoint)
    sa3.create_bucket(Bucket="shared")
    data = os.urandom(3 * 1024 * 1024 + 11)
    sa3.put_object(Bucket="shared", Key="obj", Body=data, ACL="public-read")
    assert sb3.get_object(Bucket="shared", Key="obj")["Body"].read() == data
    ranged = sb3.get_object(Bucket="shared", Key="obj", Range="bytes=1000-1999")["Body"].read()
    assert ranged == data[1000:2000]
    torrent = sb3.get_object_torrent(Bucket="shared", Key="obj")["Body"].read()
    # Same info-hash (the announce URL is each node's own unless they share a public_url).
    ih = info_hash_of(torrent)
    assert ih == info_hash_of(sa3.get_object_torrent(Bucket="shared", Key="obj")["Body"].read())
    # A peer announced on A is handed out by B; both nodes' seeders are origins everywhere.
    first = announce(a, ih, 1, 40001)
    assert b"failure reason" not in first, first
    answer = announce(b, ih, 2, 40002)
    peers = compact_peers(answer[b"peers"])
    assert ("127.0.0.1", 40001) in peers
    assert {("127.0.0.1", p) for p in c.peer_ports.values()} <= peers
    # Listing through either node sees the same keys.
    assert [o["Key"] for o in sb3.list_objects_v2(Bucket="shared")["Contents"]] == ["obj"]


def test_acl_change_on_one_node_revokes_on_the_other_within_a_second(
    cluster: tuple[Cluster, str],
) -> None:
    c, _ = cluster
    a, b = c.start("a"), c.start("b")
    sa3, sb3 = make_client(a.endpoint), make_client(b.endpoint)
    sa3.create_bucket(Bucket="revoke")
    sa3.put_object(Bucket="revoke", Key="k", Body=b"x" * 100_000, ACL="public-read")
    ih = info_hash_of(sa3.get_object_torrent(Bucket="revoke", Key="k")["Body"].read())
    assert b"failure reason" not in announce(a, ih, 1, 40011)
    assert b"failure reason" not in announce(b, ih, 2, 40012)
    sb3.put_object_acl(Bucket="revoke", Key="k", ACL="private")
    changed = time.monotonic()
    deadline = changed + 1.0
    while True:
        answer = announce(a, ih, 3, 40013)
        if b"failure reason" in answer:
            break
        assert time.monotonic() < deadline, "node A still serves a revoked torrent"
        time.sleep(0.02)
    assert b"failure reason" in announce(b, ih, 4, 40014)


def test_kill9_of_one_node_loses_no_acknowledged_object(cluster: tuple[Cluster, str]) -> None:
    c, _ = cluster
    a, b = c.start("a"), c.start("b")
    make_client(a.endpoint).create_bucket(Bucket="durable")
    acknowledged: dict[str, bytes] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def upload(node: LiveServer, tag: str) -> None:
        client = make_client(node.endpoint)
        for n in itertools.count():
            if stop.is_set():
                return
            key = f"{tag}/{n}"
            body = os.urandom(1000 + (n % 7) * 300_000)
            try:
                client.put_object(Bucket="durable", Key=key, Body=body)
            except Exception:
                if tag.startswith("b"):
                    raise
                return  # node A died: this one was never acknowledged
            with lock:
                acknowledged[key] = body

    threads = [
        threading.Thread(target=upload, args=(node, f"{name}{i}"))
        for name, node in (("a", a), ("b", b))
        for i in range(2)
    ]
    for t in threads:
        t.start()
    time.sleep(2.0)
    a.kill9()
    time.sleep(1.5)  # B carries on alone
    stop.set()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert any(k.startswith("a") for k in acknowledged)
    assert any(k.startswith("b") for k in acknowledged)
    sb3 = make_client(b.endpoint)
    for key, body in acknowledged.items():
        assert sb3.get_object(Bucket="durable", Key=key)["Body"].read() == body, key
    # The restarted node cleans up but never touches what another node wrote.
    c.start("a")
    for key, body in list(acknowledged.items())[:20]:
        assert (
            make_client(c.nodes["a"].endpoint).get_object(Bucket="durable", Key=key)["Body"].read()
            == body
        )


def _multipart(client: Any, bucket: str, key: str, parts: list[bytes]) -> None:
    up = client.create_multipart_upload(Bucket=bucket, Key=key, ACL="public-read")
    done = []
    for n, part in enumerate(parts, start=1):
        r = client.upload_part(
            Bucket=bucket, Key=key, UploadId=up["UploadId"], PartNumber=n, Body=part
        )
        done.append({"ETag": r["ETag"], "PartNumber": n})
    client.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=up["UploadId"], MultipartUpload={"Parts": done}
    )


def _jobs_and_hashes(pg_url: str, key: str) -> tuple[list[Any], bool]:
    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as conn:
            vid = conn.execute(
                sa.select(md.objects.c.version_id).where(md.objects.c.key == key.encode())
            ).scalar_one()
            jobs = list(
                conn.execute(sa.select(md.hash_jobs).where(md.hash_jobs.c.version_id == vid))
            )
            hashed = (
                conn.execute(
                    sa.select(md.torrents.c.version_id).where(md.torrents.c.version_id == vid)
                ).first()
                is not None
            )
        return jobs, hashed
    finally:
        engine.dispose()


def test_hashing_job_of_a_killed_node_completes_on_the_other(
    cluster: tuple[Cluster, str],
) -> None:
    c, pg_url = cluster
    a, b = c.start("a"), c.start("b")
    sa3 = make_client(a.endpoint)
    sa3.create_bucket(Bucket="jobs")
    part = os.urandom(5 * 1024 * 1024)
    _multipart(sa3, "jobs", "mp", [part, part, part[:1000]])
    a.kill9()  # most likely while hashing; if A was faster, the row is gone already
    jobs, hashed = _jobs_and_hashes(pg_url, "mp")
    took_over = bool(jobs) and jobs[0]._mapping["claimed_by"] == "node-a"
    torrent = make_client(b.endpoint).get_object_torrent(Bucket="jobs", Key="mp")["Body"].read()
    assert fastbencode.bdecode(torrent)[b"info"][b"length"] == 2 * len(part) + 1000
    jobs, hashed = _jobs_and_hashes(pg_url, "mp")
    assert hashed and not jobs
    print(f"job taken over from the killed node: {took_over}")


def test_expired_claim_is_taken_over(cluster: tuple[Cluster, str]) -> None:
    """A job claimed by a node that vanished is done by another once the claim expires."""
    c, pg_url = cluster
    b = c.start("b")
    sb3 = make_client(b.endpoint)
    sb3.create_bucket(Bucket="claims")
    sb3.put_object(Bucket="claims", Key="k", Body=b"y" * 300_000, ACL="public-read")
    engine = sa.create_engine(pg_url)
    try:
        with engine.begin() as conn:
            vid = conn.execute(
                sa.select(md.objects.c.version_id).where(md.objects.c.key == b"k")
            ).scalar_one()
            conn.execute(md.torrents.delete().where(md.torrents.c.version_id == vid))
            conn.execute(
                md.hash_jobs.insert().values(
                    version_id=vid,
                    created_at=time.time(),
                    claimed_by="node-gone",
                    claimed_until=time.time() + 1.5,
                    attempts=1,
                )
            )
        deadline = time.monotonic() + 15
        while True:
            with engine.connect() as conn:
                done = conn.execute(
                    sa.select(md.torrents.c.version_id).where(md.torrents.c.version_id == vid)
                ).first()
                row = conn.execute(
                    sa.select(md.hash_jobs).where(md.hash_jobs.c.version_id == vid)
                ).first()
            if done is not None:
                assert row is None
                break
            assert time.monotonic() < deadline, "expired claim was never taken over"
            time.sleep(0.2)
    finally:
        engine.dispose()


def _two_objects_on_two_nodes(
    cluster: tuple[Cluster, str], bucket: str, size: int, acl: str
) -> tuple[LiveServer, LiveServer]:
    """Both nodes started, and `bucket` holding objects via-a and via-b of `size` bytes."""
    c, _ = cluster
    a, b = c.start("a"), c.start("b")
    sa3 = make_client(a.endpoint)
    sa3.create_bucket(Bucket=bucket)
    for key in ("via-a", "via-b"):
        sa3.put_object(Bucket=bucket, Key=key, Body=os.urandom(size), ACL=acl)
    return a, b


def _torrent_info_hash(node: LiveServer, bucket: str, key: str) -> bytes:
    import urllib.request

    with urllib.request.urlopen(f"{node.endpoint}/{bucket}/{key}?torrent", timeout=10) as r:
        return info_hash_of(r.read())


def _swarm_report(node: LiveServer, bucket: str) -> dict[str, tuple[int, int, int]]:
    """Per key: the savings report's swarm (completed, downloaded, uploaded)."""
    from tests.api.test_metering import admin_get

    objects = admin_get(node, f"/_admin/savings?bucket={bucket}")["objects"]
    return {
        o["key"]: (o["swarm_completed"], o["swarm_downloaded"], o["swarm_uploaded"])
        for o in objects
    }


def test_swarm_counters_reach_usage_whichever_node_the_torrent_was_published_on(
    cluster: tuple[Cluster, str],
) -> None:
    """One node samples the shared registry for the usage tables (it holds the lease). An
    object whose bucket became public after it was written is published by the first request
    that names it, on whichever node gets it; the sampling node must still count its swarm."""
    import urllib.request

    from tests.api.test_metering import eventually
    from tests.seeding import public_read_policy

    bucket, size = "late-public", 60_000
    a, b = _two_objects_on_two_nodes(cluster, bucket, size, "private")
    make_client(a.endpoint).put_bucket_policy(Bucket=bucket, Policy=public_read_policy(bucket))
    for node, key in ((a, "via-a"), (b, "via-b")):
        ih = _torrent_info_hash(node, bucket, key)
        pid = quote_from_bytes(f"-TT0001-{key:>12}".encode())
        base = (
            f"{node.endpoint}/_tracker/announce?info_hash={quote_from_bytes(ih)}"
            f"&peer_id={pid}&port=40100&compact=1&uploaded=0"
        )
        for rest in (
            f"&downloaded=0&left={size}&event=started",
            f"&downloaded={size}&left=0&event=completed",
        ):
            with urllib.request.urlopen(base + rest, timeout=5) as r:
                answer = r.read()
            assert b"failure reason" not in answer, answer

    expected = {"via-a": (1, size, 0), "via-b": (1, size, 0)}
    assert eventually(lambda: _swarm_report(a, bucket), expected, timeout=20) == expected


def test_browser_swarm_reports_reach_usage_from_every_node(cluster: tuple[Cluster, str]) -> None:
    """Browsers announce over a node's WebSocket tracker, whose swarms live in that node
    only (not in the shared registry). Each node bills its own browsers' reports, whether or
    not it holds the sampling lease: with two nodes one of these two objects is announced
    on a node without it."""
    import asyncio

    import aiohttp

    from tests.api.test_metering import eventually
    from tests.api.test_tracker_ws import announce, receive, ws_url

    bucket, size = "browsers", 70_000
    a, b = _two_objects_on_two_nodes(cluster, bucket, size, "public-read")

    async def browse(node: LiveServer, key: str) -> None:
        ih = _torrent_info_hash(node, bucket, key)
        peer = key.encode().ljust(20, b"-")
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(ws_url(node))
            await ws.send_json(announce(ih, peer))
            assert "failure reason" not in (answer := await receive(ws)), answer
            done = announce(ih, peer, uploaded=5_000, downloaded=size, left=0, event="completed")
            await ws.send_json(done)
            assert "failure reason" not in (answer := await receive(ws)), answer
            await ws.close()

    asyncio.run(browse(a, "via-a"))
    asyncio.run(browse(b, "via-b"))
    expected = {"via-a": (1, size, 5_000), "via-b": (1, size, 5_000)}
    assert eventually(lambda: _swarm_report(b, bucket), expected, timeout=20) == expected
