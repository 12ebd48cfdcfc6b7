"""The registry tests of tests/unit/test_audit_swarm_denied.py (peer sources, unlisting the
peers a new decision refuses) run here against RedisRegistry on a real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from s3torrent.tracker.registry import RegistryLimits, TorrentRef
from tests.scale.engines import Engine
from tests.scale.test_redis_registry import PerLoopRedisRegistry
from tests.unit import test_audit_swarm_denied as denied_tests
from tests.unit import test_tracker_registry as memory_tests

pytestmark = pytest.mark.timeout(120)


# ---- the unit tests of unlisting refused peers, against RedisRegistry ----

# Those that look at a node or at the seeder's swarm, not at a registry.
NOT_REGISTRY = {
    "test_a_narrowed_policy_unlists_the_peers_it_now_denies",
    "test_the_seeder_forgets_announced_peers_by_their_source",
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
