"""Every BitTorrent channel asks the one access decision with the request's own context.

The tracker decides per announce with the peer's address and the current time, the seeder per
connection, and `?torrent` as `s3:GetObjectTorrent`: an expiring policy, a source-address Deny
and an explicit Deny of GetObjectTorrent apply on every channel, not only to REST GETs.
"""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote_from_bytes

import pytest
from fastbencode import bdecode

from tests.conftest import LiveServer, make_client, start_server
from tests.seeding import RawPeer, fetch_torrent, info_hash_v1


@pytest.fixture(scope="module")
def ctx_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = start_server(
        tmp_path_factory.mktemp("ctx"),
        env={
            "S3TORRENT_TRACKER__ANNOUNCE_RATE_PER_IP": "100000",
            "S3TORRENT_TRACKER__ANNOUNCE_RATE_BURST": "100000",
        },
    )
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def cs3(ctx_server: LiveServer) -> Any:
    return make_client(ctx_server.endpoint)


@pytest.fixture
def cbucket(cs3: Any) -> str:
    name = f"ctx-{os.getpid()}-{time.monotonic_ns() % 10**9}"
    cs3.create_bucket(Bucket=name)
    return name


def http_get(url: str, source: str = "127.0.0.1") -> tuple[int, bytes]:
    """A GET from a chosen loopback source address."""
    host_port = url.split("/")[2]
    host, port = host_port.split(":")
    path = "/" + url.split("/", 3)[3]
    with socket.create_connection((host, int(port)), timeout=10, source_address=(source, 0)) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host_port}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def announce(srv: LiveServer, info_hash: bytes, source: str = "127.0.0.1") -> dict[bytes, Any]:
    url = (
        f"{srv.endpoint}/_tracker/announce?info_hash={quote_from_bytes(info_hash)}"
        f"&peer_id={quote_from_bytes(os.urandom(20))}&port=51413&uploaded=0&downloaded=0"
        f"&left=100&compact=1"
    )
    status, body = http_get(url, source)
    assert status == 200, body
    result: dict[bytes, Any] = bdecode(body)
    return result


def anonymous_get(srv: LiveServer, bucket: str, key: str, query: str = "") -> int:
    try:
        with urllib.request.urlopen(f"{srv.endpoint}/{bucket}/{key}{query}", timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def public_read_policy(bucket: str, **statement_extra: Any) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "PublicRead",
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{bucket}/*",
                **statement_extra,
            }
        ],
    }


def put_object(cs3: Any, bucket: str, key: str, size: int = 200_000) -> bytes:
    cs3.put_object(Bucket=bucket, Key=key, Body=os.urandom(size))
    return key.encode()


def test_expiring_policy_revokes_tracker_and_seeder_within_a_second(
    ctx_server: LiveServer, cs3: Any, cbucket: str
) -> None:
    put_object(cs3, cbucket, "soon-private.bin")
    # Whole seconds: aws:CurrentTime compares seconds.
    until = (datetime.now(UTC) + timedelta(seconds=4)).replace(microsecond=0)
    policy = public_read_policy(
        cbucket,
        Condition={"DateLessThan": {"aws:CurrentTime": until.strftime("%Y-%m-%dT%H:%M:%SZ")}},
    )
    cs3.put_bucket_policy(Bucket=cbucket, Policy=json.dumps(policy))
    torrent = fetch_torrent(ctx_server.endpoint, cbucket, "soon-private.bin")
    ih = info_hash_v1(torrent)
    assert b"failure reason" not in announce(ctx_server, ih)
    peer = RawPeer(ctx_server.peer_port)
    try:
        assert peer.handshake(ih)
        # Until the instant passes, the torrent stays announced and seeded...
        assert not peer.closed_by_peer(timeout=max(0.1, until.timestamp() - time.time() - 1))
        # ...and within a second after it, every channel refuses.
        assert peer.closed_by_peer(timeout=(until.timestamp() + 1.0) - time.time())
    finally:
        peer.close()
    assert announce(ctx_server, ih).get(b"failure reason") == b"unregistered torrent"
    assert anonymous_get(ctx_server, cbucket, "soon-private.bin") == 403
    assert anonymous_get(ctx_server, cbucket, "soon-private.bin", "?torrent") == 403
    late = RawPeer(ctx_server.peer_port)
    try:
        assert not late.handshake(ih)
    finally:
        late.close()


@pytest.mark.parametrize(
    "condition",
    [
        # Epoch seconds as a policy generator writes them: a JSON number with a fraction.
        lambda until: {"NumericLessThan": {"aws:EpochTime": until.timestamp() + 0.5}},
        lambda until: {"NumericLessThan": {"aws:EpochTime": f"{until.timestamp() + 0.5:.1f}"}},
        # A date with a fraction of a second: the decision still changes on a whole second.
        lambda until: {
            "DateLessThan": {"aws:CurrentTime": until.strftime("%Y-%m-%dT%H:%M:%S.900Z")}
        },
    ],
    ids=["epoch-number-with-fraction", "epoch-string-with-fraction", "date-with-fraction"],
)
def test_an_expiry_written_with_a_fraction_revokes_every_channel_on_time(
    ctx_server: LiveServer, cs3: Any, cbucket: str, condition: Any
) -> None:
    """Every form of time condition the policy parser accepts has its instant found: until
    2026-12-07 an epoch written with a fraction (a numeric operator takes it) had none, so the
    tracker and the seeder went on after REST stopped, until the next event; and a date with
    a fraction was found up to a second late."""
    put_object(cs3, cbucket, "soon-private.bin")
    until = (datetime.now(UTC) + timedelta(seconds=4)).replace(microsecond=0)
    # REST refuses from the first whole second the condition fails.
    ends = until + timedelta(seconds=1)
    policy = public_read_policy(cbucket, Condition=condition(until))
    cs3.put_bucket_policy(Bucket=cbucket, Policy=json.dumps(policy))
    torrent = fetch_torrent(ctx_server.endpoint, cbucket, "soon-private.bin")
    ih = info_hash_v1(torrent)
    assert b"failure reason" not in announce(ctx_server, ih)
    peer = RawPeer(ctx_server.peer_port)
    try:
        assert peer.handshake(ih)
        assert not peer.closed_by_peer(timeout=max(0.1, ends.timestamp() - time.time() - 0.5))
        assert anonymous_get(ctx_server, cbucket, "soon-private.bin") == 200
        # Within a second of REST's refusal, the seeder closes and the tracker refuses.
        assert peer.closed_by_peer(timeout=(ends.timestamp() + 1.0) - time.time())
    finally:
        peer.close()
    assert anonymous_get(ctx_server, cbucket, "soon-private.bin") == 403
    assert announce(ctx_server, ih).get(b"failure reason") == b"unregistered torrent"


def test_a_time_matched_as_text_revokes_every_channel_on_time(
    ctx_server: LiveServer, cs3: Any, cbucket: str
) -> None:
    """A time key matched by a wildcard changes its answer at a second no date names:
    until 2026-12-07 such a policy had no time boundary, so the tracker and the seeder
    went on after REST stopped, until the next write."""
    put_object(cs3, cbucket, "ten-seconds.bin")
    # A pattern that holds for the rest of the current ten seconds, with at least 4 left.
    while (ends := int(time.time()) // 10 * 10 + 10) - time.time() < 4:
        time.sleep(ends - time.time() + 0.05)
    window = datetime.fromtimestamp(ends - 10, UTC).strftime("%Y-%m-%dT%H:%M:%S")[:-1] + "?Z"
    policy = public_read_policy(cbucket, Condition={"StringLike": {"aws:CurrentTime": window}})
    cs3.put_bucket_policy(Bucket=cbucket, Policy=json.dumps(policy))
    torrent = fetch_torrent(ctx_server.endpoint, cbucket, "ten-seconds.bin")
    ih = info_hash_v1(torrent)
    assert b"failure reason" not in announce(ctx_server, ih)
    peer = RawPeer(ctx_server.peer_port)
    try:
        assert peer.handshake(ih)
        assert not peer.closed_by_peer(timeout=max(0.1, ends - time.time() - 0.5))
        assert anonymous_get(ctx_server, cbucket, "ten-seconds.bin") == 200
        assert peer.closed_by_peer(timeout=(ends + 1.0) - time.time())
    finally:
        peer.close()
    assert anonymous_get(ctx_server, cbucket, "ten-seconds.bin") == 403
    assert announce(ctx_server, ih).get(b"failure reason") == b"unregistered torrent"


def test_source_ip_deny_applies_to_announces_and_peer_connections(
    ctx_server: LiveServer, cs3: Any, cbucket: str
) -> None:
    put_object(cs3, cbucket, "not-for-two.bin")
    policy = public_read_policy(cbucket)
    policy["Statement"].append(
        {
            "Sid": "NotFromTwo",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:GetObject",
            "Resource": f"arn:aws:s3:::{cbucket}/*",
            "Condition": {"IpAddress": {"aws:SourceIp": "127.0.0.2/32"}},
        }
    )
    cs3.put_bucket_policy(Bucket=cbucket, Policy=json.dumps(policy))
    ih = info_hash_v1(fetch_torrent(ctx_server.endpoint, cbucket, "not-for-two.bin"))
    # REST already refused 127.0.0.2; so do the tracker and the seeder now.
    assert http_get(f"{ctx_server.endpoint}/{cbucket}/not-for-two.bin", "127.0.0.2")[0] == 403
    assert b"failure reason" not in announce(ctx_server, ih, "127.0.0.1")
    assert announce(ctx_server, ih, "127.0.0.2").get(b"failure reason") == b"unregistered torrent"
    # Decisions are cached per source class: ask again in the other order.
    assert b"failure reason" not in announce(ctx_server, ih, "127.0.0.1")
    allowed = RawPeer(ctx_server.peer_port)
    refused = socket.create_connection(
        ("127.0.0.1", ctx_server.peer_port), timeout=10, source_address=("127.0.0.2", 0)
    )
    try:
        assert allowed.handshake(ih)
        denied = RawPeer.__new__(RawPeer)
        denied.sock, denied.buf = refused, bytearray()
        assert not denied.handshake(ih)
    finally:
        allowed.close()
        refused.close()


def test_explicit_deny_of_get_object_torrent_opts_a_prefix_out(
    ctx_server: LiveServer, cs3: Any, cbucket: str
) -> None:
    put_object(cs3, cbucket, "private-dl/a.bin")
    put_object(cs3, cbucket, "shared/b.bin")
    policy = public_read_policy(cbucket)
    policy["Statement"].append(
        {
            "Sid": "NoTorrents",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:GetObjectTorrent",
            "Resource": f"arn:aws:s3:::{cbucket}/private-dl/*",
        }
    )
    cs3.put_bucket_policy(Bucket=cbucket, Policy=json.dumps(policy))
    # Still anonymously readable over REST, but no torrent on any channel.
    assert anonymous_get(ctx_server, cbucket, "private-dl/a.bin") == 200
    assert anonymous_get(ctx_server, cbucket, "private-dl/a.bin", "?torrent") == 403
    assert anonymous_get(ctx_server, cbucket, "shared/b.bin", "?torrent") == 200
    # The owner learns why (a signed caller gets 404 with a message, never a torrent).
    with pytest.raises(Exception, match="NoSuchKey"):
        cs3.get_object_torrent(Bucket=cbucket, Key="private-dl/a.bin")
    # Its info-hash (from a moment when it was public) is refused by tracker and seeder.
    cs3.delete_bucket_policy(Bucket=cbucket)
    cs3.put_object_acl(Bucket=cbucket, Key="private-dl/a.bin", ACL="public-read")
    ih = info_hash_v1(fetch_torrent(ctx_server.endpoint, cbucket, "private-dl/a.bin"))
    assert b"failure reason" not in announce(ctx_server, ih)
    deny_only = {
        "Version": "2012-10-17",
        "Statement": [policy["Statement"][1]],
    }
    cs3.put_bucket_policy(Bucket=cbucket, Policy=json.dumps(deny_only))
    assert announce(ctx_server, ih).get(b"failure reason") == b"unregistered torrent"
    peer = RawPeer(ctx_server.peer_port)
    try:
        assert not peer.handshake(ih)
    finally:
        peer.close()
