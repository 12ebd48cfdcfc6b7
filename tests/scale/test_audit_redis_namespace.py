"""Two deployments on one Redis server, told apart by their database numbers
(redis://host/1 and redis://host/2), share nothing: keys are per database, and the event
relay's pub/sub channel, which is one namespace for the whole server whatever database a
client selected, is named after the database too.

Until 2026-12-07 both deployments published on `s3t:events`: each heard the other's events
(an AccessChanged of a bucket of the same name revoked and decided again its torrents, a
gap marker made every node decide everything again) and beats (a node of the other
deployment that stopped without a goodbye was taken for one cut off: every node decided
again every second for a minute).

Also: the registry tests of tests/unit/test_audit_swarm_denied.py (peer sources, unlisting
the peers a new decision refuses) run here against RedisRegistry, and two nodes sharing
the registry unlist a peer a narrowed policy denies.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from s3torrent.events import AccessChanged, Event, EventBus
from s3torrent.events_redis import RedisEventRelay
from s3torrent.tracker.registry import RegistryLimits, TorrentRef
from tests.conftest import LiveServer, free_port, make_client
from tests.scale.engines import Engine
from tests.scale.test_nodes import Cluster, cluster, info_hash_of  # noqa: F401
from tests.scale.test_redis_gap import CuttableProxy, _start_b_through, proxy  # noqa: F401
from tests.scale.test_redis_registry import PerLoopRedisRegistry
from tests.unit import test_audit_swarm_denied as denied_tests
from tests.unit import test_tracker_registry as memory_tests

pytestmark = pytest.mark.timeout(120)


def _url(redis_server: Engine, db: int) -> str:
    return redis_server.url.rsplit("/", 1)[0] + f"/{db}"


class Deployment:
    """One node's event bus and its relay on database `db`, recording what it hears."""

    def __init__(self, url: str) -> None:
        self.bus = EventBus()
        self.heard: list[Event] = []
        self.gaps = 0
        self.bus.subscribe(self.heard.append)
        self.relay = RedisEventRelay.from_url(self.bus, url, on_gap=self._gap)

    def _gap(self) -> None:
        self.gaps += 1


async def _two_deployments(redis_server: Engine) -> None:
    one, one_too = Deployment(_url(redis_server, 1)), Deployment(_url(redis_server, 1))
    two, two_too = Deployment(_url(redis_server, 2)), Deployment(_url(redis_server, 2))
    deployments = (one, one_too, two, two_too)
    for d in deployments:
        await d.relay.start()
    try:
        event = AccessChanged("photos", None)
        one.bus.publish(event)
        # The other node of the same deployment hears it, and one's first beat: the control.
        async with asyncio.timeout(10):
            while event not in one_too.heard or one.relay.node_id not in one_too.relay._heard:
                await asyncio.sleep(0.02)
        # Redis ran one's publishes before this one (they were heard already), and writes
        # a subscriber's messages in the order it ran them: once two hears the marker it
        # has heard whatever of one's it ever will.
        marker = AccessChanged("marker", None)
        two_too.bus.publish(marker)
        async with asyncio.timeout(10):
            while marker not in two.heard:
                await asyncio.sleep(0.02)
        assert two.heard == [marker]
        assert one.relay.node_id not in two.relay._heard
        assert one.relay.channel != two.relay.channel
    finally:
        for d in deployments:
            await d.relay.close()


def test_deployments_on_two_databases_do_not_hear_each_other(redis_server: Engine) -> None:
    asyncio.run(_two_deployments(redis_server))


def test_database_zero_keeps_its_channel(redis_server: Engine) -> None:
    """Nodes of one deployment on database 0 (the default) keep the channel they had, so a
    deployment upgraded node by node still hears itself."""

    async def channel() -> str:
        relay = RedisEventRelay.from_url(EventBus(), _url(redis_server, 0))
        try:
            return relay.channel
        finally:
            await relay.client.aclose()

    assert asyncio.run(channel()) == "s3t:events"


# ---- the unit tests of unlisting refused peers, against RedisRegistry ----

# Those that look at a node or at the seeder's swarm, not at a registry.
NOT_REGISTRY = {
    "test_a_narrowed_policy_unlists_the_peers_it_now_denies",
    "test_the_seeder_forgets_announced_peers_by_their_source",
    "test_a_time_boundary_unlists_the_peers_it_now_denies",
}
REGISTRY_CASES = sorted(
    name for name in dir(denied_tests) if name.startswith("test_") and name not in NOT_REGISTRY
)


@pytest.fixture
def redis_make(redis_server: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def make(
        limits: RegistryLimits = memory_tests.NO_RATE_LIMIT, ref: TorrentRef = memory_tests.REF
    ) -> Any:
        registry = PerLoopRedisRegistry(redis_server.url, limits)
        memory_tests.run(registry.register(memory_tests.HASH, ref))
        return registry

    monkeypatch.setattr(memory_tests, "make", make)
    yield


@pytest.mark.parametrize("case", REGISTRY_CASES)
def test_redis_registry_unlists_like_memory_registry(redis_make: None, case: str) -> None:
    getattr(denied_tests, case)()


def test_a_peer_stored_before_sources_were_is_taken_at_its_ip(redis_server: Engine) -> None:
    """A peer written by an older node (seven fields, no source) is where it announced from."""

    async def scenario() -> None:
        client = aioredis.Redis.from_url(redis_server.url)
        try:
            registry = PerLoopRedisRegistry(redis_server.url, memory_tests.NO_RATE_LIMIT)
            await registry.register(memory_tests.HASH, memory_tests.REF)
            await registry.announce(memory_tests.req(1, ip="10.2.0.1"), 0.0)
            key = f"{registry.prefix}:pe:{{{memory_tests.HASH.hex()}}}"
            await client.hset(key, memory_tests.pid(1), b"10.2.0.1\t6881\t100\t\t0\t0\t0")  # type: ignore[misc]
            sources = await registry.peer_sources(memory_tests.HASH)
            assert sources == {memory_tests.pid(1): "10.2.0.1"}
            assert await registry.drop_peers(memory_tests.HASH, sources) == 1
        finally:
            await client.aclose()

    asyncio.run(scenario())


# ---- unlisting refused peers across two nodes sharing the registry in Redis ----


def test_a_narrowed_policy_on_one_node_unlists_denied_peers_on_the_other(
    cluster: tuple[Cluster, str],  # noqa: F811
) -> None:
    """The swarm lives in Redis: a peer announced through node A from a network the policy
    now denies is not handed out by node B either."""
    from tests.api.test_audit_swarm_denied import ASKING, DENIED, KEPT, _announce, _peers, _policy

    c, _ = cluster
    a, b = c.start("a"), c.start("b")
    sa3 = make_client(a.endpoint)
    bucket = "narrowed"
    sa3.create_bucket(Bucket=bucket)
    sa3.put_object(Bucket=bucket, Key="k", Body=os.urandom(300_000))
    sa3.put_bucket_policy(Bucket=bucket, Policy=_policy(bucket, "127.0.0.0/8"))
    ih = info_hash_of(sa3.get_object_torrent(Bucket=bucket, Key="k")["Body"].read())
    _peers(_announce(a, ih, DENIED, 51001, left=0))
    _peers(_announce(b, ih, KEPT, 51002, left=0))
    assert {(DENIED, 51001), (KEPT, 51002)} <= _peers(_announce(b, ih, ASKING, 51003, 100))
    sa3.put_bucket_policy(Bucket=bucket, Policy=_policy(bucket, "127.0.0.0/29"))
    # B hears of the change through Redis (the event relay), and each node revokes and
    # publishes again on its own: until both have, an announce may find the shared
    # registration taken back by the other's revocation ("unregistered torrent").
    for node in (b, a):
        deadline = time.monotonic() + 5
        while True:
            answer = _announce(node, ih, ASKING, 51003, 100)
            if b"failure reason" not in answer and (DENIED, 51001) not in _peers(answer):
                break
            assert time.monotonic() < deadline, (node.endpoint, answer)
            time.sleep(0.05)
        assert (KEPT, 51002) in _peers(answer)


def test_every_worker_of_a_node_on_redis_decides_a_narrowed_policy_again(
    cluster: tuple[Cluster, str],  # noqa: F811
) -> None:
    """With Redis every worker answers announces from its own decisions, cached per torrent
    and source: the change, made through one worker, must reach every other one's cache
    (through Redis: no worker hears another's events any other way), within a second."""
    from tests.api.test_audit_swarm_denied import ASKING, DENIED, KEPT, _announce, _peers, _policy

    c, _ = cluster
    data = c.tmp / "a"
    data.mkdir(parents=True, exist_ok=True)
    c.nodes["a"] = LiveServer(
        data_dir=data,
        port=free_port(),
        peer_port=c.peer_ports["a"],
        env={**c.env, "S3TORRENT_NODE_ID": "node-a"},
        workers=2,
    )
    a = c.start("a")
    s3 = make_client(a.endpoint)
    bucket = "narrowed-workers"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=os.urandom(300_000))
    s3.put_bucket_policy(Bucket=bucket, Policy=_policy(bucket, "127.0.0.0/8"))
    ih = info_hash_of(s3.get_object_torrent(Bucket=bucket, Key="k")["Body"].read())
    # Every announce on a new connection: the kernel spreads them over both workers, and
    # each caches the denied source's "allowed".
    for _ in range(10):
        _peers(_announce(a, ih, DENIED, 51001, left=0))
    s3.put_bucket_policy(Bucket=bucket, Policy=_policy(bucket, "127.0.0.0/29"))
    changed = time.monotonic()
    refused_in_a_row = 0
    while refused_in_a_row < 20:
        assert time.monotonic() - changed < 1.5, "a worker still admits the denied source"
        answer = _announce(a, ih, DENIED, 51001, left=0)
        refused = answer.get(b"failure reason") == b"unregistered torrent"
        refused_in_a_row = refused_in_a_row + 1 if refused else 0
    _admitted(a, ih, KEPT, 51002, left=0)
    assert (DENIED, 51001) not in _peers(_admitted(a, ih, ASKING, 51003, left=100))


def _admitted(node: LiveServer, ih: bytes, source: str, port: int, left: int) -> dict[bytes, Any]:
    """An allowed peer's announce, once admitted: right after a change of access, a node
    on Redis may answer "unregistered torrent" while its processes (and the other nodes)
    revoke and publish again the shared registration (bounded: 5 s)."""
    from tests.api.test_audit_swarm_denied import _announce

    deadline = time.monotonic() + 5
    while b"failure reason" in (answer := _announce(node, ih, source, port, left)):
        assert time.monotonic() < deadline, answer
        time.sleep(0.05)
    return answer


# ---- a change of access missed in a gap, that keeps the torrent public for some ----


def test_a_node_back_from_a_gap_decides_each_peer_again(
    cluster: tuple[Cluster, str],  # noqa: F811
    proxy: CuttableProxy,  # noqa: F811
) -> None:
    """A policy narrowed on A while B is cut off from Redis: B's event never comes, and B
    decides its publications again from the database (while cut off, and once back). The
    torrent is still public (to the networks still allowed), so B kept it published, and
    until 2026-12-07 nothing decided B's seeder connections again: a peer from the network
    now denied went on downloading from B's seeder for as long as it stayed connected."""
    from tests.api.test_audit_swarm_denied import DENIED, _policy
    from tests.interop.test_seeder_per_peer_revocation import _raw_peer_from

    c, _ = cluster
    c.env["S3TORRENT_SEEDER__ENABLED"] = "true"
    a = c.start("a")
    b = _start_b_through(c, proxy)
    sa3 = make_client(a.endpoint)
    bucket = "gap-narrowed"
    sa3.create_bucket(Bucket=bucket)
    sa3.put_object(Bucket=bucket, Key="k", Body=os.urandom(2 * 1024 * 1024))
    sa3.put_bucket_policy(Bucket=bucket, Policy=_policy(bucket, "127.0.0.0/8"))
    ih = info_hash_of(sa3.get_object_torrent(Bucket=bucket, Key="k")["Body"].read())
    denied = _raw_peer_from(b, DENIED)
    allowed = _raw_peer_from(b, "127.0.0.2")
    try:
        assert denied.handshake(ih) and allowed.handshake(ih)
        proxy.cut()
        time.sleep(0.5)
        sa3.put_bucket_policy(Bucket=bucket, Policy=_policy(bucket, "127.0.0.0/29"))
        time.sleep(1.5)
        proxy.restore()
        assert denied.closed_by_peer(timeout=6.0), "B's seeder still serves the denied peer"
    finally:
        denied.close()
        allowed.close()
