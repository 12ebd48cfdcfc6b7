"""The tracker as clients meet it in the field, on two nodes sharing PostgreSQL and Redis."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import make_client
from tests.scale.engines import Engine
from tests.scale.test_nodes import Cluster, announce, info_hash_of
from tests.scale.test_nodes import cluster as _cluster  # noqa: F401 (the fixture)

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def nodes(
    _cluster: tuple[Cluster, str],  # noqa: F811
) -> Iterator[Cluster]:
    c, _ = _cluster
    # A tight announce loop from one address: no rate limit in the way.
    c.env["S3TORRENT_TRACKER__ANNOUNCE_RATE_PER_IP"] = "100000"
    c.env["S3TORRENT_TRACKER__ANNOUNCE_RATE_BURST"] = "100000"
    yield c


def _public_policy(bucket: str, sid: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": sid,
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "s3:GetObject",
                    "Resource": f"arn:aws:s3:::{bucket}/*",
                }
            ],
        }
    )


def test_policy_change_that_keeps_public_never_unregisters_on_any_node(
    nodes: Cluster,
) -> None:
    a, b = nodes.start("a"), nodes.start("b")
    sa3 = make_client(a.endpoint)
    sa3.create_bucket(Bucket="keep")
    sa3.put_bucket_policy(Bucket="keep", Policy=_public_policy("keep", "v0"))
    sa3.put_object(Bucket="keep", Key="k", Body=b"x" * 100_000)
    ih = info_hash_of(sa3.get_object_torrent(Bucket="keep", Key="k")["Body"].read())
    assert b"failure reason" not in announce(a, ih, 1, 40101)
    assert b"failure reason" not in announce(b, ih, 2, 40102)

    failures: list[bytes] = []
    answered = [0]
    stop = threading.Event()

    def loop(node_name: str, peer: int) -> None:
        node = nodes.nodes[node_name]
        while not stop.is_set():
            answer = announce(node, ih, peer, 40000 + peer)
            answered[0] += 1
            if b"failure reason" in answer:
                failures.append(answer[b"failure reason"])

    threads = [
        threading.Thread(target=loop, args=(name, peer))
        for name, peer in (("a", 3), ("b", 4), ("b", 5), ("a", 6))
    ]
    for t in threads:
        t.start()
    try:
        for n in range(1, 16):
            sa3.put_bucket_policy(Bucket="keep", Policy=_public_policy("keep", f"v{n}"))
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
    assert answered[0] > 100
    assert failures == [], f"{len(failures)} of {answered[0]} announces failed: {failures[:3]}"

    # A real revocation still stops announces on both nodes within a second.
    sa3.delete_bucket_policy(Bucket="keep")
    deadline = time.monotonic() + 1.0
    for node, peer in ((b, 7), (a, 8)):
        while b"failure reason" not in announce(node, ih, peer, 40000 + peer):
            assert time.monotonic() < deadline, f"{node.endpoint} still serves a revoked torrent"
            time.sleep(0.02)
