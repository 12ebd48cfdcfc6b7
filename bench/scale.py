"""Scale-out figures: one node vs two on PostgreSQL + Redis + an S3 backend (moto), and the
cost of a deep listing page on PostgreSQL vs SQLite.

    python -m bench.scale [--keys 1000000] [--puts 400] [--large-mib 64]

Engines come from tests/scale/engines.py (Debian postgresql, redis-server, moto_server).
moto is a stand-in S3 written in Python: absolute figures are bounded by it, not by us.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from s3torrent.store import metadata as md
from tests.conftest import LiveServer, free_port, make_client
from tests.scale import engines


def _nodes(tmp: Path, count: int, env: dict[str, str]) -> list[LiveServer]:
    nodes = []
    for i in range(count):
        data = tmp / f"n{i}"
        data.mkdir(parents=True)
        node = LiveServer(data_dir=data, port=free_port(), peer_port=free_port(), env=env)
        node.start(timeout=60)
        nodes.append(node)
    return nodes


def small_puts(nodes: list[LiveServer], bucket: str, count: int, threads: int = 16) -> float:
    clients = [make_client(n.endpoint) for n in nodes]
    body = os.urandom(4096)

    def put(i: int) -> None:
        clients[i % len(clients)].put_object(Bucket=bucket, Key=f"s/{i}", Body=body)

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(put, range(count)))
    return count / (time.perf_counter() - start)


def large_get(node: LiveServer, bucket: str, mib: int) -> float:
    client = make_client(node.endpoint)
    data = os.urandom(mib * 1024 * 1024)
    client.put_object(Bucket=bucket, Key="large", Body=data)
    start = time.perf_counter()
    body = client.get_object(Bucket=bucket, Key="large")["Body"]
    n = 0
    while chunk := body.read(1 << 20):
        n += len(chunk)
    assert n == len(data)
    return n / (time.perf_counter() - start) / (1 << 20)


def deep_listing(url: str, keys: int) -> tuple[float, float]:
    """(seconds to fill, ms for the last page of 1000 keys by keyset)."""
    engine = md.create_engine(url)
    md.create_schema(engine)
    start = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(
            md.buckets.insert().values(name="big", owner_id="o", created_at=0.0, region="r")
        )
        batch = 20_000
        for first in range(0, keys, batch):
            rows = [
                md.ObjectVersion("big", f"k/{i:09d}", f"v{i:031d}", 1, "e", 0.0, "o").to_row()
                for i in range(first, min(keys, first + batch))
            ]
            conn.execute(md.objects.insert(), rows)
    filled = time.perf_counter() - start
    after = f"k/{keys - 1001:09d}".encode()
    with engine.connect() as conn:
        best = float("inf")
        for _ in range(5):
            t = time.perf_counter()
            page = list(md.iter_keys_from(conn, "big", after, b"", None, 1000))
            best = min(best, time.perf_counter() - t)
        assert len(page) == 1000
    engine.dispose()
    return filled, best * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--puts", type=int, default=400)
    ap.add_argument("--large-mib", type=int, default=64)
    args = ap.parse_args()
    pg, redis, moto = engines.start_postgres(), engines.start_redis(), engines.start_moto()
    nodes: list[LiveServer] = []
    try:
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            results: dict[str, Any] = {}
            for count in (1, 2):
                env = {
                    "S3TORRENT_METADATA_URL": engines.create_database(pg, f"bench{count}"),
                    "S3TORRENT_REDIS_URL": f"redis://127.0.0.1:{redis.port}/{count}",
                    "S3TORRENT_BLOBS_URL": f"s3://bench-{count}/data",
                    "S3TORRENT_BLOBS__ENDPOINT_URL": moto.url,
                    "S3TORRENT_BLOBS__ACCESS_KEY": "moto",
                    "S3TORRENT_BLOBS__SECRET_KEY": "moto",
                }
                nodes = _nodes(tmp / f"c{count}", count, env)
                make_client(nodes[0].endpoint).create_bucket(Bucket="bench")
                results[f"{count} node(s): 4 KiB PUT ops/s"] = small_puts(nodes, "bench", args.puts)
                results[f"{count} node(s): {args.large_mib} MiB GET MiB/s"] = large_get(
                    nodes[-1], "bench", args.large_mib
                )
                for n in nodes:
                    n.stop()
                nodes = []
            for name, url in (
                ("PostgreSQL", engines.create_database(pg, "listing")),
                ("SQLite", f"sqlite:///{tmp / 'listing.sqlite3'}"),
            ):
                filled, page_ms = deep_listing(url, args.keys)
                results[f"{name}: last page of {args.keys} keys (ms)"] = page_ms
                results[f"{name}: filling {args.keys} keys (s)"] = filled
            for k, v in results.items():
                print(f"| {k} | {v:.1f} |")
    finally:
        for n in nodes:
            n.stop()
        for e in (pg, redis, moto):
            e.stop()


if __name__ == "__main__":
    main()
