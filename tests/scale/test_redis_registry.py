"""The MemoryRegistry behaviour tests, run again against RedisRegistry on a real Redis.

Time is the caller's here (clock="caller"), so the same simulated-time tests apply. Tests
that look inside MemoryRegistry (its sweep, its rate table) are left out.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from s3torrent.tracker.redis_registry import RedisRegistry
from s3torrent.tracker.registry import RegistryLimits, TorrentRef
from tests.scale.engines import Engine
from tests.unit import test_tracker_registry as memory_tests

_prefixes = itertools.count()


class PerLoopRedisRegistry:
    """A RedisRegistry per call: the unit tests give every call its own event loop."""

    def __init__(self, url: str, limits: RegistryLimits) -> None:
        self.url = url
        self.limits = limits
        self.prefix = f"t{next(_prefixes)}"
        self.rng = random.Random(1)  # one stream across calls, as one registry would have

    def __getattr__(self, name: str) -> Callable[..., Any]:
        async def call(*args: Any) -> Any:
            client = aioredis.Redis.from_url(self.url)
            try:
                registry = RedisRegistry(
                    client, self.limits, prefix=self.prefix, clock="caller", rng=self.rng
                )
                return await getattr(registry, name)(*args)
            finally:
                await client.aclose()

        return call


SKIP = {
    "test_memory_registry_satisfies_the_protocol",  # constructs MemoryRegistry itself
    "test_peers_expire_after_ttl_lazily_and_by_sweep",  # MemoryRegistry.sweep
    "test_rate_limit_table_is_bounded",  # MemoryRegistry internals (Redis keys expire)
    "test_answers_carry_compact_entries_packed_once",  # MemoryRegistry's object reuse
    "test_parked_swarms_are_bounded",  # MemoryRegistry internals (Redis keys expire)
}
CASES = sorted(name for name in dir(memory_tests) if name.startswith("test_") and name not in SKIP)


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


@pytest.mark.parametrize("case", CASES)
def test_redis_registry_behaves_like_memory_registry(redis_make: None, case: str) -> None:
    getattr(memory_tests, case)()


def test_redis_peers_expire_after_ttl(redis_make: None) -> None:
    limits = RegistryLimits(peer_ttl=100, rate_burst=1e9, rate_per_ip=1e9)
    registry = memory_tests.make(limits)
    ok, req, ids, pid, run = (
        memory_tests.ok,
        memory_tests.req,
        memory_tests.ids,
        memory_tests.pid,
        memory_tests.run,
    )
    ok(registry, req(1), now=0)
    ok(registry, req(2), now=50)
    assert ids(ok(registry, req(3), now=99)) == {pid(1), pid(2)}
    assert ids(ok(registry, req(3), now=101)) == {pid(2)}
    assert run(registry.scrape((memory_tests.HASH,), 500))[memory_tests.HASH].incomplete == 0


def test_two_nodes_share_one_swarm(redis_server: Engine) -> None:
    """Peers announced through one node are handed out by another."""
    limits = memory_tests.NO_RATE_LIMIT
    node_a = PerLoopRedisRegistry(redis_server.url, limits)
    node_b = PerLoopRedisRegistry(redis_server.url, limits)
    node_b.prefix = node_a.prefix
    run, req, ids, pid = memory_tests.run, memory_tests.req, memory_tests.ids, memory_tests.pid
    run(node_a.register(memory_tests.HASH, memory_tests.REF))
    run(node_a.announce(req(1), 0.0))
    assert ids(run(node_b.announce(req(2), 0.0))) == {pid(1)}
    run(node_b.deregister(memory_tests.HASH))
    assert not run(node_a.is_registered(memory_tests.HASH))
