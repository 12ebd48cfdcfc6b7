"""An answered request is freed by reference counting, not left to the cyclic collector.

Each S3 request's S3Request and its aiohttp request point at each other until the last of
their readers (the finished hooks and the CORS headers) is done. If that link outlived the
answer, every request (its headers, rows, writer: some two dozen objects) would wait for
the cyclic collector, which then took about 7% of a 4 KiB GET's CPU (issue #21). With the
collector off, no S3Request of an answered request may stay alive, whatever the outcome.
"""

from __future__ import annotations

import asyncio
import gc
import os
from pathlib import Path

from tests.conftest import make_client, node_in_process

ROUNDS = 40


def test_answered_requests_leave_no_cycles(tmp_path: Path) -> None:
    asyncio.run(asyncio.wait_for(_scenario(tmp_path), 120))


def _live_s3_requests() -> int:
    from s3torrent.s3.server import S3Request

    return sum(1 for o in gc.get_objects() if isinstance(o, S3Request))


async def _scenario(tmp_path: Path) -> None:
    import aiohttp

    loop = asyncio.get_running_loop()
    async with node_in_process(tmp_path / "data") as (_node, endpoint):
        s3 = make_client(endpoint)
        await loop.run_in_executor(None, lambda: s3.create_bucket(Bucket="life"))
        body = os.urandom(4096)
        await loop.run_in_executor(
            None, lambda: s3.put_object(Bucket="life", Key="k", Body=body, ACL="public-read")
        )
        big = os.urandom(300_000)  # a blob, streamed by the handler (prepared inside it)
        await loop.run_in_executor(
            None, lambda: s3.put_object(Bucket="life", Key="big", Body=big, ACL="public-read")
        )
        signed = s3.generate_presigned_url(
            "get_object", Params={"Bucket": "life", "Key": "k"}, ExpiresIn=600
        )
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http:
            gc.collect()
            gc.disable()
            try:
                before = _live_s3_requests()
                for _ in range(ROUNDS):
                    async with http.get(signed) as r:
                        assert r.status == 200 and await r.read() == body
                    async with http.head(f"{endpoint}/life/k") as r:
                        assert r.status == 200
                    async with http.get(
                        f"{endpoint}/life/k", headers={"Origin": "https://example.com"}
                    ) as r:
                        assert r.status == 200 and await r.read() == body
                        assert r.headers.get("Access-Control-Allow-Origin")
                    async with http.get(f"{endpoint}/life/big") as r:
                        assert r.status == 200 and await r.read() == big
                    async with http.get(f"{endpoint}/life/absent") as r:
                        assert r.status == 403  # anonymous: no ListBucket
                    async with http.put(f"{endpoint}/life/anon", data=b"x") as r:
                        assert r.status == 403
                await asyncio.sleep(0.1)
                left = _live_s3_requests() - before
            finally:
                gc.enable()
        # Six requests a round: with the cycle every one of them would still be here.
        assert left <= 2, f"{left} S3Requests of {6 * ROUNDS} answered ones outlived them"
        # A read the quick path hands to aiohttp (a blob's body, on a fresh connection each
        # time) leaves nothing behind either: neither its quick attempt nor aiohttp's answer.
        fresh = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=fresh) as http:
            gc.collect()
            gc.disable()
            try:
                before = _live_s3_requests()
                for _ in range(ROUNDS // 2):
                    async with http.get(f"{endpoint}/life/big") as r:
                        assert r.status == 200 and await r.read() == big
                await asyncio.sleep(0.1)
                left = _live_s3_requests() - before
            finally:
                gc.enable()
        assert left <= 2, f"{left} S3Requests of {ROUNDS // 2} handed-over reads outlived them"
        # The signed PUT path too (boto3, off the loop).
        gc.collect()
        gc.disable()
        try:
            before = _live_s3_requests()
            for i in range(10):
                await loop.run_in_executor(
                    None, lambda i=i: s3.put_object(Bucket="life", Key=f"p{i}", Body=body)
                )
            await asyncio.sleep(0.1)
            left = _live_s3_requests() - before
        finally:
            gc.enable()
        assert left <= 2, f"{left} of 10 PUTs' S3Requests outlived them"
