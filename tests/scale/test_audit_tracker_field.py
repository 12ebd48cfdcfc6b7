"""The tracker as clients meet it in the field, on two nodes sharing PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote_from_bytes

import pytest
import redis.asyncio
from fastbencode import bdecode  # type: ignore[attr-defined]

from s3torrent.config import StartupError
from s3torrent.events import EventBus, ObjectDeleted, encode_event
from s3torrent.events_redis import RedisEventRelay
from s3torrent.tracker.protocol import AnnounceEvent, AnnounceRequest
from s3torrent.tracker.redis_registry import RedisRegistry
from s3torrent.tracker.registry import RegistryLimits
from s3torrent.tracker.service import TrackerService, TrackerSettings
from s3torrent.tracker.udp_protocol import UDP_PROTOCOL_ID
from tests.conftest import LiveServer, free_port, make_client, start_server
from tests.scale.engines import Engine
from tests.scale.test_nodes import Cluster, announce, info_hash_of
from tests.scale.test_nodes import cluster as _cluster  # noqa: F401 (the fixture)
from tests.unit.test_audit_tracker_field import (
    HASH,
    dual_stack_client,
    mostly_ipv4_swarm,
    udp_announce,
)

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def nodes(
    _cluster: tuple[Cluster, str],  # noqa: F811
) -> Iterator[Cluster]:
    c, _ = _cluster
    # A tight announce loop from one address: no rate limit in the way.
    c.env["S3TORRENT_TRACKER__ANNOUNCE_RATE_PER_IP"] = "100000"
    c.env["S3TORRENT_TRACKER__ANNOUNCE_RATE_BURST"] = "100000"
    yield c


def _public_policy(bucket: str, sid: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": sid,
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "s3:GetObject",
                    "Resource": f"arn:aws:s3:::{bucket}/*",
                }
            ],
        }
    )


def test_policy_change_that_keeps_public_never_unregisters_on_any_node(
    nodes: Cluster,
) -> None:
    a, b = nodes.start("a"), nodes.start("b")
    sa3 = make_client(a.endpoint)
    sa3.create_bucket(Bucket="keep")
    sa3.put_bucket_policy(Bucket="keep", Policy=_public_policy("keep", "v0"))
    sa3.put_object(Bucket="keep", Key="k", Body=b"x" * 100_000)
    ih = info_hash_of(sa3.get_object_torrent(Bucket="keep", Key="k")["Body"].read())
    assert b"failure reason" not in announce(a, ih, 1, 40101)
    assert b"failure reason" not in announce(b, ih, 2, 40102)

    failures: list[bytes] = []
    answered = [0]
    stop = threading.Event()

    def loop(node_name: str, peer: int) -> None:
        node = nodes.nodes[node_name]
        while not stop.is_set():
            answer = announce(node, ih, peer, 40000 + peer)
            answered[0] += 1
            if b"failure reason" in answer:
                failures.append(answer[b"failure reason"])

    threads = [
        threading.Thread(target=loop, args=(name, peer))
        for name, peer in (("a", 3), ("b", 4), ("b", 5), ("a", 6))
    ]
    for t in threads:
        t.start()
    try:
        for n in range(1, 16):
            sa3.put_bucket_policy(Bucket="keep", Policy=_public_policy("keep", f"v{n}"))
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
    assert answered[0] > 100
    assert failures == [], f"{len(failures)} of {answered[0]} announces failed: {failures[:3]}"

    # A real revocation still stops announces on both nodes within a second.
    sa3.delete_bucket_policy(Bucket="keep")
    deadline = time.monotonic() + 1.0
    for node, peer in ((b, 7), (a, 8)):
        while b"failure reason" not in announce(node, ih, peer, 40000 + peer):
            assert time.monotonic() < deadline, f"{node.endpoint} still serves a revoked torrent"
            time.sleep(0.02)


# ---- nodes sharing a node id (a copied data directory) -------------------------------------


def _relay(redis_server: Engine, db: int, node_id: str, **kw: object) -> RedisEventRelay:
    url = f"redis://127.0.0.1:{redis_server.port}/{db}"
    return RedisEventRelay.from_url(EventBus(), url, node_id=node_id, **kw)  # type: ignore[arg-type]


def test_a_second_node_under_a_running_nodes_id_is_refused_at_start(
    redis_server: Engine,
) -> None:
    async def run() -> str:
        first = _relay(redis_server, 9, "twin")
        await first.start(5)
        second = _relay(redis_server, 9, "twin")
        try:
            with pytest.raises(StartupError) as refused:
                await second.start(5)
        finally:
            await first.close()
        # Given up at a clean stop: the next node under that id starts at once.
        third = _relay(redis_server, 9, "twin")
        started = asyncio.get_running_loop().time()
        await third.start(5)
        assert asyncio.get_running_loop().time() - started < 1.0
        await third.close()
        return str(refused.value)

    message = asyncio.run(run())
    assert "'twin' is in use by another running s3torrent node" in message
    assert "data_dir/node-id" in message


def test_a_node_restarted_after_a_crash_takes_its_id_back(redis_server: Engine) -> None:
    async def run() -> float:
        crashed = _relay(redis_server, 10, "phoenix")
        await crashed.start(5)
        for task in crashed._tasks:  # killed: no goodbye, its claim is left to expire
            task.cancel()
        again = _relay(redis_server, 10, "phoenix")
        started = asyncio.get_running_loop().time()
        await again.start(10)
        took = asyncio.get_running_loop().time() - started
        await again.close()
        return took

    assert asyncio.run(run()) < 5.0


def test_events_of_another_process_under_our_id_are_applied_not_ignored(
    redis_server: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """A twin that met us anyway (its claim lost with a Redis restart, or an older
    version): its revocations reach our bus, and the clash is logged as an error."""

    async def run() -> list[object]:
        relay = _relay(redis_server, 11, "clone")
        heard: list[object] = []
        relay.bus.subscribe(heard.append)
        await relay.start(5)
        twin = redis.asyncio.Redis.from_url(f"redis://127.0.0.1:{redis_server.port}/11")
        await twin.publish(
            relay.channel, encode_event(ObjectDeleted("b", "k", "v1"), "clone", "another")
        )
        await twin.publish(relay.channel, encode_event(ObjectDeleted("b", "k", "v2"), "clone"))
        # Our own messages are still ours.
        relay.bus.publish(ObjectDeleted("b", "k", "mine"))
        deadline = asyncio.get_running_loop().time() + 5
        while len(heard) < 3 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        await twin.aclose()
        await relay.close()
        return heard

    with caplog.at_level(logging.ERROR, logger="s3torrent.events_redis"):
        heard = asyncio.run(run())
    versions = [getattr(e, "version_id", None) for e in heard]
    assert sorted(versions) == ["mine", "v1", "v2"]  # ours once: not echoed back
    assert "another running process uses this node id 'clone'" in caplog.text


def test_a_node_started_on_a_copy_of_another_nodes_data_directory_is_refused(
    nodes: Cluster, tmp_path: Path
) -> None:
    a = nodes.start("a")
    clone_dir = tmp_path / "clone"
    clone_dir.mkdir()
    # No S3TORRENT_NODE_ID: each takes its id from its data directory's node-id file.
    a.stop(timeout=20)
    del a.env["S3TORRENT_NODE_ID"]
    (a.data_dir / "node-id").write_text("copied-node\n")
    (clone_dir / "node-id").write_text("copied-node\n")
    a.start(timeout=60)
    env = {k: v for k, v in a.env.items()}
    clone = LiveServer(data_dir=clone_dir, port=free_port(), peer_port=free_port(), env=env)
    try:
        with pytest.raises(RuntimeError) as refused:
            clone.start(timeout=60)
    finally:
        if clone.proc is not None and clone.proc.poll() is None:
            clone.stop(timeout=20)
    assert "'copied-node' is in use by another running s3torrent node" in str(refused.value)


# ---- peers of the asker's family (BEP 7, BEP 15) in the shared registry ---------------------


def test_redis_registry_answers_an_ipv6_udp_announce_with_the_ipv6_peers(
    redis_server: Engine,
) -> None:
    async def run() -> tuple[bytes, bytes, dict[bytes, Any]]:
        client = redis.asyncio.Redis.from_url(f"redis://127.0.0.1:{redis_server.port}/12")
        await client.flushdb()
        registry = RedisRegistry(
            client, RegistryLimits(rate_burst=1e9, rate_per_ip=1e9), clock="caller"
        )
        await mostly_ipv4_swarm(registry)
        service = TrackerService(registry, TrackerSettings(udp_secret=b"k" * 32))
        six = await udp_announce(service, ("2001:db8:ffff::1", 5000), 10)
        four = await udp_announce(service, ("192.0.2.7", 5000), 10)
        asker = b"-FT0001-" + b"\xff" * 12
        query = (
            f"info_hash={quote_from_bytes(HASH, safe='')}"
            f"&peer_id={quote_from_bytes(asker, safe='')}"
            "&port=6881&uploaded=0&downloaded=0&left=10&compact=1&numwant=10&key=zz"
        ).encode()
        http = dict(bdecode(await service.handle_http_announce(query, "2001:db8:ffff::2", 0.0)))
        stats = await registry.stats(HASH)
        await registry.close()
        # The UDP asker announced over both families: an entry in each.
        assert (stats.seeders, stats.leechers) == (203, 3)
        return six, four, http

    six, four, http = asyncio.run(run())
    assert len(six) == 3 * 18
    assert len(four) == 10 * 6
    # The 3 IPv6 seeds and the UDP asker's IPv6 entry, then IPv4 peers up to numwant.
    assert len(http[b"peers6"]) == 4 * 18
    assert len(http[b"peers"]) == 6 * 6


# ---- UDP connection ids across nodes ---------------------------------------------------------


def udp_exchange(port: int, packet: bytes, host: str = "127.0.0.1") -> bytes:
    """One BEP 15 request and its answer (bounded: 5 s)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(packet, (host, port))
        answer, _ = sock.recvfrom(2048)
    return answer


def udp_connection_id(port: int) -> int:
    answer = udp_exchange(port, struct.pack(">QiI", UDP_PROTOCOL_ID, 0, 1))
    return int(struct.unpack(">iIQ", answer)[2])


def udp_announce_on(port: int, connection_id: int, info_hash: bytes, peer: int) -> bytes:
    packet = struct.pack(
        ">QiI20s20sqqqiIIiH",
        connection_id, 1, 2, info_hash, f"-UT0001-{peer:012d}".encode(), 0, 100, 0, 2, 0,
        peer, -1, 40000 + peer,
    )  # fmt: skip
    return udp_exchange(port, packet)


def test_a_udp_connection_id_from_one_node_is_accepted_by_the_other(nodes: Cluster) -> None:
    """Nodes behind one UDP address without affinity (a load balancer spreading datagrams):
    a client connects through one and announces through the other. Each node had keyed its
    ids with a random secret of its process (and timed them by its monotonic clock), so the
    other answered "invalid connection id" to every such announce."""
    udp = {}
    for name in ("a", "b"):
        udp[name] = free_port()
        nodes.env["S3TORRENT_TRACKER__UDP_LISTEN"] = f"127.0.0.1:{udp[name]}"
        nodes.start(name)
    sa3 = make_client(nodes.nodes["a"].endpoint)
    sa3.create_bucket(Bucket="udp")
    sa3.put_object(Bucket="udp", Key="k", Body=b"x" * 100_000, ACL="public-read")
    ih = info_hash_of(sa3.get_object_torrent(Bucket="udp", Key="k")["Body"].read())
    for peer, (given_by, used_on) in enumerate((("a", "b"), ("b", "a")), start=1):
        cid = udp_connection_id(udp[given_by])
        answer = udp_announce_on(udp[used_on], cid, ih, peer)
        assert struct.unpack(">i", answer[:4])[0] == 1, answer
    # ... and after a restart of the node that gave it.
    cid = udp_connection_id(udp["a"])
    nodes.nodes["a"].stop(timeout=20)
    nodes.nodes["a"].start(timeout=60)
    answer = udp_announce_on(udp["a"], cid, ih, 3)
    assert struct.unpack(">i", answer[:4])[0] == 1, answer


def test_udp_connection_ids_survive_the_owner_worker_started_again(tmp_path: Path) -> None:
    """`serve --workers 2`: the UDP tracker is the owner worker's (no SO_REUSEPORT across
    workers: one registry). An owner killed and started again by the supervisor had a new
    random key, so every client's id was refused until it connected again."""
    from tests.api.test_workers import connect_to, wait_restarted, worker_of

    udp = free_port()
    srv = start_server(
        tmp_path, env={"S3TORRENT_TRACKER__UDP_LISTEN": f"127.0.0.1:{udp}"}, workers=2
    )
    try:
        s3 = make_client(srv.endpoint)
        s3.create_bucket(Bucket="udp")
        s3.put_object(Bucket="udp", Key="k", Body=b"x" * 100_000, ACL="public-read")
        ih = info_hash_of(s3.get_object_torrent(Bucket="udp", Key="k")["Body"].read())
        cid = udp_connection_id(udp)
        assert struct.unpack(">i", udp_announce_on(udp, cid, ih, 1)[:4])[0] == 1
        owner = connect_to(srv, 0)
        _, pid = worker_of(owner)
        owner.close()
        os.kill(pid, signal.SIGKILL)
        wait_restarted(srv, 0, pid)
        answer = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # until the new owner's UDP port answers
            try:
                answer = udp_announce_on(udp, cid, ih, 2)
                break
            except TimeoutError:
                continue
        assert struct.unpack(">i", answer[:4])[0] == 1, answer
    finally:
        srv.stop()


def test_redis_registry_lists_a_dual_stack_client_in_both_families_counted_once(
    redis_server: Engine,
) -> None:
    async def run() -> dict[str, Any]:
        client = redis.asyncio.Redis.from_url(f"redis://127.0.0.1:{redis_server.port}/13")
        await client.flushdb()
        registry = RedisRegistry(
            client, RegistryLimits(rate_burst=1e9, rate_per_ip=1e9), clock="caller"
        )
        seen = await dual_stack_client(registry)
        # Its IPv4 entry stops: the IPv6 one counts from its last totals on.
        await registry.announce(_stopped("192.0.2.1", 1, 40001), 3.0)
        await registry.announce(_stopped("2001:db8::1", 1, 40002, up=6000), 3.0)
        seen["after"] = (await registry.stats(HASH)).uploaded
        await registry.close()
        return seen

    seen = asyncio.run(run())
    assert seen["198.51.100.2"] == {("192.0.2.1", 40001)}
    assert seen["2001:db8::2"] == {("2001:db8::1", 40002)}
    assert seen["counters"] == (4000, 1)
    assert seen["after"] == 5000


def _stopped(ip: str, peer: int, port: int, up: int = 5000) -> AnnounceRequest:
    return AnnounceRequest(
        HASH, b"-FT0001-" + peer.to_bytes(12, "big"), ip, port, up, 0, 0,
        AnnounceEvent.STOPPED, 0, True, True, b"samekey", None,
    )  # fmt: skip
