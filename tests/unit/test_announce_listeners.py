"""Who hears of an announce besides the registry (the origin seeder): only the peers the
registry listed. A peer refused a place (its swarm is full) is answered with peers, as
before, but is not remembered by the seeder either, whose bookkeeping per torrent therefore
stays within the registry's bound (it once grew by every peer id for an hour)."""

from __future__ import annotations

import asyncio
import random
import time
from types import SimpleNamespace
from typing import Any

from s3torrent.publication import ResolvingRegistry
from s3torrent.tracker.protocol import AnnounceEvent, AnnounceRequest
from s3torrent.tracker.registry import (
    SWARM_FULL,
    AnnounceResult,
    MemoryRegistry,
    RegistryLimits,
    TorrentRef,
)
from tests.unit.test_swarm_links import _swarm

CAP = 5


def _announce(info_hash: bytes, n: int, event: AnnounceEvent = AnnounceEvent.NONE) -> Any:
    return AnnounceRequest(
        info_hash, n.to_bytes(20, "big"), "203.0.113.7", 6881 + n, 0, 0, 0, event, 50, True,
        False, None, None,
    )  # fmt: skip


async def _scenario(sync: bool) -> tuple[list[Any], Any]:
    swarm, _ = _swarm()
    info = swarm.info
    info_hash = info.info_hash.v1
    limits = RegistryLimits(max_peers_per_torrent=CAP, rate_per_ip=1e9, rate_burst=1e9)
    inner = MemoryRegistry(limits, random.Random(1))
    await inner.register(info_hash, TorrentRef("b", "k", "v"))
    heard: list[bytes] = []

    def announced(_info: Any, req: Any) -> None:  # what Seeder.on_announce does
        heard.append(req.peer_id)
        swarm.announced_by(req.peer_id, req.left, req.event == "stopped", time.monotonic(), req.ip)

    async def admit(_swarm_id: bytes, _ip: str | None) -> Any:
        return info

    public: Any = SimpleNamespace(
        by_swarm={info_hash: info}, admits=lambda _i, _ip: True, admit=admit, announced=announced
    )
    registry = ResolvingRegistry(inner, public)
    results = []
    for n in range(4 * CAP):
        req = _announce(info_hash, n)
        results.append(
            registry.announce_now(req, 1000.0) if sync else await registry.announce(req, 1000.0)
        )
    # A listed peer leaving is still heard of.
    leave = _announce(info_hash, 0, AnnounceEvent.STOPPED)
    registry.announce_now(leave, 1000.0) if sync else await registry.announce(leave, 1000.0)
    return results, SimpleNamespace(heard=heard, swarm=swarm)


def test_peers_beyond_the_registry_bound_are_answered_but_not_remembered() -> None:
    for sync in (True, False):
        results, seen = asyncio.run(_scenario(sync))
        assert all(isinstance(r, AnnounceResult) for r in results)
        warnings = [r.warning for r in results]
        assert warnings == [None] * CAP + [SWARM_FULL] * (3 * CAP)
        assert all(r.complete == CAP for r in results[CAP:])  # answered as before
        listed = [n.to_bytes(20, "big") for n in range(CAP)]
        assert seen.heard == [*listed, listed[0]]  # the stored ones, and the leaving one
        assert len(seen.swarm.announced) == CAP - 1
