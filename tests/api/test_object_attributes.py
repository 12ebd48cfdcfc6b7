"""Checksums a client sent come back (GET/HEAD with x-amz-checksum-mode, GetObjectAttributes
with boto3 and `aws s3api get-object-attributes`); a wrong checksum is BadDigest."""

from __future__ import annotations

import base64
import hashlib
import json
import zlib
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.api.test_cli_tools import aws, ok
from tests.conftest import LiveServer

ALL = ["ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"]


def _code(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    err = exc.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]


def _crc32(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def _multipart(s3: Any, bucket: str, key: str, parts: list[bytes], **create: Any) -> None:
    up = s3.create_multipart_upload(Bucket=bucket, Key=key, **create)["UploadId"]
    done = []
    for n, body in enumerate(parts, start=1):
        extra = {"ChecksumAlgorithm": create["ChecksumAlgorithm"]} if create else {}
        r = s3.upload_part(Bucket=bucket, Key=key, UploadId=up, PartNumber=n, Body=body, **extra)
        entry = {"PartNumber": n, "ETag": r["ETag"]}
        for name in ("ChecksumCRC32", "ChecksumSHA256", "ChecksumCRC64NVME"):
            if name in r:
                entry[name] = r[name]
        done.append(entry)
    s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=up, MultipartUpload={"Parts": done}
    )


def test_put_checksum_is_returned_on_head_and_get_only_when_asked(s3: Any, bucket: str) -> None:
    body = b"checksummed body"
    s3.put_object(Bucket=bucket, Key="k", Body=body, ChecksumCRC32=_crc32(body))
    plain = s3.head_object(Bucket=bucket, Key="k")
    assert "ChecksumCRC32" not in plain
    head = s3.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == _crc32(body)
    assert head["ChecksumType"] == "FULL_OBJECT"
    got = s3.get_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert got["ChecksumCRC32"] == _crc32(body)
    assert got["Body"].read() == body


def test_sha256_put_is_stored_and_returned(s3: Any, bucket: str) -> None:
    body = b"sha body"
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    s3.put_object(Bucket=bucket, Key="s", Body=body, ChecksumSHA256=digest)
    head = s3.head_object(Bucket=bucket, Key="s", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == digest


def test_wrong_checksum_is_bad_digest_and_nothing_is_stored(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="bad", Body=b"x", ChecksumCRC32="AAAAAA==")
    assert _code(exc) == ("BadDigest", 400)
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="bad")
    assert _code(exc)[1] == 404


def test_malformed_checksum_value_is_invalid_request(s3: Any, bucket: str) -> None:
    # A value that is not a CRC32 at all (three bytes) is S3's InvalidRequest, not BadDigest.
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="bad", Body=b"x", ChecksumCRC32="AAAA")
    assert _code(exc) == ("InvalidRequest", 400)


def test_get_object_attributes_of_a_single_part_object(s3: Any, bucket: str) -> None:
    body = b"attributes"
    put = s3.put_object(Bucket=bucket, Key="one", Body=body, ChecksumCRC32=_crc32(body))
    got = s3.get_object_attributes(Bucket=bucket, Key="one", ObjectAttributes=ALL)
    assert got["ETag"] == put["ETag"].strip('"')
    assert got["Checksum"] == {"ChecksumCRC32": _crc32(body), "ChecksumType": "FULL_OBJECT"}
    assert got["StorageClass"] == "STANDARD"
    assert got["ObjectSize"] == len(body)
    assert "ObjectParts" not in got
    assert "LastModified" in got
    only_size = s3.get_object_attributes(Bucket=bucket, Key="one", ObjectAttributes=["ObjectSize"])
    assert only_size["ObjectSize"] == len(body)
    assert "ETag" not in only_size and "Checksum" not in only_size


def test_get_object_attributes_pages_the_parts_of_a_multipart_object(s3: Any, bucket: str) -> None:
    size = 5 * 1024 * 1024
    parts = [b"a" * size, b"b" * size, b"c" * 10]
    _multipart(s3, bucket, "mp", parts, ChecksumAlgorithm="CRC32")
    got = s3.get_object_attributes(
        Bucket=bucket, Key="mp", ObjectAttributes=ALL, MaxParts=2, PartNumberMarker=0
    )
    page = got["ObjectParts"]
    assert page["TotalPartsCount"] == 3
    assert page["IsTruncated"] is True
    assert page["NextPartNumberMarker"] == 2
    assert [p["PartNumber"] for p in page["Parts"]] == [1, 2]
    assert page["Parts"][0]["Size"] == size
    assert page["Parts"][0]["ChecksumCRC32"] == _crc32(parts[0])
    assert got["Checksum"]["ChecksumType"] == "COMPOSITE"
    # The checksum of the parts' checksums, without the -3 GET and HEAD append.
    of_parts = _crc32(b"".join(zlib.crc32(p).to_bytes(4, "big") for p in parts))
    assert got["Checksum"]["ChecksumCRC32"] == of_parts
    assert got["ObjectSize"] == 2 * size + 10
    rest = s3.get_object_attributes(
        Bucket=bucket, Key="mp", ObjectAttributes=["ObjectParts"], MaxParts=2, PartNumberMarker=2
    )["ObjectParts"]
    assert rest["IsTruncated"] is False
    assert [(p["PartNumber"], p["Size"]) for p in rest["Parts"]] == [(3, 10)]


def test_full_object_multipart_checksum_is_the_whole_objects_crc(s3: Any, bucket: str) -> None:
    size = 5 * 1024 * 1024
    parts = [b"x" * size, b"y" * 7]
    _multipart(s3, bucket, "full", parts, ChecksumAlgorithm="CRC32", ChecksumType="FULL_OBJECT")
    got = s3.get_object_attributes(Bucket=bucket, Key="full", ObjectAttributes=["Checksum"])
    assert got["Checksum"] == {
        "ChecksumCRC32": _crc32(b"".join(parts)),
        "ChecksumType": "FULL_OBJECT",
    }


def test_get_object_attributes_refuses_unknown_and_missing_attributes(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    with pytest.raises(ClientError) as exc:
        s3.get_object_attributes(Bucket=bucket, Key="k", ObjectAttributes=["Colour"])
    assert _code(exc) == ("InvalidArgument", 400)
    with pytest.raises(ClientError) as exc:
        s3.get_object_attributes(Bucket=bucket, Key="missing", ObjectAttributes=["ETag"])
    assert _code(exc) == ("NoSuchKey", 404)


def test_get_object_attributes_is_its_own_policy_action(s3: Any, bob_s3: Any, bucket: str) -> None:
    """S3 asks s3:GetObjectAttributes and s3:GetObject (the read it tells about); for a
    named version s3:GetObjectVersionAttributes and s3:GetObjectVersion."""
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": ["s3:GetObjectAttributes", "s3:GetObject"],
                "Resource": f"arn:aws:s3:::{bucket}/*",
            }
        ],
    }
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    got = bob_s3.get_object_attributes(Bucket=bucket, Key="k", ObjectAttributes=["ObjectSize"])
    assert got["ObjectSize"] == 1
    # Naming a version needs s3:GetObjectVersionAttributes (and s3:GetObjectVersion).
    with pytest.raises(ClientError) as exc:
        bob_s3.get_object_attributes(
            Bucket=bucket, Key="k", VersionId="null", ObjectAttributes=["ObjectSize"]
        )
    assert _code(exc) == ("AccessDenied", 403)
    policy["Statement"][0]["Action"] = [
        "s3:GetObjectVersion",
        "s3:GetObjectVersionAttributes",
    ]
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    got = bob_s3.get_object_attributes(
        Bucket=bucket, Key="k", VersionId="null", ObjectAttributes=["ObjectSize"]
    )
    assert got["ObjectSize"] == 1


def test_aws_cli_get_object_attributes(
    server: LiveServer, s3: Any, bucket: str, tmp_path: Path
) -> None:
    body = b"cli attributes"
    s3.put_object(Bucket=bucket, Key="c", Body=body, ChecksumCRC32=_crc32(body))
    out = ok(
        aws(
            server,
            tmp_path,
            "s3api",
            "get-object-attributes",
            "--bucket",
            bucket,
            "--key",
            "c",
            "--object-attributes",
            "ETag",
            "Checksum",
            "ObjectSize",
            "StorageClass",
        )
    )
    got = json.loads(out)
    assert got["ObjectSize"] == len(body)
    assert got["Checksum"]["ChecksumCRC32"] == _crc32(body)
    assert got["StorageClass"] == "STANDARD"


def test_wrong_part_checksum_is_bad_digest(s3: Any, bucket: str) -> None:
    up = s3.create_multipart_upload(Bucket=bucket, Key="p", ChecksumAlgorithm="CRC32")
    with pytest.raises(ClientError) as exc:
        s3.upload_part(
            Bucket=bucket,
            Key="p",
            UploadId=up["UploadId"],
            PartNumber=1,
            Body=b"part",
            ChecksumCRC32="AAAAAA==",
        )
    assert _code(exc) == ("BadDigest", 400)
    s3.abort_multipart_upload(Bucket=bucket, Key="p", UploadId=up["UploadId"])


def test_full_object_checksum_that_does_not_match_on_complete_is_bad_digest(
    s3: Any, bucket: str
) -> None:
    key = "fo"
    up = s3.create_multipart_upload(
        Bucket=bucket, Key=key, ChecksumAlgorithm="CRC32", ChecksumType="FULL_OBJECT"
    )["UploadId"]
    r = s3.upload_part(
        Bucket=bucket, Key=key, UploadId=up, PartNumber=1, Body=b"z", ChecksumAlgorithm="CRC32"
    )
    part = {"PartNumber": 1, "ETag": r["ETag"], "ChecksumCRC32": r["ChecksumCRC32"]}
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(
            Bucket=bucket,
            Key=key,
            UploadId=up,
            MultipartUpload={"Parts": [part]},
            ChecksumCRC32="AAAAAA==",
            ChecksumType="FULL_OBJECT",
        )
    assert _code(exc) == ("BadDigest", 400)
