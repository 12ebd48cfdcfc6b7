"""Scale-out audit: promises that must hold across nodes sharing PostgreSQL, Redis and an S3
blob backend (moto): revocations of every kind made on one node stop every channel of the
other within a second, conditional writes and completions racing on two nodes have one
winner, and an unreachable engine gives a bounded, clear S3 answer."""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import LiveServer, make_client
from tests.scale.engines import Engine
from tests.scale.test_nodes import (  # noqa: F401 (cluster: a fixture)
    Cluster,
    _redis_dbs,
    announce,
    cluster,
    compact_peers,
    info_hash_of,
)
from tests.scale.test_redis_gap import (  # noqa: F401 (proxy: a fixture)
    CuttableProxy,
    _start_b_through,
    proxy,
)
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
    # Node ids of their own: these nodes outlive the module's tests, whose clusters name
    # theirs node-a and node-b (and may share the Redis database).
    c.peer_ports = {"module-a": c.peer_ports["a"], "module-b": c.peer_ports["b"]}
    try:
        yield c.start("module-a"), c.start("module-b")
    finally:
        c.stop()


def _status(url: str, headers: dict[str, str] | None = None, timeout: float = 5) -> int:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            r.read()
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _announce_url(node: LiveServer, ih: bytes, peer: int, port: int) -> str:
    from urllib.parse import quote_from_bytes

    pid = quote_from_bytes(f"-TT0001-{peer:012d}".encode())
    return (
        f"{node.endpoint}/_tracker/announce?info_hash={quote_from_bytes(ih)}"
        f"&peer_id={pid}&port={port}&left=100&compact=1"
    )


def _webseed(node: LiveServer, ih: bytes, key: str) -> int:
    return _status(f"{node.endpoint}/_webseed/{ih.hex()}/{key}", {"Range": "bytes=0-16383"})


def _served_on(
    node: LiveServer, bucket: str, key: str, ih: bytes, *, tracker: bool = True
) -> dict[str, bool]:
    """Which anonymous channels of `node` still serve the object (True: served); without
    `tracker`, the tracker is left out (it answers nothing while Redis is away)."""
    peer = RawPeer(node.peer_port, timeout=3)
    try:
        seeder = peer.handshake(ih)
    finally:
        peer.close()
    return {
        "torrent": _status(f"{node.endpoint}/{bucket}/{key}?torrent") == 200,
        "get": _status(f"{node.endpoint}/{bucket}/{key}") == 200,
        "tracker": tracker and b"failure reason" not in announce(node, ih, 7, 40777),
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
    "public-access-block": lambda s3, b, k: s3.put_public_access_block(
        Bucket=b,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    ),
    # ACLs disabled: they no longer grant anything (the object was public by its ACL).
    "owner-enforced": lambda s3, b, k: s3.put_bucket_ownership_controls(
        Bucket=b, OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    ),
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


def test_a_tag_change_on_one_node_stops_a_tag_conditioned_read_on_the_other(
    nodes: tuple[LiveServer, LiveServer],
) -> None:
    a, b = nodes
    bucket, key = "by-tag", "k"
    sa3 = make_client(a.endpoint)
    sa3.create_bucket(Bucket=bucket)
    sa3.put_object(Bucket=bucket, Key=key, Body=os.urandom(200_000), Tagging="share=yes")
    policy = json.loads(public_read_policy(bucket))
    policy["Statement"][0]["Condition"] = {"StringEquals": {"s3:ExistingObjectTag/share": "yes"}}
    sa3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    ih = info_hash_of(sa3.get_object_torrent(Bucket=bucket, Key=key)["Body"].read())
    assert all(_served_on(b, bucket, key, ih).values()), _served_on(b, bucket, key, ih)
    held = _open_connection(b, ih)
    try:
        sa3.put_object_tagging(
            Bucket=bucket, Key=key, Tagging={"TagSet": [{"Key": "share", "Value": "no"}]}
        )
        took = _until_stopped(b, bucket, key, ih, time.monotonic())
        assert took < 1.0, f"node B served a revoked object for {took:.2f} s"
        assert held.closed_by_peer(timeout=1.0)
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
    hanging = HangingProxy(moto.port)
    yield hanging
    hanging.close()


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
            "S3TORRENT_BLOBS__MAX_ATTEMPTS": "2",
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
            # Two attempts of 2 s each and the backoff between them (up to 2 s); botocore's
            # defaults (60 s a read, tried five times) held the request for five minutes.
            assert took < 15, f"{what}: waited {took:.0f} s for a backend that never answers"
            assert failed.value.response["Error"]["Code"] == "ServiceUnavailable", what
    finally:
        node.stop(timeout=20)


def _race(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run every call at once (one thread each); each outcome is its result or its
    'status Code' error."""
    import threading

    barrier = threading.Barrier(len(calls))
    outcomes: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        try:
            outcomes[i] = calls[i]()
        except ClientError as exc:
            err = exc.response
            outcomes[i] = f"{err['ResponseMetadata']['HTTPStatusCode']} {err['Error']['Code']}"

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    return outcomes


LOST = {"412 PreconditionFailed", "409 ConditionalRequestConflict"}


@pytest.mark.parametrize("versioned", [False, True], ids=["unversioned", "versioned"])
@pytest.mark.parametrize("size", [1_000, 100_000], ids=["inline", "blob"])
def test_if_match_writers_on_two_nodes_have_exactly_one_winner(
    nodes: tuple[LiveServer, LiveServer], size: int, versioned: bool
) -> None:
    clients = [make_client(n.endpoint, max_pool_connections=16) for n in nodes]
    bucket = f"if-match-{size}-{'v' if versioned else 'u'}"
    clients[0].create_bucket(Bucket=bucket)
    if versioned:
        clients[0].put_bucket_versioning(
            Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}
        )
    for round_ in range(3):
        key = f"k{round_}"
        etag = clients[1].put_object(Bucket=bucket, Key=key, Body=b"0" * size)["ETag"]
        bodies = [bytes([65 + i]) * size for i in range(12)]
        outcomes = _race(
            [
                partial(clients[i % 2].put_object, Bucket=bucket, Key=key, Body=body, IfMatch=etag)
                for i, body in enumerate(bodies)
            ]
        )
        winners = [i for i, o in enumerate(outcomes) if isinstance(o, dict)]
        assert len(winners) == 1, outcomes
        assert {o for o in outcomes if not isinstance(o, dict)} <= LOST, outcomes
        for client in clients:
            got = client.get_object(Bucket=bucket, Key=key)
            assert got["Body"].read() == bodies[winners[0]]
            assert got["ETag"] == outcomes[winners[0]]["ETag"]
        if versioned:
            listed = clients[0].list_object_versions(Bucket=bucket, Prefix=key)
            assert len(listed.get("Versions", [])) == 2, listed


def _upload(client: Any, bucket: str, key: str, parts: list[bytes]) -> tuple[str, list[Any]]:
    up = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    done = []
    for n, body in enumerate(parts, start=1):
        r = client.upload_part(Bucket=bucket, Key=key, UploadId=up, PartNumber=n, Body=body)
        done.append({"ETag": r["ETag"], "PartNumber": n})
    return up, done


def test_one_upload_completed_on_two_nodes_at_once_makes_one_object(
    nodes: tuple[LiveServer, LiveServer],
) -> None:
    """Both nodes complete the same upload, with different part lists: one object results,
    holding the parts its completer was answered for, and one version of it."""
    clients = [make_client(n.endpoint) for n in nodes]
    bucket = "complete-race"
    clients[0].create_bucket(Bucket=bucket)
    clients[0].put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    parts = [os.urandom(5 * 1024 * 1024), os.urandom(300_000)]
    for round_ in range(3):
        key = f"k{round_}"
        up, done = _upload(clients[round_ % 2], bucket, key, parts)
        choices = [done[:1], done]
        outcomes = _race(
            [
                partial(
                    client.complete_multipart_upload,
                    Bucket=bucket,
                    Key=key,
                    UploadId=up,
                    MultipartUpload={"Parts": parts_named},
                )
                for client, parts_named in zip(clients, choices, strict=True)
            ]
        )
        won = [i for i, o in enumerate(outcomes) if isinstance(o, dict)]
        assert won, outcomes
        listed = clients[0].list_object_versions(Bucket=bucket, Prefix=key)
        assert len(listed.get("Versions", [])) == 1, (outcomes, listed)
        got = clients[1].get_object(Bucket=bucket, Key=key)
        body = got["Body"].read()
        assert got["ETag"] in [outcomes[i]["ETag"] for i in won], (outcomes, got["ETag"])
        assert body == b"".join(parts[: len(choices[won[0]])]) or body == b"".join(parts)
        losers = [o for i, o in enumerate(outcomes) if i not in won]
        assert all(o == "404 NoSuchUpload" for o in losers), outcomes


def test_create_only_completions_on_two_nodes_have_exactly_one_winner(
    nodes: tuple[LiveServer, LiveServer],
) -> None:
    clients = [make_client(n.endpoint) for n in nodes]
    bucket = "complete-create-only"
    clients[0].create_bucket(Bucket=bucket)
    for round_ in range(3):
        key = f"k{round_}"
        uploads = [_upload(clients[i], bucket, key, [bytes([65 + i]) * 200_000]) for i in (0, 1)]
        outcomes = _race(
            [
                partial(
                    client.complete_multipart_upload,
                    Bucket=bucket,
                    Key=key,
                    UploadId=upload,
                    MultipartUpload={"Parts": done},
                    IfNoneMatch="*",
                )
                for client, (upload, done) in zip(clients, uploads, strict=True)
            ]
        )
        winners = [i for i, o in enumerate(outcomes) if isinstance(o, dict)]
        assert len(winners) == 1, outcomes
        assert {o for o in outcomes if not isinstance(o, dict)} <= LOST, outcomes
        got = clients[1].get_object(Bucket=bucket, Key=key)["Body"].read()
        assert got == bytes([65 + winners[0]]) * 200_000


def _restart(engine: Engine, down_for: float) -> None:
    """Stop the engine's server (PostgreSQL: a fast shutdown, every session cut) and start it
    again on the same data and port after `down_for` seconds."""
    import signal
    import socket
    import subprocess

    args = engine.proc.args
    os.killpg(engine.proc.pid, signal.SIGINT)
    engine.proc.wait(30)
    time.sleep(down_for)
    engine.proc = subprocess.Popen(
        args,
        stdout=subprocess.DEVNULL,
        stderr=open(os.path.join(engine.data_dir, "log"), "ab"),  # noqa: SIM115
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", engine.port)):
            return
        assert time.monotonic() < deadline, "PostgreSQL did not start again"
        time.sleep(0.1)


@pytest.fixture
def own_postgres() -> Iterator[Engine]:
    from tests.scale import engines

    engine = engines.start_postgres()
    yield engine
    engine.stop()


def test_postgresql_restarted_under_load_gives_s3_errors_then_recovers(
    tmp_path: Path, own_postgres: Engine, redis_server: Engine, moto: Engine
) -> None:
    from tests.scale import engines

    pg_url = engines.create_database(own_postgres, "restart")
    c = Cluster(
        tmp_path,
        {
            "S3TORRENT_METADATA_URL": pg_url,
            "S3TORRENT_REDIS_URL": f"redis://127.0.0.1:{redis_server.port}/{next(_redis_dbs) % 16}",
            "S3TORRENT_BLOBS_URL": f"s3://pgr-{os.getpid()}-{tmp_path.name[-8:].lower()}/d",
            "S3TORRENT_BLOBS__ENDPOINT_URL": moto.url,
            "S3TORRENT_BLOBS__ACCESS_KEY": "moto",
            "S3TORRENT_BLOBS__SECRET_KEY": "moto",
            "S3TORRENT_METERING__FLUSH_INTERVAL": "0.2",
        },
    )
    import threading

    try:
        a, b = c.start("a"), c.start("b")
        make_client(a.endpoint).create_bucket(Bucket="load")
        acknowledged: dict[str, bytes] = {}
        failures: list[str] = []
        slow: list[float] = []
        stop = threading.Event()

        def load(node: LiveServer, tag: str) -> None:
            client = _one_attempt_client(node.endpoint)
            n = 0
            while not stop.is_set():
                n += 1
                key, body = f"{tag}/{n}", os.urandom(1_000 if n % 2 else 60_000)
                started = time.monotonic()
                try:
                    client.put_object(Bucket="load", Key=key, Body=body)
                    acknowledged[key] = body
                    client.get_object(Bucket="load", Key=key)["Body"].read()
                except ClientError as exc:
                    err = exc.response
                    failures.append(
                        f"{err['ResponseMetadata']['HTTPStatusCode']} {err['Error']['Code']}"
                    )
                except Exception as exc:  # a reset, a timeout: no S3 answer at all
                    failures.append(f"no answer: {exc!r}")
                slow.append(time.monotonic() - started)

        threads = [
            threading.Thread(target=load, args=(node, f"{name}{i}"))
            for name, node in (("a", a), ("b", b))
            for i in range(2)
        ]
        for t in threads:
            t.start()
        time.sleep(1.0)
        _restart(own_postgres, down_for=1.5)
        back = time.monotonic()
        time.sleep(3.0)
        stop.set()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads)
        assert a.proc is not None and a.proc.poll() is None
        assert b.proc is not None and b.proc.poll() is None
        assert failures, "the restart went unnoticed: nothing tested"
        # S3 errors only: until 2026-12-07 a PUT refused this way before 100 Continue left
        # its connection open, and boto3's next request on it got aiohttp's 400 (a "500 500").
        # And mostly S3's "try again" (until 2026-12-07 a 500 InternalError and a traceback
        # each); a rare 500 remains, of a failure not yet identified (seen once in ten runs).
        assert set(failures) <= {"503 ServiceUnavailable", "500 InternalError"}, failures
        assert failures.count("503 ServiceUnavailable") > len(failures) / 2, failures
        assert max(slow) < 10
        # Recovered: both nodes serve, read and write, within a few seconds of the restart.
        for node in (a, b):
            client = make_client(node.endpoint)
            deadline = back + 10
            while True:
                try:
                    client.put_object(Bucket="load", Key="after", Body=b"ok")
                    break
                except ClientError:
                    assert time.monotonic() < deadline, "no recovery"
                    time.sleep(0.2)
            for key, body in acknowledged.items():
                assert client.get_object(Bucket="load", Key=key)["Body"].read() == body, key
    finally:
        c.stop()


def _answer_then_next(endpoint: str, head: bytes, following: bytes, wait: float = 3.0) -> bytes:
    """Send a request's head alone, read its answer, then send `following` (the client's
    next request) on the same connection; everything the server sends back until it closes
    or `wait` seconds pass."""
    import socket
    from urllib.parse import urlsplit

    where = urlsplit(endpoint)
    with socket.create_connection((where.hostname, where.port), timeout=wait) as sock:
        sock.sendall(head)
        got = sock.recv(65536)
        with contextlib.suppress(OSError):
            sock.sendall(following)
        deadline = time.monotonic() + wait
        with contextlib.suppress(OSError):
            while time.monotonic() < deadline and (chunk := sock.recv(65536)):
                got += chunk
    return got


def test_a_put_failing_before_100_continue_on_a_database_error_closes_its_connection(
    tmp_path: Path, own_postgres: Engine
) -> None:
    """PostgreSQL down: a PUT with `Expect: 100-continue` fails before its body is asked for.
    Its body may follow anyway (botocore sends it when its one-second wait for 100 Continue
    runs out), so the server must close the connection after the answer, never read the body
    as the next request (seen under load: boto3 got aiohttp's 400 for its own body)."""
    from tests.conftest import free_port, sign_request
    from tests.scale import engines

    pg_url = engines.create_database(own_postgres, "expect")
    (tmp_path / "n").mkdir()
    node = LiveServer(
        data_dir=tmp_path / "n",
        port=free_port(),
        peer_port=free_port(),
        env={"S3TORRENT_METADATA_URL": pg_url},
    )
    node.start(timeout=60)
    try:
        make_client(node.endpoint).create_bucket(Bucket="expect")
        make_client(node.endpoint).create_bucket(Bucket="uncached")
        os.killpg(own_postgres.proc.pid, __import__("signal").SIGINT)
        own_postgres.proc.wait(30)
        # A final answer instead of 100 Continue: the client sends no body (RFC 9110 10.1.1)
        # and may send its next request on the connection. Taken for the body still owed, its
        # first bytes vanish and the rest is read as a request of its own.
        body = b"x" * 40
        url = f"{node.endpoint}/uncached/k"
        headers = sign_request("PUT", url, {"Expect": "100-continue"}, body=body)
        headers["Content-Length"] = str(len(body))
        head = f"PUT /uncached/k HTTP/1.1\r\nHost: 127.0.0.1:{node.port}\r\n".encode()
        head += b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items()) + b"\r\n"
        following = b"GET /expect/next HTTP/1.1\r\nHost: x\r\n\r\n" * 2
        got = _answer_then_next(node.endpoint, head, following)
        statuses = re.findall(rb"HTTP/1\.[01] (\d{3})", got)
        assert statuses[:1] == [b"503"], got[:500]
        # Nothing after it: the connection was closed, the next request left unread.
        assert statuses == [b"503"], got
    finally:
        node.stop(timeout=20)


@pytest.mark.parametrize("revocation", ["object-acl", "bucket-policy"])
def test_a_node_cut_off_from_redis_stops_what_another_node_revokes_meanwhile(
    cluster: tuple[Cluster, str],  # noqa: F811
    proxy: CuttableProxy,  # noqa: F811
    revocation: str,
) -> None:
    """B's connection to Redis is down: A's revocation event never reaches B. B must not go
    on serving the revoked object, by any channel, until Redis is back."""
    c, _ = cluster
    a = c.start("a")
    b = _start_b_through(c, proxy)
    sa3 = make_client(a.endpoint)
    sa3.create_bucket(Bucket="cut")
    acl = "public-read" if revocation == "object-acl" else "private"
    sa3.put_object(Bucket="cut", Key="k", Body=os.urandom(100_000), ACL=acl)
    if revocation == "bucket-policy":
        sa3.put_bucket_policy(Bucket="cut", Policy=public_read_policy("cut"))
    ih = info_hash_of(sa3.get_object_torrent(Bucket="cut", Key="k")["Body"].read())
    deadline = time.monotonic() + 5
    while not all(served := _served_on(b, "cut", "k", ih).values()):
        assert time.monotonic() < deadline, served
        time.sleep(0.1)
    proxy.cut()
    time.sleep(1.0)  # B knows it is cut off
    if revocation == "object-acl":
        sa3.put_object_acl(Bucket="cut", Key="k", ACL="private")
    else:
        sa3.delete_bucket_policy(Bucket="cut")
    changed = time.monotonic()
    while any(served := _served_on(b, "cut", "k", ih, tracker=False).values()):
        assert time.monotonic() - changed < 3.0, f"B serves a revoked object: {served}"
        time.sleep(0.1)


def test_usage_reports_add_up_the_requests_of_every_node(
    nodes: tuple[LiveServer, LiveServer],
) -> None:
    from tests.api.test_metering import admin_totals, eventually

    a, b = nodes
    bucket = "metered-nodes"
    sa3, sb3 = make_client(a.endpoint), make_client(b.endpoint)
    sa3.create_bucket(Bucket=bucket)
    bodies = {"via-a": os.urandom(100_000), "via-b": os.urandom(50_000)}
    sa3.put_object(Bucket=bucket, Key="via-a", Body=bodies["via-a"], ACL="public-read")
    sb3.put_object(Bucket=bucket, Key="via-b", Body=bodies["via-b"], ACL="public-read")
    out = 0
    for client in (sa3, sb3):
        for key in bodies:
            out += len(client.get_object(Bucket=bucket, Key=key)["Body"].read())
        out += len(
            client.get_object(Bucket=bucket, Key="via-a", Range="bytes=0-999")["Body"].read()
        )
    sb3.head_object(Bucket=bucket, Key="via-a")
    ih = info_hash_of(sb3.get_object_torrent(Bucket=bucket, Key="via-b")["Body"].read())
    assert _status(f"{a.endpoint}/_webseed/{ih.hex()}/via-b", {"Range": "bytes=0-16383"}) in (
        200,
        206,
    )
    assert out == 2 * (150_000 + 1_000)

    def totals(node: LiveServer) -> dict[tuple[str, str], float]:
        got = admin_totals(node, bucket)
        # What this test counts; the torrent file's own bytes vary with the node's URL.
        return {k: v for k, v in got.items() if k[0] != "GetObjectTorrent"}

    expected = {
        ("CreateBucket", "Requests-Tier1"): 1,
        ("PutObject", "Requests-Tier1"): 2,
        ("PutObject", "DataTransfer-In-Bytes"): 150_000,
        ("GetObject", "Requests-Tier2"): 6,
        ("GetObject", "DataTransfer-Out-Bytes"): out,
        ("HeadObject", "Requests-Tier2"): 1,
        ("GetObject-WebSeed", "Requests-Tier2"): 1,
        ("GetObject-WebSeed", "DataTransfer-Out-Bytes"): 16_384,
    }
    assert eventually(lambda: totals(a), expected) == expected
    assert totals(b) == expected


def test_versions_and_object_locks_hold_across_nodes(nodes: tuple[LiveServer, LiveServer]) -> None:
    from datetime import timedelta

    a, b = nodes
    sa3, sb3 = make_client(a.endpoint), make_client(b.endpoint)
    bucket = "locked-nodes"
    sa3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    v1 = sa3.put_object(Bucket=bucket, Key="k", Body=b"one")["VersionId"]
    v2 = sb3.put_object(Bucket=bucket, Key="k", Body=b"two")["VersionId"]
    listed = sa3.list_object_versions(Bucket=bucket)["Versions"]
    assert [(v["VersionId"], v["IsLatest"]) for v in listed] == [(v2, True), (v1, False)]
    until = datetime.now(UTC) + timedelta(days=1)
    sa3.put_object_retention(
        Bucket=bucket,
        Key="k",
        VersionId=v1,
        Retention={"Mode": "COMPLIANCE", "RetainUntilDate": until},
    )
    sb3.put_object_legal_hold(Bucket=bucket, Key="k", VersionId=v2, LegalHold={"Status": "ON"})
    for client, version in ((sb3, v1), (sa3, v2)):
        with pytest.raises(ClientError) as refused:
            client.delete_object(Bucket=bucket, Key="k", VersionId=version)
        assert refused.value.response["Error"]["Code"] == "AccessDenied"
    with pytest.raises(ClientError) as shortened:
        sb3.put_object_retention(
            Bucket=bucket,
            Key="k",
            VersionId=v1,
            Retention={"Mode": "COMPLIANCE", "RetainUntilDate": until - timedelta(hours=1)},
        )
    assert shortened.value.response["Error"]["Code"] == "AccessDenied"
    # A delete marker on B hides the key on A; its versions stay.
    sb3.delete_object(Bucket=bucket, Key="k")
    with pytest.raises(ClientError):
        sa3.head_object(Bucket=bucket, Key="k")
    assert sa3.get_object(Bucket=bucket, Key="k", VersionId=v1)["Body"].read() == b"one"
    sa3.put_object_legal_hold(Bucket=bucket, Key="k", VersionId=v2, LegalHold={"Status": "OFF"})
    sb3.delete_object(Bucket=bucket, Key="k", VersionId=v2)
    remaining = [v["VersionId"] for v in sb3.list_object_versions(Bucket=bucket)["Versions"]]
    assert remaining == [v1]


def test_an_upload_whose_node_was_killed_mid_part_is_finished_on_the_other(
    tmp_path: Path, pg_url: str, redis_server: Engine, moto: Engine
) -> None:
    """kill -9 of A while a part streams to it: no object appears, the parts A acknowledged
    stay, the part in flight is not one, and B completes the upload with a part of its own."""

    c = Cluster(
        tmp_path,
        {
            "S3TORRENT_METADATA_URL": pg_url,
            "S3TORRENT_REDIS_URL": f"redis://127.0.0.1:{redis_server.port}/{next(_redis_dbs) % 16}",
            "S3TORRENT_BLOBS_URL": f"s3://kill-{os.getpid()}-{tmp_path.name[-8:].lower()}/d",
            "S3TORRENT_BLOBS__ENDPOINT_URL": moto.url,
            "S3TORRENT_BLOBS__ACCESS_KEY": "moto",
            "S3TORRENT_BLOBS__SECRET_KEY": "moto",
        },
    )
    try:
        a, b = c.start("a"), c.start("b")
        sa3, sb3 = make_client(a.endpoint), make_client(b.endpoint)
        sa3.create_bucket(Bucket="killed")
        first = os.urandom(5 * 1024 * 1024)
        up = sa3.create_multipart_upload(Bucket="killed", Key="k")["UploadId"]
        e1 = sa3.upload_part(Bucket="killed", Key="k", UploadId=up, PartNumber=1, Body=first)
        import http.client

        from tests.conftest import sign_request

        # A raw, slowly streamed part 2 (boto3 would buffer the body first).
        conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=10)
        url = f"{a.endpoint}/killed/k?partNumber=2&uploadId={up}"
        headers = sign_request("PUT", url, payload_hash="UNSIGNED-PAYLOAD")
        headers["Content-Length"] = str(64 * 256 * 1024)
        conn.putrequest("PUT", f"/killed/k?partNumber=2&uploadId={up}", skip_host=True)
        conn.putheader("Host", f"127.0.0.1:{a.port}")
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        for _ in range(8):
            conn.send(os.urandom(256 * 1024))
        time.sleep(0.3)
        a.kill9()
        conn.close()
        # Nothing visible; part 1 only.
        assert sb3.list_objects_v2(Bucket="killed")["KeyCount"] == 0
        parts = sb3.list_parts(Bucket="killed", Key="k", UploadId=up)["Parts"]
        assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in parts] == [
            (1, e1["ETag"], len(first))
        ]
        last = os.urandom(1000)
        e2 = sb3.upload_part(Bucket="killed", Key="k", UploadId=up, PartNumber=2, Body=last)
        sb3.complete_multipart_upload(
            Bucket="killed",
            Key="k",
            UploadId=up,
            MultipartUpload={
                "Parts": [
                    {"PartNumber": 1, "ETag": e1["ETag"]},
                    {"PartNumber": 2, "ETag": e2["ETag"]},
                ]
            },
        )
        assert sb3.get_object(Bucket="killed", Key="k")["Body"].read() == first + last
    finally:
        c.stop()


def test_only_an_engine_out_of_reach_is_service_unavailable() -> None:
    import sqlite3

    import psycopg
    import sqlalchemy as sa
    from botocore.exceptions import EndpointConnectionError, ReadTimeoutError

    from s3torrent.store.errors import engine_unreachable

    assert engine_unreachable(sa.exc.OperationalError("SELECT", {}, psycopg.OperationalError()))
    assert engine_unreachable(EndpointConnectionError(endpoint_url="http://x"))
    assert engine_unreachable(ReadTimeoutError(endpoint_url="http://x"))
    # A bug or a refusal is not the service being away.
    assert not engine_unreachable(sa.exc.OperationalError("SELECT", {}, sqlite3.OperationalError()))
    assert not engine_unreachable(sa.exc.ProgrammingError("SELECT", {}, psycopg.ProgrammingError()))
    assert not engine_unreachable(ClientError({"Error": {"Code": "NoSuchKey"}}, "GetObject"))
    assert not engine_unreachable(ValueError("bad"))


def test_the_tracker_bounds_hold_across_nodes(
    cluster: tuple[Cluster, str],  # noqa: F811
) -> None:
    """One swarm across nodes, and one set of bounds: a peer cap of 4 holds whichever node
    each peer announced to, and one address's burst of 10 announces is spent on both."""
    c, _ = cluster
    c.env["S3TORRENT_TRACKER__MAX_PEERS_PER_TORRENT"] = "4"
    c.env["S3TORRENT_TRACKER__ANNOUNCE_RATE_PER_IP"] = "0.01"
    c.env["S3TORRENT_TRACKER__ANNOUNCE_RATE_BURST"] = "10"
    a, b = c.start("a"), c.start("b")
    sa3 = make_client(a.endpoint)
    sa3.create_bucket(Bucket="bounds")
    sa3.put_object(Bucket="bounds", Key="k", Body=os.urandom(100_000), ACL="public-read")
    ih = info_hash_of(sa3.get_object_torrent(Bucket="bounds", Key="k")["Body"].read())
    answers = [announce((a, b)[i % 2], ih, i, 41000 + i) for i in range(14)]
    refused = [i for i, r in enumerate(answers) if b"failure reason" in r]
    assert len(refused) == 4 and refused == list(range(10, 14)), answers
    peers = compact_peers(answers[9][b"peers"])
    ours = {("127.0.0.1", 41000 + i) for i in range(14)}
    # The swarm holds at most 4 of the 10 announced (the cap), whoever took them.
    assert 0 < len(peers & ours) <= 4, peers


def test_a_node_whose_redis_went_silent_answers_within_bounds(
    cluster: tuple[Cluster, str],  # noqa: F811
    proxy: CuttableProxy,  # noqa: F811
) -> None:
    """Redis gone without a word (every byte dropped, connections left open): B's tracker,
    web seed, GET and PUT must each answer within a few seconds, never wait for good."""
    import urllib.request

    c, _ = cluster
    a = c.start("a")
    b = _start_b_through(c, proxy)
    sa3 = make_client(a.endpoint)
    sa3.create_bucket(Bucket="silent")
    sa3.put_object(Bucket="silent", Key="k", Body=os.urandom(100_000), ACL="public-read")
    ih = info_hash_of(sa3.get_object_torrent(Bucket="silent", Key="k")["Body"].read())
    assert b"failure reason" not in announce(b, ih, 1, 42001)
    proxy.freeze()
    timings = {}
    for what, call in (
        ("announce", lambda: _status(_announce_url(b, ih, 2, 42002), timeout=40)),
        ("webseed", lambda: _webseed(b, ih, "k")),
        ("get", lambda: _status(f"{b.endpoint}/silent/k")),
        ("put", lambda: make_client(b.endpoint).put_object(Bucket="silent", Key="p", Body=b"x")),
    ):
        started = time.monotonic()
        try:
            outcome: object = call()
        except (TimeoutError, urllib.error.URLError, ClientError, OSError) as exc:
            outcome = exc
        timings[what] = (round(time.monotonic() - started, 1), str(outcome)[:80])
    assert all(t < 10 for t, _ in timings.values()), timings


def _later(delay: float, call: Callable[..., Any], bucket: str, key: str, upload: str) -> Any:
    time.sleep(delay)
    return call(Bucket=bucket, Key=key, UploadId=upload)


def test_a_completion_racing_an_abort_on_the_other_node_is_all_or_nothing(
    nodes: tuple[LiveServer, LiveServer],
) -> None:
    a, b = nodes
    sa3, sb3 = make_client(a.endpoint), make_client(b.endpoint)
    bucket = "complete-abort"
    sa3.create_bucket(Bucket=bucket)
    parts = [os.urandom(5 * 1024 * 1024), os.urandom(1000)]
    outcomes_seen = set()
    for round_ in range(6):
        key = f"k{round_}"
        up, done = _upload(sa3, bucket, key, parts)
        complete, _ = _race(
            [
                partial(
                    sa3.complete_multipart_upload,
                    Bucket=bucket,
                    Key=key,
                    UploadId=up,
                    MultipartUpload={"Parts": done},
                ),
                partial(_later, 0.04 * round_, sb3.abort_multipart_upload, bucket, key, up),
            ]
        )
        if isinstance(complete, dict):
            outcomes_seen.add("completed")
            got = sb3.get_object(Bucket=bucket, Key=key)
            assert got["Body"].read() == b"".join(parts), round_
            assert got["ETag"] == complete["ETag"]
        else:
            outcomes_seen.add(complete)
            assert complete == "404 NoSuchUpload", complete
            with pytest.raises(ClientError) as missing:
                sb3.head_object(Bucket=bucket, Key=key)
            assert missing.value.response["Error"]["Code"] == "404"


@pytest.mark.parametrize("change", ["new-version", "delete-marker", "version-deleted"])
def test_a_versioned_change_on_one_node_stops_the_old_versions_torrent_on_the_other(
    nodes: tuple[LiveServer, LiveServer], change: str
) -> None:
    a, b = nodes
    bucket, key = f"versioned-{change}", "k"
    sa3 = make_client(a.endpoint)
    sa3.create_bucket(Bucket=bucket)
    sa3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    old = sa3.put_object(Bucket=bucket, Key=key, Body=os.urandom(200_000), ACL="public-read")
    ih = info_hash_of(sa3.get_object_torrent(Bucket=bucket, Key=key)["Body"].read())
    assert all(_served_on(b, bucket, key, ih).values()), _served_on(b, bucket, key, ih)
    held = _open_connection(b, ih)
    try:
        if change == "new-version":
            sa3.put_object(Bucket=bucket, Key=key, Body=os.urandom(1000), ACL="public-read")
        elif change == "delete-marker":
            sa3.delete_object(Bucket=bucket, Key=key)
        else:
            sa3.delete_object(Bucket=bucket, Key=key, VersionId=old["VersionId"])
        changed = time.monotonic()
        channels = {"tracker": True, "webseed": True, "seeder": True}
        while True:
            served = _served_on(b, bucket, key, ih)
            if not any(served[c] for c in channels):
                break
            assert time.monotonic() - changed < 1.0, f"B serves the old version: {served}"
            time.sleep(0.05)
        assert held.closed_by_peer(timeout=1.0)
    finally:
        held.close()


def test_an_anonymous_get_streaming_from_a_node_cut_off_from_redis_stops_when_revoked(
    cluster: tuple[Cluster, str],  # noqa: F811
    proxy: CuttableProxy,  # noqa: F811
) -> None:
    import threading

    c, _ = cluster
    a = c.start("a")
    b = _start_b_through(c, proxy)
    sa3 = make_client(a.endpoint)
    sa3.create_bucket(Bucket="cut-get")
    size = 24 * 1024 * 1024
    sa3.put_object(Bucket="cut-get", Key="big", Body=os.urandom(size), ACL="public-read")
    got, ended = [0], [0.0]

    def reader() -> None:
        url = f"{b.endpoint}/cut-get/big"
        with contextlib.suppress(Exception), urllib.request.urlopen(url, timeout=30) as r:
            while chunk := r.read(64 * 1024):
                got[0] += len(chunk)
                time.sleep(0.03)  # a slow client: about 2 MB/s
        ended[0] = time.monotonic()

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while not got[0]:
        assert time.monotonic() < deadline, "the GET never started"
        time.sleep(0.05)
    proxy.cut()
    time.sleep(1.0)
    sa3.put_object_acl(Bucket="cut-get", Key="big", ACL="private")
    changed = time.monotonic()
    thread.join(10)
    assert ended[0], "the reader never ended"
    assert got[0] < size and ended[0] - changed < 3.0, (got[0], ended[0] - changed)


def test_a_completion_racing_a_part_uploaded_again_on_the_other_node_joins_the_named_parts(
    nodes: tuple[LiveServer, LiveServer],
) -> None:
    """The completion names part 1 by its ETag; B uploads part 1 again meanwhile. Either the
    object holds the part that ETag names, or the completion fails (InvalidPart): never the
    other bytes under the named ETag."""
    a, b = nodes
    sa3, sb3 = make_client(a.endpoint), make_client(b.endpoint)
    bucket = "complete-reupload"
    sa3.create_bucket(Bucket=bucket)
    parts = [os.urandom(5 * 1024 * 1024), os.urandom(1000)]
    seen = set()
    for round_ in range(5):
        key = f"k{round_}"
        up, done = _upload(sa3, bucket, key, parts)
        other = os.urandom(5 * 1024 * 1024)
        complete, again = _race(
            [
                partial(
                    sa3.complete_multipart_upload,
                    Bucket=bucket,
                    Key=key,
                    UploadId=up,
                    MultipartUpload={"Parts": done},
                ),
                partial(
                    sb3.upload_part, Bucket=bucket, Key=key, UploadId=up, PartNumber=1, Body=other
                ),
            ]
        )
        if isinstance(complete, dict):
            seen.add("completed")
            assert sb3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"".join(parts)
        else:
            seen.add(complete)
            assert complete == "400 InvalidPart", complete
            assert isinstance(again, dict), again
    assert seen


def test_a_revocation_made_on_a_node_cut_off_from_redis_stops_the_other_node(
    cluster: tuple[Cluster, str],  # noqa: F811
    proxy: CuttableProxy,  # noqa: F811
) -> None:
    """The mirror case: B is cut off and the revocation is made through B. Its commit is in
    the database, its event cannot leave B, and A's own subscription never broke: A must
    still stop serving the object, not go on until B is back on Redis."""
    c, _ = cluster
    a = c.start("a")
    b = _start_b_through(c, proxy)
    sa3, sb3 = make_client(a.endpoint), make_client(b.endpoint)
    sa3.create_bucket(Bucket="mirror")
    sa3.put_object(Bucket="mirror", Key="k", Body=os.urandom(100_000), ACL="public-read")
    ih = info_hash_of(sa3.get_object_torrent(Bucket="mirror", Key="k")["Body"].read())
    deadline = time.monotonic() + 5
    while not all(served := _served_on(a, "mirror", "k", ih).values()):
        assert time.monotonic() < deadline, served
        time.sleep(0.1)
    proxy.cut()
    time.sleep(1.0)
    sb3.put_object_acl(Bucket="mirror", Key="k", ACL="private")
    changed = time.monotonic()
    while any(served := _served_on(a, "mirror", "k", ih).values()):
        assert time.monotonic() - changed < 6.0, f"A serves what B revoked: {served}"
        time.sleep(0.1)


def test_a_node_that_falls_silent_is_decided_around_one_that_said_goodbye_is_not(
    redis_server: Engine,
) -> None:
    from s3torrent.events import EventBus
    from s3torrent.events_redis import RedisEventRelay

    async def run() -> tuple[int, int]:
        url = f"redis://127.0.0.1:{redis_server.port}/{next(_redis_dbs) % 16}"
        gaps: list[float] = []
        watcher = RedisEventRelay.from_url(
            EventBus(), url, node_id="watcher", on_gap=lambda: gaps.append(0)
        )
        leaving = RedisEventRelay.from_url(EventBus(), url, node_id="leaving")
        for relay in (watcher, leaving):
            await relay.start(5)
        await asyncio.sleep(1.5)
        await leaving.close()
        await asyncio.sleep(4.0)
        after_goodbye = len(gaps)
        lost = RedisEventRelay.from_url(EventBus(), url, node_id="lost")
        await lost.start(5)
        await asyncio.sleep(1.5)
        for task in lost._tasks:  # gone without a word: no beat, no goodbye
            task.cancel()
        await asyncio.sleep(5.0)
        await lost.client.aclose()
        await watcher.close()
        return after_goodbye, len(gaps) - after_goodbye

    import asyncio

    after_goodbye, after_silence = asyncio.run(run())
    assert after_goodbye == 0
    assert after_silence >= 1
