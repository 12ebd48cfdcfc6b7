"""The lifecycle worker on a live server with one-second days: matching objects expire and
others stay, an expired public object's torrent is revoked, incomplete multipart uploads are
aborted, and the passes show in /metrics and the log. In versioned buckets: expiry adds a
delete marker, noncurrent versions expire (the newest N kept), lone delete markers go, and
versions under object lock stay. (S3TORRENT_TEST_METADATA=postgres runs it on PostgreSQL.)"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.api.test_tracker_http import announce, announce_query, failure_within, peer_id, publish
from tests.conftest import LiveServer, make_client, sign_request, start_server

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def lc_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = start_server(
        tmp_path_factory.mktemp("lifecycle"),
        env={
            "S3TORRENT_LIFECYCLE__DAY_SECONDS": "1",
            "S3TORRENT_LIFECYCLE__INTERVAL": "0.3",
            "S3TORRENT_TRACKER__ANNOUNCE_RATE_PER_IP": "100000",
            "S3TORRENT_TRACKER__ANNOUNCE_RATE_BURST": "100000",
            "S3TORRENT_SEEDER__ENABLED": "false",
        },
    )
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def lc3(lc_server: LiveServer) -> Any:
    return make_client(lc_server.endpoint)


_n = [0]


@pytest.fixture
def lbucket(lc3: Any) -> str:
    _n[0] += 1
    name = f"life-{_n[0]}-{int(time.time() * 1000) % 100000}"
    lc3.create_bucket(Bucket=name)
    return name


def wait_for(check: Callable[[], bool], seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.2)


def exists(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("404", "NoSuchKey"):
            return False
        raise
    return True


def metrics(srv: LiveServer) -> dict[str, float]:
    url = f"{srv.endpoint}/_metrics"
    req = urllib.request.Request(url, headers=sign_request("GET", url))
    with urllib.request.urlopen(req, timeout=10) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("s3torrent_lifecycle_"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_matching_objects_expire_and_the_others_stay(
    lc_server: LiveServer, lc3: Any, lbucket: str
) -> None:
    lc3.put_bucket_lifecycle_configuration(
        Bucket=lbucket,
        LifecycleConfiguration={
            "Rules": [
                {"ID": "tmp", "Filter": {"Prefix": "tmp/"}, "Status": "Enabled",
                 "Expiration": {"Days": 1}},
                {"ID": "tagged", "Status": "Enabled", "Expiration": {"Days": 1},
                 "Filter": {"And": {"Prefix": "t/", "Tags": [{"Key": "k", "Value": "gone"}]}}},
                {"ID": "big", "Filter": {"ObjectSizeGreaterThan": 1000}, "Status": "Enabled",
                 "Expiration": {"Days": 1}},
                {"ID": "off", "Filter": {"Prefix": "keep/"}, "Status": "Disabled",
                 "Expiration": {"Days": 1}},
            ]
        },
    )  # fmt: skip
    before = metrics(lc_server).get("s3torrent_lifecycle_objects_expired_total", 0.0)
    expiring = {"tmp/a": b"x", "t/x": b"x", "big": b"b" * 2000}
    staying = {"keep/a": b"x", "t/y": b"x", "small": b"s" * 10}
    for key, body in {**expiring, **staying}.items():
        tagging = {"t/x": "k=gone", "t/y": "k=stay"}.get(key, "")
        lc3.put_object(Bucket=lbucket, Key=key, Body=body, Tagging=tagging)
    wait_for(lambda: not any(exists(lc3, lbucket, k) for k in expiring))
    passes = metrics(lc_server)["s3torrent_lifecycle_passes_total"]
    # Another full pass later the others are all still there.
    wait_for(lambda: metrics(lc_server)["s3torrent_lifecycle_passes_total"] >= passes + 2)
    assert all(exists(lc3, lbucket, k) for k in staying)
    after = metrics(lc_server)
    assert after["s3torrent_lifecycle_objects_expired_total"] - before >= len(expiring)
    assert after["s3torrent_lifecycle_objects_scanned_total"] > 0
    assert lc_server.log_path is not None
    assert "lifecycle pass:" in lc_server.log_path.read_text()


def test_an_expired_public_objects_torrent_is_revoked(
    lc_server: LiveServer, lc3: Any, lbucket: str
) -> None:
    ih = publish(lc_server, lc3, lbucket, "pub/obj")
    assert b"peers" in announce(lc_server, announce_query(ih, peer_id(1), 6001))
    lc3.put_bucket_lifecycle_configuration(
        Bucket=lbucket,
        LifecycleConfiguration={
            "Rules": [{"ID": "pub", "Filter": {"Prefix": "pub/"}, "Status": "Enabled",
                       "Expiration": {"Days": 1}}]
        },
    )  # fmt: skip
    assert failure_within(lc_server, ih, seconds=15) == "unregistered torrent"
    assert not exists(lc3, lbucket, "pub/obj")


def test_incomplete_multipart_uploads_are_aborted(lc3: Any, lbucket: str) -> None:
    lc3.put_bucket_lifecycle_configuration(
        Bucket=lbucket,
        LifecycleConfiguration={
            "Rules": [{"ID": "mpu", "Filter": {"Prefix": "mpu/"}, "Status": "Enabled",
                       "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}]
        },
    )  # fmt: skip
    gone = lc3.create_multipart_upload(Bucket=lbucket, Key="mpu/x")["UploadId"]
    lc3.upload_part(Bucket=lbucket, Key="mpu/x", UploadId=gone, PartNumber=1, Body=b"p" * 100)
    kept = lc3.create_multipart_upload(Bucket=lbucket, Key="other/y")["UploadId"]

    def remaining() -> set[str]:
        return {
            u["UploadId"] for u in lc3.list_multipart_uploads(Bucket=lbucket).get("Uploads", [])
        }

    wait_for(lambda: remaining() == {kept})
    with pytest.raises(ClientError) as exc:
        lc3.upload_part(Bucket=lbucket, Key="mpu/x", UploadId=gone, PartNumber=2, Body=b"p")
    assert exc.value.response["Error"]["Code"] == "NoSuchUpload"


# ---- versioned buckets ----


@pytest.fixture
def vbucket(lc3: Any, lbucket: str) -> str:
    lc3.put_bucket_versioning(Bucket=lbucket, VersioningConfiguration={"Status": "Enabled"})
    return lbucket


def versions(s3: Any, bucket: str, key: str) -> list[tuple[str, bool, bool]]:
    """(version id, is latest, is a delete marker) of a key's versions, newest first."""
    out = s3.list_object_versions(Bucket=bucket, Prefix=key)
    found = [(v["VersionId"], v["IsLatest"], False) for v in out.get("Versions", [])]
    found += [(m["VersionId"], m["IsLatest"], True) for m in out.get("DeleteMarkers", [])]
    # boto3 splits the listing in two lists, each newest first; the latest goes first (the
    # keys tested here have at most one delete marker, or no noncurrent marker).
    return sorted(found, key=lambda v: not v[1])


def passes_after(srv: LiveServer, n: int) -> None:
    """Wait until n more lifecycle passes finished."""
    start = metrics(srv)["s3torrent_lifecycle_passes_total"]
    wait_for(lambda: metrics(srv)["s3torrent_lifecycle_passes_total"] >= start + n)


def test_expiry_in_a_versioned_bucket_adds_a_delete_marker_and_revokes_the_torrent(
    lc_server: LiveServer, lc3: Any, vbucket: str
) -> None:
    ih = publish(lc_server, lc3, vbucket, "pub/obj")
    vid = lc3.head_object(Bucket=vbucket, Key="pub/obj")["VersionId"]
    assert b"peers" in announce(lc_server, announce_query(ih, peer_id(2), 6002))
    lc3.put_bucket_lifecycle_configuration(
        Bucket=vbucket,
        LifecycleConfiguration={
            "Rules": [{"ID": "pub", "Filter": {"Prefix": "pub/"}, "Status": "Enabled",
                       "Expiration": {"Days": 1}}]
        },
    )  # fmt: skip
    assert failure_within(lc_server, ih, seconds=15) == "unregistered torrent"
    assert not exists(lc3, vbucket, "pub/obj")
    passes_after(lc_server, 2)  # no second delete marker on later passes
    (_, latest, is_marker), old = versions(lc3, vbucket, "pub/obj")
    assert latest and is_marker
    assert old == (vid, False, False)  # the expired version stays, noncurrent
    body = lc3.get_object(Bucket=vbucket, Key="pub/obj", VersionId=vid)["Body"].read()
    assert len(body) == 40_000


def test_noncurrent_versions_expire_keeping_the_newest(lc3: Any, vbucket: str) -> None:
    ids = [
        lc3.put_object(Bucket=vbucket, Key="nc/k", Body=b"%d" % i)["VersionId"] for i in range(4)
    ]
    lc3.put_bucket_lifecycle_configuration(
        Bucket=vbucket,
        LifecycleConfiguration={
            "Rules": [{"ID": "nc", "Filter": {"Prefix": "nc/"}, "Status": "Enabled",
                       "NoncurrentVersionExpiration": {"NoncurrentDays": 1,
                                                       "NewerNoncurrentVersions": 1}}]
        },
    )  # fmt: skip
    wait_for(lambda: len(versions(lc3, vbucket, "nc/k")) == 2)
    assert versions(lc3, vbucket, "nc/k") == [(ids[3], True, False), (ids[2], False, False)]


def test_a_lone_delete_marker_is_removed(lc_server: LiveServer, lc3: Any, vbucket: str) -> None:
    lc3.put_object(Bucket=vbucket, Key="dm/k", Body=b"x")
    lc3.delete_object(Bucket=vbucket, Key="dm/k")
    lc3.delete_object(Bucket=vbucket, Key="dm/ghost")  # a delete marker and nothing else
    lc3.put_object(Bucket=vbucket, Key="keep/k", Body=b"x")
    lc3.delete_object(Bucket=vbucket, Key="keep/k")  # its noncurrent version is not selected
    lc3.put_bucket_lifecycle_configuration(
        Bucket=vbucket,
        LifecycleConfiguration={
            "Rules": [{"ID": "dm", "Filter": {"Prefix": "dm/"}, "Status": "Enabled",
                       "Expiration": {"ExpiredObjectDeleteMarker": True},
                       "NoncurrentVersionExpiration": {"NoncurrentDays": 1}},
                      {"ID": "markers", "Filter": {"Prefix": "keep/"}, "Status": "Enabled",
                       "Expiration": {"ExpiredObjectDeleteMarker": True}}]
        },
    )  # fmt: skip
    wait_for(lambda: not versions(lc3, vbucket, "dm/"))
    passes_after(lc_server, 2)
    assert [v[1:] for v in versions(lc3, vbucket, "keep/k")] == [(True, True), (False, False)]


def test_versions_under_object_lock_are_not_removed(lc_server: LiveServer, lc3: Any) -> None:
    name = f"life-lock-{int(time.time() * 1000) % 100000}"
    lc3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    until = datetime.now(UTC) + timedelta(hours=1)
    kept = [
        lc3.put_object(Bucket=name, Key="lk/a", Body=b"a", ObjectLockMode="COMPLIANCE",
                       ObjectLockRetainUntilDate=until)["VersionId"],
        lc3.put_object(Bucket=name, Key="lk/b", Body=b"b",
                       ObjectLockLegalHoldStatus="ON")["VersionId"],
    ]  # fmt: skip
    for key in ("lk/a", "lk/b", "lk/c", "lk/c"):
        lc3.put_object(Bucket=name, Key=key, Body=b"new")
    refused = metrics(lc_server).get("s3torrent_lifecycle_refused_total", 0.0)
    lc3.put_bucket_lifecycle_configuration(
        Bucket=name,
        LifecycleConfiguration={
            "Rules": [{"ID": "nc", "Filter": {"Prefix": "lk/"}, "Status": "Enabled",
                       "NoncurrentVersionExpiration": {"NoncurrentDays": 1}}]
        },
    )  # fmt: skip
    wait_for(lambda: len(versions(lc3, name, "lk/c")) == 1)  # the unlocked one went
    passes_after(lc_server, 1)
    for key, vid in zip(("lk/a", "lk/b"), kept, strict=True):
        assert [v[0] for v in versions(lc3, name, key)][1:] == [vid]
    assert metrics(lc_server)["s3torrent_lifecycle_refused_total"] - refused >= 2
    lc3.put_object_legal_hold(Bucket=name, Key="lk/b", VersionId=kept[1],
                              LegalHold={"Status": "OFF"})  # fmt: skip
    wait_for(lambda: len(versions(lc3, name, "lk/b")) == 1)  # released: it goes
