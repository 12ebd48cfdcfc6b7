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
from pathlib import Path
from typing import Any

from fastbencode import bdecode, bencode  # type: ignore[attr-defined]

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


async def _scenario(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    async with node_in_process(tmp_path / "data") as (node, endpoint):
        public = node.svc.public
        inner = public.registry
        public.registry = SlowRegistry(inner, 0.3)
        s3 = make_client(endpoint)
        await loop.run_in_executor(None, lambda: s3.create_bucket(Bucket="order"))

        def put_and_fetch() -> bytes:
            s3.put_object(Bucket="order", Key="k", Body=b"y" * 50_000, ACL="public-read")
            with urllib.request.urlopen(f"{endpoint}/order/k?torrent", timeout=10) as r:
                body: bytes = r.read()
            return body

        torrent = await loop.run_in_executor(None, put_and_fetch)
        swarm_id = hashlib.sha1(bencode(bdecode(torrent)[b"info"])).digest()
        admitted = 0
        for _ in range(40):  # the publication (0.3 s in register) is in flight meanwhile
            if await public.admit(swarm_id, "127.0.0.1") is not None:
                admitted += 1
                assert await inner.is_registered(swarm_id), "admitted but not registered"
            await asyncio.sleep(0.02)
        assert admitted > 0
