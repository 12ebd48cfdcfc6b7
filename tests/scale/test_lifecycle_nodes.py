"""Two nodes on one PostgreSQL database run lifecycle passes: every expiry is applied exactly
once, even with a lease so short that passes overlap (the conditional delete decides)."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import LiveServer, free_port, make_client, sign_request

pytestmark = pytest.mark.timeout(180)


def lifecycle_counters(node: LiveServer) -> dict[str, float]:
    url = f"{node.endpoint}/_metrics"
    req = urllib.request.Request(url, headers=sign_request("GET", url))
    with urllib.request.urlopen(req, timeout=10) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("s3torrent_lifecycle_"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


@pytest.fixture
def two_nodes(tmp_path: Path, pg_url: str) -> Iterator[tuple[LiveServer, LiveServer]]:
    env = {
        "S3TORRENT_METADATA_URL": pg_url,
        # Nodes of one database share the master key file.
        "S3TORRENT_ENCRYPTION__MASTER_KEY_FILE": str(tmp_path / "master-keys.json"),
        "S3TORRENT_LIFECYCLE__DAY_SECONDS": "1",
        "S3TORRENT_LIFECYCLE__INTERVAL": "0.2",
        "S3TORRENT_LIFECYCLE__BATCH_SIZE": "50",
        # Shorter than a batch of deletes may take: passes of the two nodes overlap.
        "S3TORRENT_LIFECYCLE__LEASE_TTL": "0.2",
    }
    nodes = []
    for name in ("a", "b"):
        data = tmp_path / name
        data.mkdir()
        node = LiveServer(
            data_dir=data,
            port=free_port(),
            peer_port=free_port(),
            env={**env, "S3TORRENT_NODE_ID": f"node-{name}"},
        )
        node.start(timeout=60)
        nodes.append(node)
    try:
        yield nodes[0], nodes[1]
    finally:
        for node in nodes:
            node.stop(timeout=20)


def test_each_expiry_is_applied_once_across_two_nodes(
    two_nodes: tuple[LiveServer, LiveServer],
) -> None:
    a, b = two_nodes
    s3 = make_client(a.endpoint)
    s3.create_bucket(Bucket="shared")
    n = 600
    # Inline-sized objects: the nodes share the database, not a blob store.
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda i: s3.put_object(Bucket="shared", Key=f"tmp/{i:05d}", Body=b"x"), range(n)
            )
        )
    s3.put_object(Bucket="shared", Key="keep", Body=b"k")
    s3.put_bucket_lifecycle_configuration(
        Bucket="shared",
        LifecycleConfiguration={
            "Rules": [
                {
                    "ID": "tmp",
                    "Filter": {"Prefix": "tmp/"},
                    "Status": "Enabled",
                    "Expiration": {"Days": 1},
                }
            ]
        },
    )
    deadline = time.monotonic() + 90
    while s3.list_objects_v2(Bucket="shared", Prefix="tmp/")["KeyCount"]:
        assert time.monotonic() < deadline, "objects still there"
        time.sleep(0.5)
    time.sleep(1.0)  # let the last passes finish counting
    ca, cb = lifecycle_counters(a), lifecycle_counters(b)
    print("DEBUG", ca, cb)
    expired = "s3torrent_lifecycle_objects_expired_total"
    assert ca[expired] + cb[expired] == n
    assert ca["s3torrent_lifecycle_passes_total"] + cb["s3torrent_lifecycle_passes_total"] > 0
    assert s3.head_object(Bucket="shared", Key="keep")["ContentLength"] == 1
    b3 = make_client(b.endpoint)
    assert b3.list_objects_v2(Bucket="shared")["KeyCount"] == 1
