"""A node cut off from Redis for a while misses the events published meanwhile (pub/sub keeps
nothing for an absent subscriber): once it is back, it must not go on serving, by any channel,
a torrent another node revoked during the gap."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from s3torrent.events import EventBus, ObjectDeleted
from s3torrent.events_redis import RedisEventRelay
from tests.conftest import LiveServer, free_port, make_client
from tests.scale.engines import Engine, start_redis
from tests.scale.test_nodes import (  # noqa: F401
    Cluster,
    announce,
    cluster,
    compact_peers,
    info_hash_of,
)

pytestmark = pytest.mark.timeout(180)

BIG = 32 * 1024 * 1024


class CuttableProxy:
    """A TCP relay to Redis that can be cut: every connection through it closed, and new
    ones closed as they come, until restored."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._lock = threading.Lock()
        self._socks: set[socket.socket] = set()
        self._cut = False
        self._closed = False
        self._frozen: set[socket.socket] = set()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                if self._cut:
                    client.close()
                    continue
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
                self._socks |= {client, upstream}
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if src not in self._frozen:
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def cut(self) -> None:
        with self._lock:
            self._cut = True
            socks, self._socks = self._socks, set()
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def freeze(self) -> None:
        """Drop every byte of the connections open now, in both directions, and keep them
        open (a half-open connection: the peer went away without a word); new connections
        pass."""
        with self._lock:
            self._frozen |= self._socks

    def restore(self) -> None:
        with self._lock:
            self._cut = False

    def close(self) -> None:
        self._closed = True
        self.cut()
        self.listener.close()


@pytest.fixture
def proxy(redis_server: Engine) -> Iterator[CuttableProxy]:
    p = CuttableProxy(redis_server.port)
    yield p
    p.close()


def _webseed_status(endpoint: str, ih: bytes) -> int:
    req = urllib.request.Request(
        f"{endpoint}/_webseed/{ih.hex()}/k", headers={"Range": "bytes=0-16383"}
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            r.read()
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _start_b_through(c: Cluster, proxy: CuttableProxy) -> LiveServer:
    """Node B, on the same Redis database as A, through the proxy."""
    redis_db = c.env["S3TORRENT_REDIS_URL"].rsplit("/", 1)[1]
    (c.tmp / "b").mkdir(parents=True, exist_ok=True)
    c.nodes["b"] = b = LiveServer(
        data_dir=c.tmp / "b",
        port=free_port(),
        peer_port=c.peer_ports["b"],
        env={
            **c.env,
            "S3TORRENT_NODE_ID": "node-b",
            "S3TORRENT_REDIS_URL": f"redis://127.0.0.1:{proxy.port}/{redis_db}",
        },
    )
    b.start(timeout=60)
    return b


def test_a_node_back_from_a_redis_gap_stops_what_was_revoked_meanwhile(
    cluster: tuple[Cluster, str],  # noqa: F811
    proxy: CuttableProxy,
) -> None:
    c, _ = cluster
    # Objects over 16 MiB have no torrent: a GET of one is nothing any node published.
    c.env["S3TORRENT_TORRENT__MAX_OBJECT_SIZE"] = str(16 * 1024 * 1024)
    a = c.start("a")
    b = _start_b_through(c, proxy)
    sa3 = make_client(a.endpoint)
    sa3.create_bucket(Bucket="gap")
    sa3.put_object(Bucket="gap", Key="k", Body=b"x" * 100_000, ACL="public-read")
    ih = info_hash_of(sa3.get_object_torrent(Bucket="gap", Key="k")["Body"].read())
    # B publishes it (an announce resolves it there) and its web seed serves it.
    assert b"failure reason" not in announce(b, ih, 1, 40021)
    assert _webseed_status(b.endpoint, ih) == 206
    # One that stays public, with a peer in its swarm (shared by both nodes, in Redis).
    sa3.put_object(Bucket="gap", Key="kept", Body=b"w" * 100_000, ACL="public-read")
    kept = info_hash_of(sa3.get_object_torrent(Bucket="gap", Key="kept")["Body"].read())
    assert b"failure reason" not in announce(b, kept, 3, 40023)
    # And an anonymous GET streams from B, of an object no node published (too large).
    sa3.create_bucket(Bucket="gap-get")
    sa3.put_object(Bucket="gap-get", Key="big", Body=os.urandom(BIG), ACL="public-read")
    got, ended = [0], [0.0]

    def reader() -> None:
        url = f"{b.endpoint}/gap-get/big"
        with contextlib.suppress(Exception), urllib.request.urlopen(url, timeout=30) as r:
            while chunk := r.read(64 * 1024):
                got[0] += len(chunk)
                time.sleep(0.03)  # a slow client: about 2 MB/s
        ended[0] = time.monotonic()

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    time.sleep(0.5)
    assert got[0]

    proxy.cut()
    time.sleep(0.5)
    # Revoked on A while B hears nothing: the events go by without B.
    sa3.put_object_acl(Bucket="gap", Key="k", ACL="private")
    sa3.put_object_acl(Bucket="gap-get", Key="big", ACL="private")
    assert _webseed_status(a.endpoint, ih) != 206
    time.sleep(1.5)
    proxy.restore()
    restored = time.monotonic()

    # Once B is back on Redis, within its reconnect delay and a second, B stops too.
    deadline = time.monotonic() + 6.0
    while _webseed_status(b.endpoint, ih) == 206:
        assert time.monotonic() < deadline, "node B's web seed still serves a revoked torrent"
        time.sleep(0.1)
    assert b"failure reason" in announce(b, ih, 2, 40022)
    # B decided the one still public again without emptying its swarm for everyone.
    time.sleep(0.5)
    peers = compact_peers(announce(a, kept, 4, 40024)[b"peers"])
    assert ("127.0.0.1", 40023) in peers, peers
    thread.join(10)
    assert ended[0] and ended[0] - restored < 6.0 and got[0] < BIG, (got[0], ended[0] - restored)


def test_a_node_whose_subscription_went_silent_subscribes_again(
    cluster: tuple[Cluster, str],  # noqa: F811
    proxy: CuttableProxy,
) -> None:
    """Redis went away without closing the connection (a host gone, a NAT's state dropped):
    nothing is ever read again from the subscription, and nothing says so. The node must
    notice and subscribe again (and so decide again), not stay deaf for good."""
    c, _ = cluster
    a = c.start("a")
    b = _start_b_through(c, proxy)
    sa3 = make_client(a.endpoint)
    sa3.create_bucket(Bucket="silent")
    sa3.put_object(Bucket="silent", Key="k", Body=b"y" * 100_000, ACL="public-read")
    ih = info_hash_of(sa3.get_object_torrent(Bucket="silent", Key="k")["Body"].read())
    assert b"failure reason" not in announce(b, ih, 1, 40031)
    assert _webseed_status(b.endpoint, ih) == 206
    # And one that B wrote (so B has sent an event on its connection), published on A.
    sb3 = make_client(b.endpoint)
    sb3.create_bucket(Bucket="silent-b")
    sb3.put_object(Bucket="silent-b", Key="k", Body=b"z" * 100_000, ACL="public-read")
    ih_b = info_hash_of(sb3.get_object_torrent(Bucket="silent-b", Key="k")["Body"].read())
    assert b"failure reason" not in announce(a, ih_b, 2, 40032)
    assert _webseed_status(a.endpoint, ih_b) == 206

    proxy.freeze()
    time.sleep(0.5)
    # Revoked on A: B must hear it. Revoked on B: A must hear it.
    sa3.put_object_acl(Bucket="silent", Key="k", ACL="private")
    sb3.put_object_acl(Bucket="silent-b", Key="k", ACL="private")
    changed = time.monotonic()
    assert _webseed_status(a.endpoint, ih) != 206
    assert _webseed_status(b.endpoint, ih_b) != 206
    deadline = changed + 8.0
    while _webseed_status(b.endpoint, ih) == 206:
        assert time.monotonic() < deadline, "node B stays deaf on a silent subscription"
        time.sleep(0.2)
    while _webseed_status(a.endpoint, ih_b) == 206:
        assert time.monotonic() < deadline, "node B's events stay stuck on a silent connection"
        time.sleep(0.2)


def test_a_redis_restart_loses_neither_a_revocation_nor_a_publication(
    cluster: tuple[Cluster, str],  # noqa: F811
) -> None:
    """Redis restarted empty (no persistence): the registry's swarms are gone and the
    events of the outage were heard by nobody. Once it is back, every node must register
    again what is still public (else every announce answers "unregistered torrent") and
    stop what was revoked meanwhile."""
    c, _ = cluster
    redis = start_redis()
    try:
        c.env["S3TORRENT_REDIS_URL"] = f"redis://127.0.0.1:{redis.port}/0"
        a, b = c.start("a"), c.start("b")
        sa3 = make_client(a.endpoint)
        sa3.create_bucket(Bucket="restart")
        hashes = {}
        for key in ("kept", "revoked"):
            sa3.put_object(Bucket="restart", Key=key, Body=key.encode() * 40_000, ACL="public-read")
            torrent = sa3.get_object_torrent(Bucket="restart", Key=key)["Body"].read()
            hashes[key] = info_hash_of(torrent)
            for i, node in enumerate((a, b)):
                assert b"failure reason" not in announce(node, hashes[key], i, 40041 + i)
                assert _webseed_status(node.endpoint, hashes[key]) == 206

        redis.stop()
        sa3.put_object_acl(Bucket="restart", Key="revoked", ACL="private")
        time.sleep(1.0)
        redis = start_redis(port=redis.port)
        back = time.monotonic()

        deadline = back + 8.0
        for i, node in enumerate((a, b)):
            while b"failure reason" in announce(node, hashes["kept"], 10 + i, 40051 + i):
                assert time.monotonic() < deadline, f"node {i}: a public torrent unregistered"
                time.sleep(0.2)
            while _webseed_status(node.endpoint, hashes["revoked"]) == 206:
                assert time.monotonic() < deadline, f"node {i}: a revoked torrent still served"
                time.sleep(0.2)
            assert b"failure reason" in announce(node, hashes["revoked"], 20 + i, 40061 + i)
    finally:
        c.stop()
        redis.stop()


def test_events_a_node_had_to_drop_make_the_others_decide_again(
    redis_server: Engine, proxy: CuttableProxy
) -> None:
    """A node that cannot reach Redis queues its events, up to a bound; what does not fit is
    dropped. The other nodes' subscriptions never broke, so only the sender knows: it must
    tell them, and they decide again (on_gap)."""

    async def run() -> tuple[int, int]:
        gaps: list[str] = []
        db = 5
        cut_off = RedisEventRelay.from_url(
            EventBus(), f"redis://127.0.0.1:{proxy.port}/{db}", node_id="cut-off", max_queued=2
        )
        other = RedisEventRelay.from_url(
            EventBus(),
            f"redis://127.0.0.1:{redis_server.port}/{db}",
            node_id="other",
            on_gap=lambda: gaps.append("gap"),
        )
        heard: list[object] = []
        other.bus.subscribe(heard.append)
        await cut_off.start(5)
        await other.start(5)
        proxy.cut()
        for i in range(5):
            cut_off.bus.publish(ObjectDeleted("b", f"k{i}", f"v{i}"))
        await asyncio.sleep(0.5)
        proxy.restore()
        deadline = asyncio.get_running_loop().time() + 8
        while not gaps and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        await cut_off.close()
        await other.close()
        return len(gaps), len(heard)

    gaps, heard = asyncio.run(run())
    assert heard == 2  # what fit in the queue
    assert gaps == 1
