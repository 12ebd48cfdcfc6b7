"""Torrents follow the current version: a new version, a delete marker or removing the
current version revokes the old torrent (tracker and ?torrent) within a second; a version
that becomes current again gets its torrent back, byte for byte the same."""

from __future__ import annotations

import time
from typing import Any

from tests.api.test_torrent import announce, get_torrent, http, torrent_url, v1_info_hash
from tests.conftest import LiveServer


def _enable(s3: Any, bucket: str) -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})


def _refused_within(endpoint: str, info_hash: bytes, seconds: float) -> float:
    """Seconds until the tracker refuses the swarm (fails the test after `seconds`)."""
    start = time.monotonic()
    while b"failure reason" not in announce(endpoint, info_hash):
        assert time.monotonic() - start < seconds, "old torrent still announced"
        time.sleep(0.02)
    return time.monotonic() - start


def test_new_version_revokes_the_old_torrent(server: LiveServer, s3: Any, bucket: str) -> None:
    _enable(s3, bucket)
    s3.put_object(Bucket=bucket, Key="t", Body=b"one" * 100, ACL="public-read")
    old = get_torrent(server.endpoint, bucket, "t")
    assert b"failure reason" not in announce(server.endpoint, v1_info_hash(old))
    s3.put_object(Bucket=bucket, Key="t", Body=b"two" * 100, ACL="public-read")
    _refused_within(server.endpoint, v1_info_hash(old), 1.0)
    new = get_torrent(server.endpoint, bucket, "t")
    assert v1_info_hash(new) != v1_info_hash(old)
    assert b"failure reason" not in announce(server.endpoint, v1_info_hash(new))


def test_delete_marker_revokes_the_torrent(server: LiveServer, s3: Any, bucket: str) -> None:
    _enable(s3, bucket)
    s3.put_object(Bucket=bucket, Key="t", Body=b"data" * 100, ACL="public-read")
    torrent = get_torrent(server.endpoint, bucket, "t")
    assert b"failure reason" not in announce(server.endpoint, v1_info_hash(torrent))
    s3.delete_object(Bucket=bucket, Key="t")
    _refused_within(server.endpoint, v1_info_hash(torrent), 1.0)
    status, _, _ = http("GET", torrent_url(server.endpoint, bucket, "t"))
    assert status in (403, 404)


def test_removing_the_current_version_brings_the_previous_torrent_back(
    server: LiveServer, s3: Any, bucket: str
) -> None:
    _enable(s3, bucket)
    s3.put_object(Bucket=bucket, Key="t", Body=b"first" * 100, ACL="public-read")
    first = get_torrent(server.endpoint, bucket, "t")
    v2 = s3.put_object(Bucket=bucket, Key="t", Body=b"second" * 100, ACL="public-read")
    second = get_torrent(server.endpoint, bucket, "t")
    assert b"failure reason" not in announce(server.endpoint, v1_info_hash(second))
    s3.delete_object(Bucket=bucket, Key="t", VersionId=v2["VersionId"])
    _refused_within(server.endpoint, v1_info_hash(second), 1.0)
    # The first version is current again: the same metainfo as before, announced again.
    deadline = time.monotonic() + 10
    while True:
        status, _, body = http("GET", torrent_url(server.endpoint, bucket, "t"))
        if status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert status == 200 and body == first
    assert b"failure reason" not in announce(server.endpoint, v1_info_hash(first))


def test_noncurrent_public_version_has_no_torrent(server: LiveServer, s3: Any, bucket: str) -> None:
    _enable(s3, bucket)
    s3.put_object(Bucket=bucket, Key="t", Body=b"old" * 100, ACL="public-read")
    old = get_torrent(server.endpoint, bucket, "t")
    s3.put_object(Bucket=bucket, Key="t", Body=b"new" * 100)  # private
    _refused_within(server.endpoint, v1_info_hash(old), 1.0)
    # The key's current version is private: no torrent at all, old or new.
    status, _, _ = http("GET", torrent_url(server.endpoint, bucket, "t"))
    assert status == 403
