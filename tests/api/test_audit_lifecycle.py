"""Audit of bucket lifecycle on a live server: day counts a date cannot hold are refused at
PutBucketLifecycleConfiguration (they made every PUT, GET and HEAD of the bucket's objects,
and CreateMultipartUpload, fail with InternalError); an object expired by a rule stops being
served by ?torrent, the tracker, the seeder and the web seed at once."""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from fastbencode import bdecode  # type: ignore[attr-defined]

from tests.api.test_tracker_http import announce, announce_query, failure_within, peer_id
from tests.conftest import LiveServer, make_client, start_server
from tests.seeding import (
    RawPeer,
    fetch_torrent,
    info_hash_v1,
    lt_download,
    put_public,
    without_web_seed,
)


def _rule(**kw: Any) -> dict[str, Any]:
    return {"ID": "r", "Filter": {"Prefix": ""}, "Status": "Enabled", **kw}


@pytest.mark.parametrize(
    "rule",
    [
        _rule(Expiration={"Days": 2_147_483_647}),
        _rule(AbortIncompleteMultipartUpload={"DaysAfterInitiation": 2_147_483_647}),
        _rule(NoncurrentVersionExpiration={"NoncurrentDays": 2_147_483_647}),
    ],
)
def test_a_day_count_beyond_any_date_is_refused_and_objects_stay_usable(
    s3: Any, bucket: str, rule: dict[str, Any]
) -> None:
    try:
        s3.put_bucket_lifecycle_configuration(
            Bucket=bucket, LifecycleConfiguration={"Rules": [rule]}
        )
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "InvalidArgument"
        assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    # Whatever was stored, the bucket's objects and uploads still work.
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"
    s3.head_object(Bucket=bucket, Key="k")
    up = s3.create_multipart_upload(Bucket=bucket, Key="m")
    s3.abort_multipart_upload(Bucket=bucket, Key="m", UploadId=up["UploadId"])
    s3.delete_object(Bucket=bucket, Key="k")


def test_a_day_count_a_date_can_hold_is_announced(s3: Any, bucket: str) -> None:
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": [_rule(Expiration={"Days": 1_000_000})]}
    )
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    header = s3.head_object(Bucket=bucket, Key="k")["ResponseMetadata"]["HTTPHeaders"]
    assert 'rule-id="r"' in header["x-amz-expiration"]


# ---- an object expired by lifecycle stops being served on every BitTorrent channel ----


@pytest.fixture(scope="module")
def bt_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = start_server(
        tmp_path_factory.mktemp("lifecycle-bt"),
        env={
            "S3TORRENT_LIFECYCLE__DAY_SECONDS": "1",
            "S3TORRENT_LIFECYCLE__INTERVAL": "0.3",
            "S3TORRENT_TRACKER__ANNOUNCE_RATE_PER_IP": "100000",
            "S3TORRENT_TRACKER__ANNOUNCE_RATE_BURST": "100000",
        },
    )
    yield srv
    srv.stop()


def _fetch(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            r.read()
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def _handshake_accepted(srv: LiveServer, info_hash: bytes) -> bool:
    peer = RawPeer(srv.peer_port)
    try:
        return peer.handshake(info_hash)
    finally:
        peer.close()


def test_an_expired_object_stops_being_served_by_torrent_tracker_seeder_and_web_seed(
    bt_server: LiveServer, tmp_path: Path
) -> None:
    s3 = make_client(bt_server.endpoint)
    bucket = "lc-bt"
    s3.create_bucket(Bucket=bucket)
    data = os.urandom(300_000)
    put_public(s3, bucket, "pub/obj", data)
    torrent = fetch_torrent(bt_server.endpoint, bucket, "pub/obj")
    ih = info_hash_v1(torrent)
    web_seed = (
        bdecode(torrent)[b"url-list"][0].decode() + bdecode(torrent)[b"info"][b"name"].decode()
    )
    # Served on every channel: a real client downloads it from the seeder alone.
    got = lt_download(without_web_seed(torrent), tmp_path / "dl", timeout=60)
    assert got.read_bytes() == data
    assert _handshake_accepted(bt_server, ih)
    assert _fetch(web_seed) == 200
    assert b"peers" in announce(bt_server, announce_query(ih, peer_id(1), 6001))

    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket,
        LifecycleConfiguration={
            "Rules": [
                {"ID": "pub", "Filter": {"Prefix": "pub/"}, "Status": "Enabled",
                 "Expiration": {"Days": 1}}
            ]
        },
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while s3.list_objects_v2(Bucket=bucket)["KeyCount"]:
        assert time.monotonic() < deadline, "not expired in time"
        time.sleep(0.02)
    # Within a second of the deletion being seen, no channel serves it any more.
    assert failure_within(bt_server, ih, seconds=1.0) == "unregistered torrent"
    # Anonymous, without ListBucket: AccessDenied, as S3 answers for a missing key.
    assert _fetch(f"{bt_server.endpoint}/{bucket}/pub/obj?torrent") in (403, 404)
    assert _fetch(web_seed) in (403, 404)
    deadline = time.monotonic() + 1.0
    while _handshake_accepted(bt_server, ih):
        assert time.monotonic() < deadline, "the seeder still serves the expired object"
        time.sleep(0.05)
