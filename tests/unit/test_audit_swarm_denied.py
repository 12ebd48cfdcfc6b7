"""The peers of a kept swarm that a new decision would no longer admit are unlisted.

Every change of a bucket's access revokes its torrents and publishes again those still
public; the registry keeps their swarms across it (parked in memory, kept in Redis), since
peers announce only every half hour. Until 2026-12-07 such a swarm came back whole: with a
bucket policy narrowed to other networks (aws:SourceIp), a peer from a network now denied
was refused at its own next announce but stayed in every peer list handed to the allowed
peers until it expired (an hour). The registry now reports each peer's announce source
(`peer_sources`) and unlists the ones the publication's decision refuses (`drop_peers`).

The registry tests here call `base.make`, so tests/scale/test_audit_redis_namespace.py runs
them against Redis too.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

from s3torrent.tracker.protocol import AnnounceEvent, AnnounceRequest
from s3torrent.tracker.registry import PEER_ID_IN_USE, AnnounceFailure, AnnounceResult
from tests.conftest import make_client, node_in_process
from tests.unit import test_tracker_registry as base


def _from(n: int, source: str, **kw: Any) -> AnnounceRequest:
    """Peer n's announce from `source`, naming its own `ip` (trust_ip_param) if given."""
    request = base.req(n, **kw)
    if request.ip == source:
        return request
    return request._replace(source=source)


def test_peer_sources_are_where_peers_announced_from_not_the_ip_they_named() -> None:
    registry = base.make()
    base.ok(registry, base.req(1, ip="10.1.0.1"))
    base.ok(registry, _from(2, "10.2.0.2", ip="192.0.2.2"))
    sources = base.run(registry.peer_sources(base.HASH))
    assert sources == {base.pid(1): "10.1.0.1", base.pid(2): "10.2.0.2"}
    assert base.run(registry.peer_sources(b"u" * 20)) == {}


def test_dropped_peers_are_unlisted_and_uncounted() -> None:
    registry = base.make()
    base.ok(registry, base.req(1, ip="10.1.0.1", left=0))
    base.ok(registry, base.req(2, ip="10.2.0.2", left=0))
    base.ok(registry, base.req(3, ip="10.2.0.3"))
    dropped = {base.pid(2): "10.2.0.2", base.pid(3): "10.2.0.3"}
    assert base.run(registry.drop_peers(base.HASH, dropped)) == 2
    assert base.ids(base.ok(registry, base.req(4, ip="10.1.0.4"))) == {base.pid(1)}
    stats = base.run(registry.scrape((base.HASH,), 0.0))[base.HASH]
    assert (stats.complete, stats.incomplete) == (1, 1)  # peer 1, and peer 4 itself
    # Dropping again (another node's re-decision, say) changes nothing.
    assert base.run(registry.drop_peers(base.HASH, dropped)) == 0


def test_a_peer_that_announced_from_elsewhere_since_is_kept() -> None:
    registry = base.make()
    base.ok(registry, base.req(1, ip="10.2.0.1", key=b"k1"))
    sources = base.run(registry.peer_sources(base.HASH))
    # Between the read and the drop it announced from an allowed address (same key).
    base.ok(registry, base.req(1, ip="10.1.0.1", key=b"k1"))
    assert base.run(registry.drop_peers(base.HASH, sources)) == 0
    assert base.ids(base.ok(registry, base.req(2))) == {base.pid(1)}


def test_an_unregistered_torrent_drops_nothing() -> None:
    registry = base.make()
    base.ok(registry, base.req(1, ip="10.2.0.1"))
    base.run(registry.deregister(base.HASH))
    assert base.run(registry.drop_peers(base.HASH, {base.pid(1): "10.2.0.1"})) == 0


def test_naming_a_peers_address_does_not_make_another_host_that_peer() -> None:
    """Under trust_ip_param a client names the `ip` its peers reach it at: that address is
    its word, not where it is. Until 2026-12-07 the registry took a peer id announced with
    the same `ip` for the same peer whatever its key, so any host that learnt a peer's id
    (non-compact answers carry them) could stop it (unlisted for half an hour) or move it
    elsewhere by naming its address. Only the same source, or the peer's key, proves it."""
    registry = base.make()
    base.ok(registry, base.req(1, ip="10.1.0.1", key=b"secret"))
    for event in (AnnounceEvent.STOPPED, AnnounceEvent.NONE):
        forged = _from(1, "10.6.6.6", ip="10.1.0.1", key=b"guess", event=event)
        assert base.run(registry.announce(forged, 0.0)) == AnnounceFailure(PEER_ID_IN_USE)
    forged = _from(1, "10.6.6.6", ip="10.1.0.1", key=b"guess")._replace(port=7000)
    assert isinstance(base.run(registry.announce(forged, 0.0)), AnnounceFailure)
    assert {(p.ip, p.port) for p in base.ok(registry, base.req(2)).peers} == {("10.1.0.1", 6881)}
    # The peer itself, from where it announced, naming another address for its peers: fine.
    base.ok(registry, _from(1, "10.1.0.1", ip="192.0.2.1"))


def test_a_peer_that_announced_without_a_key_is_that_peer_from_its_source_only() -> None:
    """A peer id is no secret (compact=0 answers and every handshake carry it). Until
    2026-12-07 a peer that announced without a key was anyone's: another host could stop
    it or list its own address in its place."""
    registry = base.make()
    base.ok(registry, base.req(1, ip="10.1.0.1"))
    for event in (AnnounceEvent.STOPPED, AnnounceEvent.NONE):
        forged = base.req(1, ip="10.6.6.6", event=event)
        assert base.run(registry.announce(forged, 0.0)) == AnnounceFailure(PEER_ID_IN_USE)
    assert {p.ip for p in base.ok(registry, base.req(2)).peers} == {"10.1.0.1"}
    # From its own source it is the same peer, with or without a key now.
    base.ok(registry, base.req(1, ip="10.1.0.1", event=AnnounceEvent.STOPPED))
    assert {p.ip for p in base.ok(registry, base.req(2)).peers} == set()


# ---- with the real decision: a node in this process, its bucket policy narrowed ----

MiB = 1024 * 1024


def _policy(bucket: str, network: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "s3:GetObject",
                    "Resource": f"arn:aws:s3:::{bucket}/*",
                    "Condition": {"IpAddress": {"aws:SourceIp": network}},
                }
            ],
        }
    )


def test_a_narrowed_policy_unlists_the_peers_it_now_denies(tmp_path: Path) -> None:
    asyncio.run(asyncio.wait_for(_narrowed(tmp_path), 120))


async def _narrowed(tmp_path: Path) -> None:
    async with node_in_process(tmp_path / "data") as (node, endpoint):
        s3 = make_client(endpoint)
        bucket = "narrowed"
        await asyncio.to_thread(s3.create_bucket, Bucket=bucket)
        await asyncio.to_thread(s3.put_object, Bucket=bucket, Key="k", Body=os.urandom(MiB))
        await asyncio.to_thread(
            s3.put_bucket_policy, Bucket=bucket, Policy=_policy(bucket, "10.0.0.0/8")
        )
        obj = await node.svc.meta.object(bucket, "k")
        info = await node.svc.public.consider(obj)
        assert info is not None
        tracker = node.svc.tracker._registry  # the ResolvingRegistry every channel asks
        ih = info.swarm_ids[0]

        async def announce(n: int, source: str, **kw: Any) -> AnnounceResult:
            result = await tracker.announce(_from(n, source, info_hash=ih, **kw), 0.0)
            assert isinstance(result, AnnounceResult), result
            return result

        await announce(1, "10.1.0.1", left=0)
        await announce(2, "10.2.0.2", left=0)
        # Named an allowed address for its peers: the decision still goes by its source.
        await announce(3, "10.2.0.3", ip="10.1.0.3", left=0)
        assert base.ids(await announce(4, "10.1.0.4")) == {base.pid(1), base.pid(2), base.pid(3)}
        await asyncio.to_thread(
            s3.put_bucket_policy, Bucket=bucket, Policy=_policy(bucket, "10.1.0.0/16")
        )
        assert base.ids(await announce(4, "10.1.0.4")) == {base.pid(1)}


# ---- the origin seeder's swarm: the peers it heard of through the tracker ----


def test_the_seeder_forgets_announced_peers_by_their_source() -> None:
    from tests.unit.test_swarm_links import _swarm

    async def scenario() -> None:
        swarm, _ = _swarm()
        now = time.monotonic()
        # A seed from a denied network that named an allowed address for its peers, an
        # allowed seed, and an allowed leecher.
        swarm.announced_by(b"D" * 20, 0, False, now, "10.1.0.9", "10.2.0.9")
        swarm.announced_by(b"K" * 20, 0, False, now, "10.1.0.1")
        swarm.announced_by(b"L" * 20, 100, False, now, "10.1.0.2")
        assert set(swarm.remembered) == {b"D" * 20, b"K" * 20}
        assert swarm.forget_refused(lambda source: source.startswith("10.1.")) == 1
        assert set(swarm.remembered) == {b"K" * 20}
        assert set(swarm.announced) == {b"K" * 20, b"L" * 20}
        assert "10.1.0.9" not in swarm.announcers
        assert swarm.tstats.remembered == 1

    asyncio.run(scenario())


def test_a_time_boundary_unlists_the_peers_it_now_denies(tmp_path: Path) -> None:
    """Nothing is written when a policy's time window for some networks ends: the node's own
    timer decides the torrent again, and the swarm kept over it loses those networks' peers."""
    asyncio.run(asyncio.wait_for(_window_ends(tmp_path), 120))


async def _window_ends(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    async with node_in_process(tmp_path / "data") as (node, endpoint):
        s3 = make_client(endpoint)
        bucket = "window"
        end = int(time.time()) + 3
        until = datetime.fromtimestamp(end, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        allow = json.loads(_policy(bucket, "10.1.0.0/16"))
        window = dict(allow["Statement"][0])
        window["Condition"] = {
            "IpAddress": {"aws:SourceIp": "10.0.0.0/8"},
            "DateLessThan": {"aws:CurrentTime": until},
        }
        allow["Statement"].append(window)
        await asyncio.to_thread(s3.create_bucket, Bucket=bucket)
        await asyncio.to_thread(s3.put_object, Bucket=bucket, Key="k", Body=os.urandom(MiB))
        await asyncio.to_thread(s3.put_bucket_policy, Bucket=bucket, Policy=json.dumps(allow))
        info = await node.svc.public.consider(await node.svc.meta.object(bucket, "k"))
        assert info is not None
        tracker = node.svc.tracker._registry
        ih = info.swarm_ids[0]

        async def peers_of_4() -> set[bytes | None]:
            result = await tracker.announce(_from(4, "10.1.0.4", info_hash=ih), 0.0)
            assert isinstance(result, AnnounceResult), result
            return base.ids(result)

        for n, source in ((1, "10.1.0.1"), (2, "10.2.0.2")):
            admitted = await tracker.announce(_from(n, source, info_hash=ih, left=0), 0.0)
            assert isinstance(admitted, AnnounceResult), admitted
        assert time.time() < end, "too slow to set up before the window ended"
        assert await peers_of_4() == {base.pid(1), base.pid(2)}
        async with asyncio.timeout(max(0.0, end - time.time()) + 3):
            while await peers_of_4() != {base.pid(1)}:
                await asyncio.sleep(0.1)
