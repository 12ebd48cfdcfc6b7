"""A torrent is admitted only once its tracker registry holds it.

`PublicTorrents` publishes a version in two places: the tracker registry (Redis on several
nodes: a round trip) and the in-process maps `admit` reads. In the other order an announce
could be admitted while the registration was in flight and then refused by the registry as
"unregistered torrent" (seen once in tests/scale: a first announce right after the PUT).
"""

from __future__ import annotations

import asyncio
import hashlib
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from fastbencode import bdecode, bencode  # type: ignore[attr-defined]

from s3torrent.peer.mse import obfuscated_swarm_id
from s3torrent.torrent.catalog import piece_hashes
from tests.conftest import make_client, node_in_process


class SlowRegistry:
    """The node's registry with a register() that takes `delay` seconds, like a far Redis."""

    def __init__(self, inner: Any, delay: float) -> None:
        self.inner = inner
        self.delay = delay

    async def register(self, info_hash: bytes, meta: Any) -> None:
        await asyncio.sleep(self.delay)
        await self.inner.register(info_hash, meta)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_an_admitted_swarm_is_always_registered(tmp_path: Path) -> None:
    asyncio.run(asyncio.wait_for(_scenario(tmp_path), 120))


async def _swarm_id(node: Any, bucket: str, key: str) -> bytes:
    """The v1 swarm id of the key's current version, from its rows (no `?torrent`)."""
    obj = await node.svc.meta.object(bucket, key)
    hashes = piece_hashes(obj, await node.svc.meta.torrent_hashes(obj.version_id))
    assert hashes is not None
    swarm_id: bytes = node.svc.torrents.info_for(obj, hashes).swarm_ids[0]
    return swarm_id


async def _put_public(endpoint: str, bucket: str, body: bytes) -> None:
    """A new bucket and its public-read object "k", written by boto3 off the node's loop."""
    s3 = make_client(endpoint)
    await asyncio.to_thread(s3.create_bucket, Bucket=bucket)
    await asyncio.to_thread(s3.put_object, Bucket=bucket, Key="k", Body=body, ACL="public-read")


async def _scenario(tmp_path: Path) -> None:
    async with node_in_process(tmp_path / "data") as (node, endpoint):
        public = node.svc.public
        inner = public.registry
        public.registry = SlowRegistry(inner, 0.3)
        await _put_public(endpoint, "order", b"y" * 50_000)
        swarm_id = await _swarm_id(node, "order", "k")
        assert public.get(swarm_id) is None  # its publication is in flight (0.3 s)
        admitted = 0
        for _ in range(40):
            if await public.admit(swarm_id, "127.0.0.1") is not None:
                admitted += 1
                assert await inner.is_registered(swarm_id), "admitted but not registered"
            await asyncio.sleep(0.02)
        assert admitted > 0


def _fetch_torrent(endpoint: str, bucket: str, key: str) -> bytes:
    with urllib.request.urlopen(f"{endpoint}/{bucket}/{key}?torrent", timeout=30) as r:
        body: bytes = r.read()
    return body


def test_a_torrent_file_handed_out_names_a_live_swarm(tmp_path: Path) -> None:
    """`?torrent` answers once this process has published the version: an MSE handshake
    (which names a torrent only by a hash of its info-hash, so the seeder cannot look an
    unknown one up) may come straight after it. A large object is published after its PUT,
    a small one after its first `?torrent` hashes it; both while a slow registry holds the
    publication up."""
    asyncio.run(asyncio.wait_for(_live_scenario(tmp_path), 120))


async def _live_scenario(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    async with node_in_process(tmp_path / "data", seeder=True) as (node, endpoint):
        public = node.svc.public
        public.registry = SlowRegistry(public.registry, 0.5)
        s3 = make_client(endpoint)
        await loop.run_in_executor(None, lambda: s3.create_bucket(Bucket="live"))
        for key, size in (("large", 200_000), ("small", 5_000)):
            body = bytes([len(key)]) * size
            await loop.run_in_executor(
                None,
                lambda k=key, b=body: s3.put_object(
                    Bucket="live", Key=k, Body=b, ACL="public-read"
                ),
            )
            torrent = await loop.run_in_executor(None, _fetch_torrent, endpoint, "live", key)
            swarm_id = hashlib.sha1(bencode(bdecode(torrent)[b"info"])).digest()
            # At once, no waiting: published, and found by the seeder's MSE lookup.
            assert public.get(swarm_id) is not None, key
            assert node.seeder.swarm_id_by_obfuscated(obfuscated_swarm_id(swarm_id)) == swarm_id
        # A private object made public by its ACL: the same once its `?torrent` is answered.
        await loop.run_in_executor(
            None, lambda: s3.put_object(Bucket="live", Key="acl", Body=b"z" * 100_000)
        )
        await asyncio.sleep(0.6)  # its write's own (refused) decision is over
        await loop.run_in_executor(
            None, lambda: s3.put_object_acl(Bucket="live", Key="acl", ACL="public-read")
        )
        torrent = await loop.run_in_executor(None, _fetch_torrent, endpoint, "live", "acl")
        swarm_id = hashlib.sha1(bencode(bdecode(torrent)[b"info"])).digest()
        assert public.get(swarm_id) is not None
        assert node.seeder.swarm_id_by_obfuscated(obfuscated_swarm_id(swarm_id)) == swarm_id


class LateDeregistrations:
    """The node's registry with a deregister() that lands `delay` seconds late, like a far
    Redis or a task the loop runs after others. Its first register() publishes `event`
    first: a change of access (committed by another worker, say) that lands while a
    publication is being decided."""

    def __init__(self, inner: Any, delay: float, event: Callable[[], None]) -> None:
        self.inner = inner
        self.delay = delay
        self.event: Callable[[], None] | None = event
        self.registrations: list[bytes] = []

    async def register(self, info_hash: bytes, meta: Any) -> None:
        event, self.event = self.event, None
        if event is not None:
            event()
        self.registrations.append(info_hash)
        await self.inner.register(info_hash, meta)

    async def deregister(self, info_hash: bytes) -> None:
        await asyncio.sleep(self.delay)
        await self.inner.deregister(info_hash)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_publication_decided_again_stays_registered(tmp_path: Path) -> None:
    """A change of access during a publication's decision makes `consider` revoke what it
    just registered and decide again. The revocation's deregistration is a task of its own;
    the new decision, whose reads do not wait (point reads on the loop), registered the
    swarm again before that task ran, which then removed it: admitted by `admit`, refused by
    the registry as "unregistered torrent" for good (seen with 2 workers, 1 to 5 of 300
    public PUTs). A registration now waits for the deregistrations before it."""
    asyncio.run(asyncio.wait_for(_decided_again_scenario(tmp_path), 120))


async def _decided_again_scenario(tmp_path: Path) -> None:
    from s3torrent.events import AccessChanged

    loop = asyncio.get_running_loop()
    async with node_in_process(tmp_path / "data") as (node, endpoint):
        public = node.svc.public
        inner = public.registry
        late = LateDeregistrations(
            inner, 0.2, lambda: node.svc.events.publish(AccessChanged("again", None))
        )
        public.registry = late
        await _put_public(endpoint, "again", b"a" * 50_000)
        swarm_id = await _swarm_id(node, "again", "k")
        for _ in range(100):  # the decision, and the deregistration it left behind
            if not public._tasks:
                break
            await asyncio.sleep(0.02)
        assert not public._tasks
        assert late.registrations.count(swarm_id) == 2  # decided twice
        assert public.get(swarm_id) is not None
        assert await inner.is_registered(swarm_id), "admitted but not registered"
        query = urlencode(
            {
                "info_hash": swarm_id,
                "peer_id": b"-T00001-000000000001",
                "port": 6881,
                "left": 0,
                "compact": 1,
            },
            # %20 for a 0x20 byte, as BitTorrent clients escape: a URL's query takes '+'
            # literally (RFC 3986, and opentracker), so quote_plus's '+' would name another
            # torrent for the one swarm id in about 13 that holds a 0x20 byte.
            quote_via=quote,
        )
        url = f"{endpoint}/_tracker/announce?{query}"
        answer = await loop.run_in_executor(None, lambda: urllib.request.urlopen(url).read())
        assert b"failure reason" not in bdecode(answer), answer
