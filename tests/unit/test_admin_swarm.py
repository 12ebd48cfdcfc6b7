"""The swarm endpoint's tracker counts: a hybrid torrent's two swarms are one set of peers."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from s3torrent.admin.swarm import _tracker_counts
from s3torrent.tracker.registry import SwarmStats

V1 = "11" * 20
V2 = "22" * 32


class FakeRegistry:
    def __init__(self, stats: dict[bytes, SwarmStats]) -> None:
        self._stats = stats

    async def stats(self, info_hash: bytes) -> SwarmStats:
        return self._stats[info_hash]  # KeyError: not registered, as the real registries


def counts(registry: Any, hashes: list[str]) -> dict[str, int]:
    call: Any = SimpleNamespace(node=SimpleNamespace(swarms=registry))
    return asyncio.run(_tracker_counts(call, hashes))


def test_a_hybrid_client_on_both_swarms_is_counted_once() -> None:
    registry = FakeRegistry(
        {
            bytes.fromhex(V1): SwarmStats(
                completed=1, seeders=1, leechers=2, uploaded=0, downloaded=0
            ),
            # The v2 swarm is keyed by the hash truncated to 20 bytes (BEP 52).
            bytes.fromhex(V2)[:20]: SwarmStats(
                completed=0, seeders=1, leechers=1, uploaded=0, downloaded=0
            ),
        }
    )
    assert counts(registry, [V1, V2]) == {"seeders": 1, "leechers": 2, "completed": 1}


def test_unregistered_hashes_and_no_tracker_count_zero() -> None:
    assert counts(FakeRegistry({}), [V1, V2]) == {"seeders": 0, "leechers": 0, "completed": 0}
    assert counts(None, [V1]) == {"seeders": 0, "leechers": 0, "completed": 0}
