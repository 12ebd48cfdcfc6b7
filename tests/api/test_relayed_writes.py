"""Writes another process made are published by a non-owner worker lazily, not at once.

With `serve --workers N` every worker hears of every PUT (through the owner's hub). If each
decided at once whether to publish it, a PUT would cost N database reads and decisions, one
per worker: more cores, more work per write. The origin worker decides at once; every other
worker, the owner too, decides when a request names the torrent (an announce, a peer's
handshake, a web seed request: `PublicTorrents.admit` resolves what it does not know). A
node of several (Redis) decides the other nodes' writes at once. A revocation still reaches
every worker at once, lazily published or not.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from fastbencode import bdecode, bencode  # type: ignore[attr-defined]

from tests.conftest import make_client, node_in_process


def test_relayed_writes_wait_for_a_request_on_a_non_owner(tmp_path: Path) -> None:
    asyncio.run(asyncio.wait_for(_scenario(tmp_path), 120))


async def _settle(public: Any) -> None:
    for _ in range(50):
        if not public._tasks:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("publication tasks did not finish")


async def _scenario(tmp_path: Path) -> None:
    import hashlib
    import urllib.request

    from s3torrent.events import ObjectDeleted, ObjectWritten, relayed

    loop = asyncio.get_running_loop()
    async with node_in_process(tmp_path / "data") as (node, endpoint):
        public = node.svc.public
        events = node.svc.events
        s3 = make_client(endpoint)

        def put(key: str) -> None:
            s3.put_object(Bucket="relay", Key=key, Body=b"x" * 40_000, ACL="public-read")

        await loop.run_in_executor(None, lambda: s3.create_bucket(Bucket="relay"))

        seen: list[bool] = []
        events.subscribe(lambda _e: seen.append(relayed()))

        # A write of this process: published at once, whatever the setting.
        public.decide_relayed_writes = False
        await loop.run_in_executor(None, put, "a")
        await _settle(public)
        assert seen and seen[-1] is False
        [info_a] = [t for t in public.by_version.values() if t.key == "a"]

        # The same write, as another worker's event (the hub relays it): a non-owner leaves
        # it for the first request that names it.
        public.revoke(info_a.version_id)
        events.publish(ObjectWritten("relay", "a", info_a.version_id, None), relayed=True)
        assert seen[-1] is True and relayed() is False  # only while it is handled
        await _settle(public)
        assert info_a.version_id not in public.by_version
        torrent = await loop.run_in_executor(
            None, lambda: urllib.request.urlopen(f"{endpoint}/relay/a?torrent").read()
        )
        swarm_id = hashlib.sha1(bencode(bdecode(torrent)[b"info"])).digest()
        admitted = await public.admit(swarm_id, "127.0.0.1")  # an announce or a handshake
        assert admitted is not None and admitted.version_id == info_a.version_id
        assert info_a.version_id in public.by_version

        # A revocation reaches it like any other publication, relayed or not: at once.
        events.publish(ObjectDeleted("relay", "a", info_a.version_id), relayed=True)
        assert info_a.version_id not in public.by_version and swarm_id not in public.by_swarm
        await loop.run_in_executor(None, lambda: s3.delete_object(Bucket="relay", Key="a"))
        assert await public.admit(swarm_id, "127.0.0.1") is None  # and it stays gone

        # A node of several (Redis) decides the other nodes' writes at once.
        public.decide_relayed_writes = True
        await loop.run_in_executor(None, put, "b")
        await _settle(public)
        [info_b] = [t for t in public.by_version.values() if t.key == "b"]
        public.revoke(info_b.version_id)
        events.publish(ObjectWritten("relay", "b", info_b.version_id, None), relayed=True)
        await _settle(public)
        assert info_b.version_id in public.by_version
