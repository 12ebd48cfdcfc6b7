"""Scale-out audit: promises that must hold across nodes sharing PostgreSQL, Redis and an S3
blob backend (moto): revocations of every kind made on one node stop every channel of the
other within a second, conditional writes and completions racing on two nodes have one
winner, and an unreachable engine gives a bounded, clear S3 answer."""

from __future__ import annotations

import contextlib
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import LiveServer, make_client
from tests.scale.engines import Engine
from tests.scale.test_nodes import Cluster, _redis_dbs, announce, info_hash_of
from tests.seeding import RawPeer, public_read_policy

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def nodes(
    tmp_path_factory: pytest.TempPathFactory,
    postgres: Engine,
    redis_server: Engine,
    moto: Engine,
) -> Iterator[tuple[LiveServer, LiveServer]]:
    """Two nodes, a and b, on one PostgreSQL database, one Redis database and one blob
    bucket, shared by this module's tests (each uses buckets of its own)."""
    from tests.scale import engines

    tmp = tmp_path_factory.mktemp("audit-nodes")
    pg_url = engines.create_database(postgres, f"audit_{os.getpid()}_{tmp.name[-6:]}")
    env = {
        "S3TORRENT_METADATA_URL": pg_url,
        "S3TORRENT_REDIS_URL": f"redis://127.0.0.1:{redis_server.port}/{next(_redis_dbs) % 16}",
        "S3TORRENT_BLOBS_URL": f"s3://audit-{os.getpid()}-{tmp.name[-6:].lower()}/data",
        "S3TORRENT_BLOBS__ENDPOINT_URL": moto.url,
        "S3TORRENT_BLOBS__ACCESS_KEY": "moto",
        "S3TORRENT_BLOBS__SECRET_KEY": "moto",
        "S3TORRENT_METERING__FLUSH_INTERVAL": "0.2",
    }
    c = Cluster(tmp, env)
    try:
        yield c.start("a"), c.start("b")
    finally:
        c.stop()


def _status(url: str, headers: dict[str, str] | None = None) -> int:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            r.read()
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _webseed(node: LiveServer, ih: bytes, key: str) -> int:
    return _status(f"{node.endpoint}/_webseed/{ih.hex()}/{key}", {"Range": "bytes=0-16383"})


def _served_on(node: LiveServer, bucket: str, key: str, ih: bytes) -> dict[str, bool]:
    """Which anonymous channels of `node` still serve the object (True: served)."""
    peer = RawPeer(node.peer_port, timeout=3)
    try:
        seeder = peer.handshake(ih)
    finally:
        peer.close()
    return {
        "torrent": _status(f"{node.endpoint}/{bucket}/{key}?torrent") == 200,
        "get": _status(f"{node.endpoint}/{bucket}/{key}") == 200,
        "tracker": b"failure reason" not in announce(node, ih, 7, 40777),
        "webseed": _webseed(node, ih, key) == 206,
        "seeder": seeder,
    }


def _until_stopped(node: LiveServer, bucket: str, key: str, ih: bytes, since: float) -> float:
    """Seconds from `since` until no channel of `node` serves the object (bounded)."""
    deadline = since + 5.0
    while any(served := _served_on(node, bucket, key, ih).values()):
        assert time.monotonic() < deadline, (node.endpoint, served)
        time.sleep(0.05)
    return time.monotonic() - since


def _public_object(a: LiveServer, b: LiveServer, bucket: str, key: str) -> tuple[bytes, Any]:
    """A public object written on A, published and served by every channel of B."""
    sa3 = make_client(a.endpoint)
    sa3.create_bucket(Bucket=bucket)
    sa3.put_object(Bucket=bucket, Key=key, Body=os.urandom(200_000), ACL="public-read")
    ih = info_hash_of(sa3.get_object_torrent(Bucket=bucket, Key=key)["Body"].read())
    assert all(_served_on(b, bucket, key, ih).values()), _served_on(b, bucket, key, ih)
    return ih, sa3


def _open_connection(node: LiveServer, ih: bytes) -> RawPeer:
    peer = RawPeer(node.peer_port, timeout=5)
    assert peer.handshake(ih)
    return peer


REVOCATIONS: dict[str, Callable[[Any, str, str], None]] = {
    "acl": lambda s3, b, k: s3.put_object_acl(Bucket=b, Key=k, ACL="private"),
    "delete": lambda s3, b, k: s3.delete_object(Bucket=b, Key=k),
    "overwrite": lambda s3, b, k: s3.put_object(Bucket=b, Key=k, Body=b"new", ACL="private"),
    "deny-policy": lambda s3, b, k: s3.put_bucket_policy(
        Bucket=b,
        Policy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Deny",
                        "Principal": "*",
                        "Action": "s3:GetObject",
                        "Resource": f"arn:aws:s3:::{b}/*",
                    }
                ],
            }
        ),
    ),
}


@pytest.mark.parametrize("kind", sorted(REVOCATIONS))
def test_a_revocation_on_one_node_stops_every_channel_of_the_other_within_a_second(
    nodes: tuple[LiveServer, LiveServer], kind: str
) -> None:
    a, b = nodes
    bucket, key = f"revoke-{kind}", "k"
    ih, sa3 = _public_object(a, b, bucket, key)
    held = _open_connection(b, ih)
    try:
        REVOCATIONS[kind](sa3, bucket, key)
        took = _until_stopped(b, bucket, key, ih, time.monotonic())
        assert took < 1.0, f"node B served a revoked object for {took:.2f} s"
        assert held.closed_by_peer(timeout=1.0), "B's seeder kept a revoked connection"
    finally:
        held.close()


def test_a_policy_window_that_ends_stops_every_channel_of_both_nodes(
    nodes: tuple[LiveServer, LiveServer],
) -> None:
    """Public through a policy whose aws:CurrentTime window ends: nothing is written when it
    ends, and each node must stop on its own timer."""
    a, b = nodes
    bucket, key = "window", "k"
    sa3 = make_client(a.endpoint)
    sa3.create_bucket(Bucket=bucket)
    sa3.put_object(Bucket=bucket, Key=key, Body=os.urandom(200_000))
    end = int(time.time()) + 4
    until = datetime.fromtimestamp(end, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    policy = json.loads(public_read_policy(bucket))
    policy["Statement"][0]["Condition"] = {"DateLessThan": {"aws:CurrentTime": until}}
    sa3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    ih = info_hash_of(sa3.get_object_torrent(Bucket=bucket, Key=key)["Body"].read())
    for node in (b, a):
        assert all(_served_on(node, bucket, key, ih).values()), _served_on(node, bucket, key, ih)
    held = {node.endpoint: _open_connection(node, ih) for node in (a, b)}
    try:
        assert time.time() < end, "too slow to set up before the window ended"
        time.sleep(max(0.0, end - time.time()))
        ended = time.monotonic()
        for node in (b, a):
            took = _until_stopped(node, bucket, key, ih, ended)
            assert took < 1.0, f"{node.endpoint} served past the window for {took:.2f} s"
            assert held[node.endpoint].closed_by_peer(timeout=1.0)
    finally:
        for peer in held.values():
            with contextlib.suppress(OSError):
                peer.close()


class HangingProxy:
    """A TCP relay to the blob backend that can hang: from then on every byte is dropped in
    both directions, on the connections open now and on new ones, which are accepted and
    held (a backend that stopped answering, not one that refuses)."""

    def __init__(self, target_port: int) -> None:
        import socket
        import threading

        self._socket, self._threading = socket, threading
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.hung = False
        self._held: list[Any] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self._held.append(client)
            if self.hung:
                continue
            upstream = self._socket.create_connection(("127.0.0.1", self.target_port))
            self._held.append(upstream)
            for src, dst in ((client, upstream), (upstream, client)):
                self._threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: Any, dst: Any) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if not self.hung:
                    dst.sendall(data)

    def close(self) -> None:
        self.listener.close()
        for s in self._held:
            with contextlib.suppress(OSError):
                s.close()


def _one_attempt_client(endpoint: str) -> Any:
    """A client that tries once and waits long: the server's own bound is what is measured."""
    import boto3
    from botocore.config import Config

    from tests.conftest import ROOT_AK, ROOT_SK

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ROOT_AK,
        aws_secret_access_key=ROOT_SK,
        region_name="us-east-1",
        config=Config(retries={"total_max_attempts": 1}, read_timeout=400),
    )


@pytest.fixture
def hanging_backend(moto: Engine) -> Iterator[HangingProxy]:
    proxy = HangingProxy(moto.port)
    yield proxy
    proxy.close()


def test_a_blob_backend_that_stops_answering_gets_a_bounded_s3_error(
    tmp_path: Path, pg_url: str, hanging_backend: HangingProxy
) -> None:
    from tests.conftest import free_port

    node = LiveServer(
        data_dir=tmp_path / "n",
        port=free_port(),
        peer_port=free_port(),
        env={
            "S3TORRENT_METADATA_URL": pg_url,
            "S3TORRENT_BLOBS_URL": f"s3://hang-{os.getpid()}-{tmp_path.name[-8:].lower()}/d",
            "S3TORRENT_BLOBS__ENDPOINT_URL": f"http://127.0.0.1:{hanging_backend.port}",
            "S3TORRENT_BLOBS__ACCESS_KEY": "moto",
            "S3TORRENT_BLOBS__SECRET_KEY": "moto",
            "S3TORRENT_BLOBS__CONNECT_TIMEOUT": "1",
            "S3TORRENT_BLOBS__READ_TIMEOUT": "2",
        },
    )
    (tmp_path / "n").mkdir()
    node.start(timeout=60)
    try:
        s3 = make_client(node.endpoint)
        s3.create_bucket(Bucket="hang")
        s3.put_object(Bucket="hang", Key="k", Body=os.urandom(3 * 1024 * 1024))
        hanging_backend.hung = True
        once = _one_attempt_client(node.endpoint)
        for what, call in (
            ("GET", lambda: once.get_object(Bucket="hang", Key="k")),
            ("PUT", lambda: once.put_object(Bucket="hang", Key="p", Body=os.urandom(100_000))),
        ):
            started = time.monotonic()
            with pytest.raises(ClientError) as failed:
                call()
            took = time.monotonic() - started
            # Three attempts of 2 s each and their backoff (up to 2 s, then 4 s); botocore's
            # defaults (60 s a read, tried five times) held the request for five minutes.
            assert took < 25, f"{what}: waited {took:.0f} s for a backend that never answers"
            assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] >= 500
    finally:
        node.stop(timeout=20)
