"""Nodes of several (Redis) may share one data directory (local blobs on a shared path), each
with one worker and a node id of its own; anything else on a used directory is refused
(provision.hold_data_dir)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import LiveServer, make_client
from tests.ports import free_port
from tests.scale.engines import Engine

pytestmark = pytest.mark.timeout(180)

_redis_dbs = itertools.count(9)


def _node(data: Path, env: dict[str, str], node_id: str, workers: int = 1) -> LiveServer:
    return LiveServer(
        data_dir=data,
        port=free_port(),
        peer_port=free_port(),
        workers=workers,
        env={**env, "S3TORRENT_NODE_ID": node_id},
    )


@pytest.fixture
def shared(
    tmp_path: Path, pg_url: str, redis_server: Engine
) -> Iterator[tuple[Path, dict[str, str]]]:
    data = tmp_path / "shared-data"
    data.mkdir()
    env = {
        "S3TORRENT_METADATA_URL": pg_url,
        "S3TORRENT_REDIS_URL": f"redis://127.0.0.1:{redis_server.port}/{next(_redis_dbs) % 16}",
    }
    yield data, env


def test_nodes_with_their_own_ids_share_a_data_directory(
    shared: tuple[Path, dict[str, str]],
) -> None:
    data, env = shared
    a, b = _node(data, env, "node-a"), _node(data, env, "node-b")
    a.start(timeout=60)
    try:
        b.start(timeout=60)
        try:
            make_client(a.endpoint).create_bucket(Bucket="both")
            make_client(a.endpoint).put_object(Bucket="both", Key="k", Body=b"x" * 300_000)
            body = make_client(b.endpoint).get_object(Bucket="both", Key="k")["Body"].read()
            assert body == b"x" * 300_000
        finally:
            assert b.stop() == 0
    finally:
        assert a.stop() == 0


@pytest.mark.parametrize(
    ("node_id", "workers", "refusal"),
    [
        ("node-a", 1, "the node id 'node-a' is in use by another s3torrent server"),
        ("node-c", 2, "nodes share a data directory only with Redis and --workers 1 each"),
    ],
)
def test_a_node_that_would_collide_is_refused(
    shared: tuple[Path, dict[str, str]], node_id: str, workers: int, refusal: str
) -> None:
    data, env = shared
    a = _node(data, env, "node-a")
    a.start(timeout=60)
    try:
        other = _node(data, env, node_id, workers)
        with pytest.raises(RuntimeError, match="server exited") as refused:
            other.start(timeout=60)
        assert refusal in str(refused.value), str(refused.value)
        make_client(a.endpoint).create_bucket(Bucket="still-serving")
    finally:
        assert a.stop() == 0
