"""CopyObject through boto3: within and across buckets, metadata directives, conditions, access."""

from __future__ import annotations

import hashlib
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from tests.conftest import LiveServer

MiB = 1024 * 1024


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def test_copy_within_bucket_keeps_bytes_and_metadata(s3: Any, bucket: str) -> None:
    s3.put_object(
        Bucket=bucket,
        Key="src",
        Body=b"copy me",
        ContentType="text/plain",
        Metadata={"colour": "blue"},
    )
    result = s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    etag = f'"{hashlib.md5(b"copy me").hexdigest()}"'
    assert result["CopyObjectResult"]["ETag"] == etag
    assert isinstance(result["CopyObjectResult"]["LastModified"], datetime)
    got = s3.get_object(Bucket=bucket, Key="dst")
    assert got["Body"].read() == b"copy me"
    assert got["ContentType"] == "text/plain"
    assert got["Metadata"] == {"colour": "blue"}
    assert got["ETag"] == etag


def test_copy_leaves_the_website_redirect_behind_unless_sent(s3: Any, bucket: str) -> None:
    """x-amz-website-redirect-location is the object's own: S3 does not copy it, with either
    directive; a copy that sends it gets it."""
    s3.put_object(Bucket=bucket, Key="src", Body=b"r", WebsiteRedirectLocation="/elsewhere")
    assert s3.head_object(Bucket=bucket, Key="src")["WebsiteRedirectLocation"] == "/elsewhere"
    source = {"Bucket": bucket, "Key": "src"}
    s3.copy_object(Bucket=bucket, Key="plain", CopySource=source)
    s3.copy_object(Bucket=bucket, Key="replaced", CopySource=source, MetadataDirective="REPLACE")
    for key in ("plain", "replaced"):
        assert "WebsiteRedirectLocation" not in s3.head_object(Bucket=bucket, Key=key)
    s3.copy_object(Bucket=bucket, Key="sent", CopySource=source, WebsiteRedirectLocation="/x")
    assert s3.head_object(Bucket=bucket, Key="sent")["WebsiteRedirectLocation"] == "/x"


def test_copy_across_buckets_with_replace_directive(s3: Any, bucket: str) -> None:
    other = f"{bucket}-b"
    s3.create_bucket(Bucket=other)
    s3.put_object(Bucket=bucket, Key="dir/src key+ü", Body=b"x" * 1000, Metadata={"old": "1"})
    s3.copy_object(
        Bucket=other,
        Key="dst",
        CopySource={"Bucket": bucket, "Key": "dir/src key+ü"},
        MetadataDirective="REPLACE",
        Metadata={"new": "2"},
        ContentType="application/json",
    )
    got = s3.get_object(Bucket=other, Key="dst")
    assert got["Body"].read() == b"x" * 1000
    assert got["Metadata"] == {"new": "2"}
    assert got["ContentType"] == "application/json"
    s3.delete_object(Bucket=other, Key="dst")
    s3.delete_bucket(Bucket=other)


def test_copy_onto_itself_needs_replace(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"same", Metadata={"v": "1"})
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="k", CopySource=f"{bucket}/k")
    assert _code(exc) == "InvalidRequest"
    assert "This copy request is illegal" in exc.value.response["Error"]["Message"]
    s3.copy_object(
        Bucket=bucket,
        Key="k",
        CopySource=f"{bucket}/k",
        MetadataDirective="REPLACE",
        Metadata={"v": "2"},
    )
    got = s3.get_object(Bucket=bucket, Key="k")
    assert got["Body"].read() == b"same"
    assert got["Metadata"] == {"v": "2"}


def test_copy_source_conditions(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"cond")
    etag = s3.head_object(Bucket=bucket, Key="src")["ETag"]
    past = datetime.now(UTC) - timedelta(days=1)
    future = datetime.now(UTC) + timedelta(days=1)
    src = {"Bucket": bucket, "Key": "src"}
    failing: list[dict[str, Any]] = [
        {"CopySourceIfMatch": '"0000"'},
        {"CopySourceIfNoneMatch": etag},
        {"CopySourceIfUnmodifiedSince": past},
        {"CopySourceIfModifiedSince": future},
    ]
    for cond in failing:
        with pytest.raises(ClientError) as exc:
            s3.copy_object(Bucket=bucket, Key="dst", CopySource=src, **cond)
        assert _code(exc) == "PreconditionFailed", cond
        assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    passing: list[dict[str, Any]] = [
        {"CopySourceIfMatch": etag},
        {"CopySourceIfNoneMatch": '"0000"'},
        {"CopySourceIfModifiedSince": past},
        {"CopySourceIfUnmodifiedSince": future},
        # If-Match holds, so a stale If-Unmodified-Since does not matter (as in S3).
        {"CopySourceIfMatch": etag, "CopySourceIfUnmodifiedSince": past},
    ]
    for cond in passing:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource=src, **cond)
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == b"cond"


def test_copy_needs_read_access_to_the_source(
    s3: Any, bob_s3: Any, server: LiveServer, bucket: str
) -> None:
    s3.put_object(Bucket=bucket, Key="private", Body=b"alice")
    bob_bucket = f"{bucket}-bob"
    bob_s3.create_bucket(Bucket=bob_bucket)
    try:
        with pytest.raises(ClientError) as exc:
            bob_s3.copy_object(Bucket=bob_bucket, Key="stolen", CopySource=f"{bucket}/private")
        assert _code(exc) == "AccessDenied"
        with pytest.raises(ClientError) as exc:
            bob_s3.copy_object(Bucket=bob_bucket, Key="x", CopySource=f"{bucket}/missing")
        assert _code(exc) == "AccessDenied"  # bob may not list alice's bucket: no NoSuchKey
        s3.put_object_acl(Bucket=bucket, Key="private", ACL="public-read")
        bob_s3.copy_object(Bucket=bob_bucket, Key="copied", CopySource=f"{bucket}/private")
        assert bob_s3.get_object(Bucket=bob_bucket, Key="copied")["Body"].read() == b"alice"
        # bob may read the source but not write into alice's bucket.
        with pytest.raises(ClientError) as exc:
            bob_s3.copy_object(Bucket=bucket, Key="dst", CopySource=f"{bucket}/private")
        assert _code(exc) == "AccessDenied"
        bob_s3.delete_object(Bucket=bob_bucket, Key="copied")
    finally:
        bob_s3.delete_bucket(Bucket=bob_bucket)


def test_copy_errors_for_missing_sources(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource=f"{bucket}/missing")
    assert _code(exc) == "NoSuchKey"
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource="no-such-bucket-here/k")
    assert _code(exc) == "NoSuchBucket"


def test_copy_acl_is_its_own(s3: Any, server: LiveServer, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="pub", Body=b"p", ACL="public-read")
    s3.copy_object(Bucket=bucket, Key="private-copy", CopySource=f"{bucket}/pub")
    assert requests.get(f"{server.endpoint}/{bucket}/private-copy", timeout=10).status_code == 403
    s3.copy_object(Bucket=bucket, Key="public-copy", CopySource=f"{bucket}/pub", ACL="public-read")
    r = requests.get(f"{server.endpoint}/{bucket}/public-copy", timeout=10)
    assert r.status_code == 200
    assert r.content == b"p"


def test_copy_of_multipart_object_and_checksum(s3: Any, bucket: str) -> None:
    part1, part2 = b"a" * (5 * MiB), b"b" * 10
    uid = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    e1 = s3.upload_part(Bucket=bucket, Key="mp", UploadId=uid, PartNumber=1, Body=part1)["ETag"]
    e2 = s3.upload_part(Bucket=bucket, Key="mp", UploadId=uid, PartNumber=2, Body=part2)["ETag"]
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key="mp",
        UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]},
    )
    result = s3.copy_object(
        Bucket=bucket, Key="flat", CopySource=f"{bucket}/mp", ChecksumAlgorithm="CRC32"
    )
    whole = part1 + part2
    assert result["CopyObjectResult"]["ETag"] == f'"{hashlib.md5(whole).hexdigest()}"'
    crc = zlib.crc32(whole).to_bytes(4, "big")
    import base64

    assert result["CopyObjectResult"]["ChecksumCRC32"] == base64.b64encode(crc).decode()
    assert s3.get_object(Bucket=bucket, Key="flat")["Body"].read() == whole
