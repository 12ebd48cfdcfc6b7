"""Multipart uploads through boto3 and the AWS CLI: parts, completion rules, checksums, lists."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from s3torrent.store.meta_buckets import DELETE_BUCKET_BATCH
from tests.conftest import LiveServer, add_user, aws_cli, make_client, start_server

MiB = 1024 * 1024
PART = 5 * MiB


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def _data(n: int, seed: int = 0) -> bytes:
    block = hashlib.sha256(str(seed).encode()).digest() * 2048  # 64 KiB, cheap and non-uniform
    return (block * (n // len(block) + 1))[:n]


def _mp_etag(parts: list[bytes]) -> str:
    digest = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()
    return f'"{digest}-{len(parts)}"'


def _crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def _upload(s3: Any, bucket: str, key: str, parts: list[bytes], **create: Any) -> dict[str, Any]:
    up = s3.create_multipart_upload(Bucket=bucket, Key=key, **create)
    uid = up["UploadId"]
    done = []
    for i, body in enumerate(parts, 1):
        r = s3.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=i, Body=body)
        done.append({"PartNumber": i, "ETag": r["ETag"]})
    result: dict[str, Any] = s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=uid, MultipartUpload={"Parts": done}
    )
    return result


def test_upload_and_read_back_with_ranges_and_part_numbers(s3: Any, bucket: str) -> None:
    parts = [_data(PART, 1), _data(PART, 2), _data(1234, 3)]
    whole = b"".join(parts)
    result = _upload(s3, bucket, "big", parts, ContentType="text/plain", Metadata={"a": "b"})
    assert result["ETag"] == _mp_etag(parts)
    head = s3.head_object(Bucket=bucket, Key="big")
    assert head["ContentLength"] == len(whole)
    assert head["ETag"] == _mp_etag(parts)
    assert head["ContentType"] == "text/plain"
    assert head["Metadata"] == {"a": "b"}
    assert s3.get_object(Bucket=bucket, Key="big")["Body"].read() == whole
    # A range across the first part boundary.
    got = s3.get_object(Bucket=bucket, Key="big", Range=f"bytes={PART - 10}-{PART + 9}")
    assert got["Body"].read() == whole[PART - 10 : PART + 10]
    for n, expected in enumerate(parts, 1):
        got = s3.get_object(Bucket=bucket, Key="big", PartNumber=n)
        assert got["PartsCount"] == 3
        assert got["ContentLength"] == len(expected)
        assert got["Body"].read() == expected
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="big", PartNumber=4)
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 416
    listed = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert [(o["Key"], o["Size"], o["ETag"]) for o in listed] == [
        ("big", len(whole), _mp_etag(parts))
    ]


def test_single_small_part_is_allowed(s3: Any, bucket: str) -> None:
    result = _upload(s3, bucket, "one", [b"tiny"])
    assert result["ETag"] == _mp_etag([b"tiny"])
    assert s3.get_object(Bucket=bucket, Key="one")["Body"].read() == b"tiny"


def test_reuploading_a_part_replaces_it(s3: Any, bucket: str) -> None:
    uid = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=1, Body=b"old")
    r = s3.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=1, Body=b"new!")
    parts = s3.list_parts(Bucket=bucket, Key="k", UploadId=uid)["Parts"]
    assert [(p["PartNumber"], p["Size"], p["ETag"]) for p in parts] == [(1, 4, r["ETag"])]
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key="k",
        UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": r["ETag"]}]},
    )
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"new!"


def test_completion_rules(s3: Any, bucket: str) -> None:
    uid = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    e1 = s3.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=1, Body=b"a" * 100)["ETag"]
    e2 = s3.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=2, Body=b"b" * 100)["ETag"]

    def complete(parts: list[dict[str, Any]]) -> str:
        with pytest.raises(ClientError) as exc:
            s3.complete_multipart_upload(
                Bucket=bucket, Key="k", UploadId=uid, MultipartUpload={"Parts": parts}
            )
        return _code(exc)

    assert complete([{"PartNumber": 1, "ETag": e2}]) == "InvalidPart"
    assert complete([{"PartNumber": 3, "ETag": e1}]) == "InvalidPart"
    assert complete([{"PartNumber": 2, "ETag": e2}, {"PartNumber": 1, "ETag": e1}]) == (
        "InvalidPartOrder"
    )
    assert complete([{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]) == (
        "EntityTooSmall"
    )
    # Failed completions leave the upload usable.
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key="k",
        UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": 2, "ETag": e2}]},
    )
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"b" * 100
    with pytest.raises(ClientError) as exc:
        s3.list_parts(Bucket=bucket, Key="k", UploadId=uid)
    assert _code(exc) == "NoSuchUpload"


def test_part_number_bounds(s3: Any, bucket: str) -> None:
    uid = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    for bad in (0, 10001):
        with pytest.raises(ClientError) as exc:
            s3.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=bad, Body=b"x")
        assert _code(exc) == "InvalidArgument"
    r = s3.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=10000, Body=b"x")
    assert r["ETag"] == f'"{hashlib.md5(b"x").hexdigest()}"'
    s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=uid)


def test_abort_and_unknown_uploads(s3: Any, bucket: str) -> None:
    uid = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=1, Body=b"x")
    s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=uid)
    for call in (
        lambda: s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=uid),
        lambda: s3.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=1, Body=b"x"),
        lambda: s3.list_parts(Bucket=bucket, Key="k", UploadId="nope"),
        lambda: s3.complete_multipart_upload(
            Bucket=bucket,
            Key="k",
            UploadId=uid,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"x"'}]},
        ),
    ):
        with pytest.raises(ClientError) as exc:
            call()
        assert _code(exc) == "NoSuchUpload"
    # An upload id belongs to its key.
    other = s3.create_multipart_upload(Bucket=bucket, Key="other")["UploadId"]
    with pytest.raises(ClientError) as exc:
        s3.list_parts(Bucket=bucket, Key="k", UploadId=other)
    assert _code(exc) == "NoSuchUpload"
    s3.abort_multipart_upload(Bucket=bucket, Key="other", UploadId=other)
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)
    s3.delete_bucket(Bucket=bucket)


def test_list_parts_pagination(s3: Any, bucket: str) -> None:
    uid = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    for n in range(1, 8):
        s3.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=n, Body=b"p" * n)
    seen: list[int] = []
    marker = 0
    while True:
        page = s3.list_parts(
            Bucket=bucket, Key="k", UploadId=uid, MaxParts=3, PartNumberMarker=marker
        )
        seen += [p["PartNumber"] for p in page["Parts"]]
        assert page["Initiator"]["DisplayName"] == "root"
        if not page["IsTruncated"]:
            break
        marker = page["NextPartNumberMarker"]
    assert seen == list(range(1, 8))
    paginated = s3.get_paginator("list_parts").paginate(
        Bucket=bucket, Key="k", UploadId=uid, PaginationConfig={"PageSize": 2}
    )
    assert [p["Size"] for page in paginated for p in page["Parts"]] == list(range(1, 8))
    s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=uid)


def test_list_multipart_uploads_pagination_prefix_delimiter(s3: Any, bucket: str) -> None:
    keys = ["a/1", "a/2", "b", "c/x/1", "d"]
    ids = {}
    for key in keys:
        ids[key] = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    second_b = s3.create_multipart_upload(Bucket=bucket, Key="b")["UploadId"]
    everything = s3.list_multipart_uploads(Bucket=bucket)
    assert [u["Key"] for u in everything["Uploads"]] == ["a/1", "a/2", "b", "b", "c/x/1", "d"]
    assert {u["UploadId"] for u in everything["Uploads"] if u["Key"] == "b"} == {
        ids["b"],
        second_b,
    }
    pages = s3.get_paginator("list_multipart_uploads").paginate(
        Bucket=bucket, PaginationConfig={"PageSize": 2}
    )
    assert [u["UploadId"] for page in pages for u in page.get("Uploads", [])] == [
        u["UploadId"] for u in everything["Uploads"]
    ]
    delimited = s3.list_multipart_uploads(Bucket=bucket, Delimiter="/")
    assert [u["Key"] for u in delimited["Uploads"]] == ["b", "b", "d"]
    assert [p["Prefix"] for p in delimited["CommonPrefixes"]] == ["a/", "c/"]
    prefixed = s3.list_multipart_uploads(Bucket=bucket, Prefix="c/", Delimiter="/")
    assert [p["Prefix"] for p in prefixed["CommonPrefixes"]] == ["c/x/"]
    assert "Uploads" not in prefixed
    only_a = s3.list_multipart_uploads(Bucket=bucket, Prefix="a/")
    assert [u["Key"] for u in only_a["Uploads"]] == ["a/1", "a/2"]


def test_composite_crc32_checksum(s3: Any, bucket: str) -> None:
    parts = [_data(PART, 7), _data(1000, 8)]
    up = s3.create_multipart_upload(Bucket=bucket, Key="k", ChecksumAlgorithm="CRC32")
    assert up["ChecksumAlgorithm"] == "CRC32"
    assert up.get("ChecksumType") == "COMPOSITE"
    uid = up["UploadId"]
    done = []
    for i, body in enumerate(parts, 1):
        r = s3.upload_part(
            Bucket=bucket, Key="k", UploadId=uid, PartNumber=i, Body=body, ChecksumAlgorithm="CRC32"
        )
        assert r["ChecksumCRC32"] == _crc32_b64(body)
        done.append({"PartNumber": i, "ETag": r["ETag"], "ChecksumCRC32": r["ChecksumCRC32"]})
    listed = s3.list_parts(Bucket=bucket, Key="k", UploadId=uid)
    assert [p["ChecksumCRC32"] for p in listed["Parts"]] == [_crc32_b64(p) for p in parts]
    result = s3.complete_multipart_upload(
        Bucket=bucket, Key="k", UploadId=uid, MultipartUpload={"Parts": done}
    )
    raw = b"".join(zlib.crc32(p).to_bytes(4, "big") for p in parts)
    expected = f"{_crc32_b64(raw)}-2"
    assert result["ChecksumCRC32"] == expected
    head = s3.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == expected
    # One part asked for: that part's own checksum (what a client reading by part checks).
    for number, body in enumerate(parts, 1):
        got = s3.get_object(Bucket=bucket, Key="k", PartNumber=number, ChecksumMode="ENABLED")
        assert got["Body"].read() == body
        assert got["ChecksumCRC32"] == _crc32_b64(body) and got["ChecksumType"] == "COMPOSITE"
        one = s3.head_object(Bucket=bucket, Key="k", PartNumber=number, ChecksumMode="ENABLED")
        assert one["ChecksumCRC32"] == _crc32_b64(body)
    # Without the mode (boto3 asks for it unless told not to), or for a range no checksum
    # describes, none.
    quiet = make_client(s3.meta.endpoint_url, response_checksum_validation="when_required")
    assert "ChecksumCRC32" not in quiet.get_object(Bucket=bucket, Key="k", PartNumber=1)
    ranged = s3.get_object(Bucket=bucket, Key="k", Range="bytes=0-9", ChecksumMode="ENABLED")
    assert "ChecksumCRC32" not in ranged


def test_full_object_crc32_checksum(s3: Any, bucket: str) -> None:
    parts = [_data(PART, 9), _data(PART, 10), _data(77, 11)]
    whole = b"".join(parts)
    up = s3.create_multipart_upload(
        Bucket=bucket, Key="k", ChecksumAlgorithm="CRC32", ChecksumType="FULL_OBJECT"
    )
    assert up["ChecksumType"] == "FULL_OBJECT"
    uid = up["UploadId"]
    done = []
    for i, body in enumerate(parts, 1):
        r = s3.upload_part(
            Bucket=bucket, Key="k", UploadId=uid, PartNumber=i, Body=body, ChecksumAlgorithm="CRC32"
        )
        done.append({"PartNumber": i, "ETag": r["ETag"], "ChecksumCRC32": r["ChecksumCRC32"]})
    result = s3.complete_multipart_upload(
        Bucket=bucket,
        Key="k",
        UploadId=uid,
        MultipartUpload={"Parts": done},
        ChecksumCRC32=_crc32_b64(whole),
        ChecksumType="FULL_OBJECT",
    )
    assert result["ChecksumCRC32"] == _crc32_b64(whole)
    assert result["ChecksumType"] == "FULL_OBJECT"
    got = s3.get_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert got["ChecksumCRC32"] == _crc32_b64(whole)
    assert got["Body"].read() == whole
    # A FULL_OBJECT upload of several parts keeps no checksum a part's bytes can be checked by.
    part = s3.get_object(Bucket=bucket, Key="k", PartNumber=2, ChecksumMode="ENABLED")
    assert "ChecksumCRC32" not in part and part["Body"].read() == parts[1]


def test_the_object_checksum_sent_with_the_completion_is_checked(s3: Any, bucket: str) -> None:
    """x-amz-checksum-<algorithm> and x-amz-checksum-type on CompleteMultipartUpload check what
    the upload became; a completion that fails one leaves the upload to complete again."""
    parts = [_data(PART, 12), _data(500, 13)]
    raw = b"".join(zlib.crc32(p).to_bytes(4, "big") for p in parts)
    composite = _crc32_b64(raw)
    up = s3.create_multipart_upload(Bucket=bucket, Key="k", ChecksumAlgorithm="CRC32")
    uid = up["UploadId"]
    done = []
    for i, body in enumerate(parts, 1):
        r = s3.upload_part(
            Bucket=bucket, Key="k", UploadId=uid, PartNumber=i, Body=body, ChecksumAlgorithm="CRC32"
        )
        done.append({"PartNumber": i, "ETag": r["ETag"], "ChecksumCRC32": r["ChecksumCRC32"]})
    refused = [
        ({"ChecksumCRC32": _crc32_b64(b"other")}, "BadDigest"),
        ({"ChecksumCRC32": "bad"}, "BadDigest"),
        # The whole object's CRC is the FULL_OBJECT value, not this COMPOSITE upload's.
        ({"ChecksumCRC32": _crc32_b64(b"".join(parts))}, "BadDigest"),
        (
            {"ChecksumSHA256": base64.b64encode(hashlib.sha256(b"x").digest()).decode()},
            "InvalidRequest",
        ),
        ({"ChecksumType": "FULL_OBJECT"}, "InvalidRequest"),
    ]
    for extra, code in refused:
        with pytest.raises(ClientError) as exc:
            s3.complete_multipart_upload(
                Bucket=bucket, Key="k", UploadId=uid, MultipartUpload={"Parts": done}, **extra
            )
        assert _code(exc) == code, extra
    assert len(s3.list_parts(Bucket=bucket, Key="k", UploadId=uid)["Parts"]) == 2
    # The checksum of the parts' checksums, with or without its -N, is the one.
    result = s3.complete_multipart_upload(
        Bucket=bucket,
        Key="k",
        UploadId=uid,
        MultipartUpload={"Parts": done},
        ChecksumCRC32=composite,
        ChecksumType="COMPOSITE",
    )
    assert result["ChecksumCRC32"] == f"{composite}-2"
    # An upload made without a checksum has none to compare with.
    uid = s3.create_multipart_upload(Bucket=bucket, Key="plain")["UploadId"]
    plain = make_client(s3.meta.endpoint_url, request_checksum_calculation="when_required")
    r = plain.upload_part(Bucket=bucket, Key="plain", UploadId=uid, PartNumber=1, Body=b"abc")
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(
            Bucket=bucket,
            Key="plain",
            UploadId=uid,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": r["ETag"]}]},
            ChecksumCRC32=_crc32_b64(b"abc"),
        )
    assert _code(exc) == "InvalidRequest"
    s3.abort_multipart_upload(Bucket=bucket, Key="plain", UploadId=uid)


def test_part_checksum_mismatch_and_wrong_algorithm(s3: Any, bucket: str) -> None:
    uid = s3.create_multipart_upload(Bucket=bucket, Key="k", ChecksumAlgorithm="CRC32")["UploadId"]
    with pytest.raises(ClientError) as exc:
        s3.upload_part(
            Bucket=bucket,
            Key="k",
            UploadId=uid,
            PartNumber=1,
            Body=b"abc",
            ChecksumCRC32=_crc32_b64(b"abd"),
        )
    assert _code(exc) == "BadDigest"
    with pytest.raises(ClientError) as exc:
        s3.upload_part(
            Bucket=bucket,
            Key="k",
            UploadId=uid,
            PartNumber=1,
            Body=b"abc",
            ChecksumAlgorithm="SHA256",
        )
    assert _code(exc) == "InvalidRequest"
    # A part sent without a checksum still gets the upload's one, computed here.
    plain = make_client(s3.meta.endpoint_url, request_checksum_calculation="when_required")
    r = plain.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=1, Body=b"abc")
    assert r["ChecksumCRC32"] == _crc32_b64(b"abc")
    s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=uid)


def test_invalid_checksum_type_combinations(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.create_multipart_upload(
            Bucket=bucket, Key="k", ChecksumAlgorithm="SHA256", ChecksumType="FULL_OBJECT"
        )
    assert _code(exc) == "InvalidRequest"
    up = s3.create_multipart_upload(Bucket=bucket, Key="k", ChecksumAlgorithm="CRC64NVME")
    assert up["ChecksumType"] == "FULL_OBJECT"
    s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=up["UploadId"])


def test_upload_part_copy_with_range(s3: Any, bucket: str) -> None:
    src = _data(PART + 500, 12)
    s3.put_object(Bucket=bucket, Key="src", Body=src)
    uid = s3.create_multipart_upload(Bucket=bucket, Key="dst")["UploadId"]
    c1 = s3.upload_part_copy(
        Bucket=bucket,
        Key="dst",
        UploadId=uid,
        PartNumber=1,
        CopySource={"Bucket": bucket, "Key": "src"},
        CopySourceRange=f"bytes=0-{PART - 1}",
    )
    c2 = s3.upload_part_copy(
        Bucket=bucket,
        Key="dst",
        UploadId=uid,
        PartNumber=2,
        CopySource=f"{bucket}/src",
        CopySourceRange=f"bytes={PART}-{PART + 499}",
    )
    assert c1["CopyPartResult"]["ETag"] == f'"{hashlib.md5(src[:PART]).hexdigest()}"'
    parts = [
        {"PartNumber": 1, "ETag": c1["CopyPartResult"]["ETag"]},
        {"PartNumber": 2, "ETag": c2["CopyPartResult"]["ETag"]},
    ]
    s3.complete_multipart_upload(
        Bucket=bucket, Key="dst", UploadId=uid, MultipartUpload={"Parts": parts}
    )
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == src


def test_upload_part_copy_rules(s3: Any, bob_s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"0123456789")
    uid = s3.create_multipart_upload(Bucket=bucket, Key="dst")["UploadId"]

    def copy(client: Any = s3, **kw: Any) -> str:
        with pytest.raises(ClientError) as exc:
            client.upload_part_copy(
                Bucket=bucket,
                Key="dst",
                UploadId=uid,
                PartNumber=1,
                CopySource=f"{bucket}/src",
                **kw,
            )
        return _code(exc)

    assert copy(CopySourceRange="bytes=5-10") == "InvalidRange"
    assert copy(CopySourceRange="bytes=5-") == "InvalidArgument"
    assert copy(CopySourceIfMatch='"nope"') == "PreconditionFailed"
    etag = s3.head_object(Bucket=bucket, Key="src")["ETag"]
    assert copy(CopySourceIfNoneMatch=etag) == "PreconditionFailed"
    r = s3.upload_part_copy(
        Bucket=bucket,
        Key="dst",
        UploadId=uid,
        PartNumber=1,
        CopySource=f"{bucket}/src",
        CopySourceIfMatch=etag,
        CopySourceRange="bytes=2-4",
    )
    assert r["CopyPartResult"]["ETag"] == f'"{hashlib.md5(b"234").hexdigest()}"'
    # bob may write into a bucket of his own but not read root's private source.
    bob_bucket = f"{bucket}-bob"
    bob_s3.create_bucket(Bucket=bob_bucket)
    bob_uid = bob_s3.create_multipart_upload(Bucket=bob_bucket, Key="k")["UploadId"]
    with pytest.raises(ClientError) as exc:
        bob_s3.upload_part_copy(
            Bucket=bob_bucket, Key="k", UploadId=bob_uid, PartNumber=1, CopySource=f"{bucket}/src"
        )
    assert _code(exc) == "AccessDenied"
    bob_s3.abort_multipart_upload(Bucket=bob_bucket, Key="k", UploadId=bob_uid)
    bob_s3.delete_bucket(Bucket=bob_bucket)
    s3.abort_multipart_upload(Bucket=bucket, Key="dst", UploadId=uid)


def test_bob_cannot_touch_alices_uploads(s3: Any, bob_s3: Any, bucket: str) -> None:
    uid = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    for call in (
        lambda: bob_s3.create_multipart_upload(Bucket=bucket, Key="k"),
        lambda: bob_s3.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=1, Body=b"x"),
        lambda: bob_s3.list_parts(Bucket=bucket, Key="k", UploadId=uid),
        lambda: bob_s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=uid),
        lambda: bob_s3.list_multipart_uploads(Bucket=bucket),
    ):
        with pytest.raises(ClientError) as exc:
            call()
        assert _code(exc) == "AccessDenied"
    s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=uid)


def test_canned_acl_on_create_applies_to_the_object(
    s3: Any, server: LiveServer, bucket: str
) -> None:
    _upload(s3, bucket, "pub", [b"public multipart"], ACL="public-read")
    r = requests.get(f"{server.endpoint}/{bucket}/pub", timeout=10)
    assert r.status_code == 200
    assert r.content == b"public multipart"


def test_overwriting_multipart_object(s3: Any, bucket: str) -> None:
    _upload(s3, bucket, "k", [_data(PART, 20), b"end"])
    s3.put_object(Bucket=bucket, Key="k", Body=b"plain")
    head = s3.head_object(Bucket=bucket, Key="k")
    assert "PartsCount" not in head
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"plain"
    _upload(s3, bucket, "k", [b"again"])
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"again"
    s3.delete_object(Bucket=bucket, Key="k")
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)


def _blob_count(srv: LiveServer) -> int:
    return sum(1 for p in (srv.data_dir / "blobs").glob("*/*/*") if p.is_file())


def test_part_blobs_are_freed_and_abandoned_uploads_expire(tmp_path: Path) -> None:
    env = {
        "S3TORRENT_STORAGE__ABANDONED_UPLOAD_DAYS": str(2 / 86400),  # two seconds
        "S3TORRENT_STORAGE__UPLOAD_CLEANUP_INTERVAL": "0.5",
    }
    srv = start_server(tmp_path, env=env)
    try:
        s3 = make_client(srv.endpoint)
        s3.create_bucket(Bucket="mp-cleanup")
        _upload(s3, "mp-cleanup", "done", [_data(PART, 1), b"x"])
        assert _blob_count(srv) == 1  # the object's blob; both part blobs are gone
        uid = s3.create_multipart_upload(Bucket="mp-cleanup", Key="left")["UploadId"]
        s3.upload_part(
            Bucket="mp-cleanup", Key="left", UploadId=uid, PartNumber=1, Body=b"abandoned"
        )
        assert _blob_count(srv) == 2
        deadline = time.monotonic() + 15
        while s3.list_multipart_uploads(Bucket="mp-cleanup").get("Uploads"):
            assert time.monotonic() < deadline, "abandoned upload was not cleaned up"
            time.sleep(0.3)
        assert _blob_count(srv) == 1
        with pytest.raises(ClientError) as exc:
            s3.list_parts(Bucket="mp-cleanup", Key="left", UploadId=uid)
        assert _code(exc) == "NoSuchUpload"
    finally:
        srv.stop()


def test_a_bucket_with_more_uploads_than_one_step_holds_is_deleted_whole(
    tmp_path: Path,
) -> None:
    """DeleteBucket drops a bucket's uploads in steps (`DELETE_BUCKET_BATCH` of each kind of
    row, each step its own transaction, so no one transaction holds every other write
    back): past one step's worth, every upload still goes, and its parts' files."""
    srv = start_server(tmp_path)
    try:
        s3 = make_client(srv.endpoint)
        s3.create_bucket(Bucket="mp-many")
        count = DELETE_BUCKET_BATCH + 5

        def create(i: int) -> str:
            return str(s3.create_multipart_upload(Bucket="mp-many", Key=f"k{i:05d}")["UploadId"])

        with ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(create, range(count)))
        with_parts = (ids[0], ids[-1])
        for uid, key in zip(with_parts, ("k00000", f"k{count - 1:05d}"), strict=True):
            s3.upload_part(Bucket="mp-many", Key=key, UploadId=uid, PartNumber=1, Body=b"p")
        assert _blob_count(srv) == 2
        listed = s3.list_multipart_uploads(Bucket="mp-many")
        assert listed["IsTruncated"] and len(listed["Uploads"]) == 1000
        s3.delete_bucket(Bucket="mp-many")
        assert _blob_count(srv) == 0
        s3.create_bucket(Bucket="mp-many")
        assert "Uploads" not in s3.list_multipart_uploads(Bucket="mp-many")
        for uid, key in zip(with_parts, ("k00000", f"k{count - 1:05d}"), strict=True):
            with pytest.raises(ClientError) as exc:
                s3.list_parts(Bucket="mp-many", Key=key, UploadId=uid)
            assert _code(exc) == "NoSuchUpload"
    finally:
        srv.stop()


def test_deleting_a_bucket_takes_its_uploads_in_progress(tmp_path: Path) -> None:
    """S3 deletes a bucket whose only content is uploads in progress (an interrupted `aws s3
    cp`, say) and the uploads with it: `aws s3 rb --force` and Terraform's force_destroy
    count on it. A bucket with objects stays, uploads and all."""
    srv = start_server(tmp_path)
    try:
        s3 = make_client(srv.endpoint)
        s3.create_bucket(Bucket="mp-gone")
        uid = s3.create_multipart_upload(Bucket="mp-gone", Key="left")["UploadId"]
        for n in (1, 2):
            s3.upload_part(Bucket="mp-gone", Key="left", UploadId=uid, PartNumber=n, Body=b"p")
        done = _upload(s3, "mp-gone", "kept", [b"x"])
        # Objects keep the bucket, and its uploads stay.
        with pytest.raises(ClientError) as exc:
            s3.delete_bucket(Bucket="mp-gone")
        assert _code(exc) == "BucketNotEmpty"
        assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket="mp-gone")["Uploads"]] == [
            uid
        ]
        assert _blob_count(srv) == 3
        s3.delete_object(Bucket="mp-gone", Key="kept")
        assert done["Key"] == "kept"
        deadline = time.monotonic() + 15  # a deleted object's file goes after a grace delay
        while _blob_count(srv) != 2:
            assert time.monotonic() < deadline, "the deleted object's file stayed"
            time.sleep(0.2)
        # Another user may not delete it, and the uploads stay.
        other = add_user(srv, "other")
        with pytest.raises(ClientError) as exc:
            make_client(srv.endpoint, other.access_key, other.secret_key).delete_bucket(
                Bucket="mp-gone"
            )
        assert _code(exc) == "AccessDenied"
        assert len(s3.list_multipart_uploads(Bucket="mp-gone")["Uploads"]) == 1
        # The AWS CLI's rb --force: it empties the bucket of objects, then deletes it.
        res = aws_cli(srv.endpoint, "s3", "rb", "--force", "s3://mp-gone")
        assert res.returncode == 0, res.stderr
        assert _blob_count(srv) == 0  # both parts' files went with it
        with pytest.raises(ClientError) as exc:
            s3.list_multipart_uploads(Bucket="mp-gone")
        assert _code(exc) == "NoSuchBucket"
        # A bucket made again under the name has none of it.
        s3.create_bucket(Bucket="mp-gone")
        assert "Uploads" not in s3.list_multipart_uploads(Bucket="mp-gone")
        for call in (
            lambda: s3.list_parts(Bucket="mp-gone", Key="left", UploadId=uid),
            lambda: s3.upload_part(
                Bucket="mp-gone", Key="left", UploadId=uid, PartNumber=3, Body=b"late"
            ),
            lambda: s3.complete_multipart_upload(
                Bucket="mp-gone",
                Key="left",
                UploadId=uid,
                MultipartUpload={
                    "Parts": [{"PartNumber": 1, "ETag": f'"{hashlib.md5(b"p").hexdigest()}"'}]
                },
            ),
        ):
            with pytest.raises(ClientError) as exc:
                call()
            assert _code(exc) == "NoSuchUpload"
        assert "Contents" not in s3.list_objects_v2(Bucket="mp-gone")
        assert _blob_count(srv) == 0
    finally:
        srv.stop()


# ---- the AWS CLI ----


def _aws(server: LiveServer, *args: str) -> subprocess.CompletedProcess[str]:
    return aws_cli(server.endpoint, *args, timeout=600)


def _cli_round_trip(server: LiveServer, s3: Any, bucket: str, tmp_path: Path, size: int) -> None:
    src = tmp_path / "upload.bin"
    with src.open("wb") as fh:
        for i in range(0, size, 8 * MiB):
            fh.write(_data(min(8 * MiB, size - i), i))
    res = _aws(server, "s3", "cp", str(src), f"s3://{bucket}/cli/file.bin")
    assert res.returncode == 0, res.stderr
    head = s3.head_object(Bucket=bucket, Key="cli/file.bin", ChecksumMode="ENABLED")
    assert head["ContentLength"] == size
    parts = -(-size // (8 * MiB))  # 8 MiB parts by default
    assert head["ETag"].endswith(f'-{parts}"')
    # The CLI's default integrity protection: CRC32 per part, a COMPOSITE object checksum.
    assert head["ChecksumCRC32"].endswith(f"-{parts}")
    assert head["ChecksumType"] == "COMPOSITE"
    out = tmp_path / "download.bin"
    res = _aws(server, "s3", "cp", f"s3://{bucket}/cli/file.bin", str(out))
    assert res.returncode == 0, res.stderr
    h_src, h_out = hashlib.sha256(), hashlib.sha256()
    for path, h in ((src, h_src), (out, h_out)):
        with path.open("rb") as fh:
            while chunk := fh.read(8 * MiB):
                h.update(chunk)
    assert h_src.digest() == h_out.digest()


def test_aws_cli_multipart_copy_above_threshold(
    server: LiveServer, s3: Any, bucket: str, tmp_path: Path
) -> None:
    _cli_round_trip(server, s3, bucket, tmp_path, 20 * MiB + 123)


def test_aws_cli_large_multipart_upload(
    server: LiveServer, s3: Any, bucket: str, tmp_path: Path
) -> None:
    """256 MiB by default (~25 s here); S3TORRENT_TEST_LARGE_MIB=1024 for 1 GiB (~100 s)."""
    size = int(os.environ.get("S3TORRENT_TEST_LARGE_MIB", "256")) * MiB
    _cli_round_trip(server, s3, bucket, tmp_path, size)


def test_repeated_completion_with_the_same_parts_answers_the_same(s3: Any, bucket: str) -> None:
    """An SDK that lost the first answer retries: it must get that answer, not NoSuchUpload."""
    up = s3.create_multipart_upload(Bucket=bucket, Key="retry")["UploadId"]
    etags = [
        s3.upload_part(Bucket=bucket, Key="retry", UploadId=up, PartNumber=n, Body=body)["ETag"]
        for n, body in ((1, b"a" * 5 * 1024 * 1024), (2, b"b"))
    ]
    parts = {"Parts": [{"PartNumber": n + 1, "ETag": e} for n, e in enumerate(etags)]}
    first = s3.complete_multipart_upload(
        Bucket=bucket, Key="retry", UploadId=up, MultipartUpload=parts
    )
    again = s3.complete_multipart_upload(
        Bucket=bucket, Key="retry", UploadId=up, MultipartUpload=parts
    )
    assert again["ETag"] == first["ETag"] and again["Key"] == "retry"
    assert "VersionId" not in first and "VersionId" not in again  # never versioned
    assert s3.head_object(Bucket=bucket, Key="retry")["ETag"] == first["ETag"]
    # Another part list is not a retry of that completion.
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(
            Bucket=bucket,
            Key="retry",
            UploadId=up,
            MultipartUpload={"Parts": parts["Parts"][:1]},
        )
    assert exc.value.response["Error"]["Code"] == "NoSuchUpload"
    # Nor is the same upload id on another key.
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(Bucket=bucket, Key="other", UploadId=up, MultipartUpload=parts)
    assert exc.value.response["Error"]["Code"] == "NoSuchUpload"


def test_repeated_completion_in_a_versioned_bucket_answers_the_same_version_id(
    s3: Any, bucket: str
) -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    up = s3.create_multipart_upload(Bucket=bucket, Key="vr")["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key="vr", UploadId=up, PartNumber=1, Body=b"x")["ETag"]
    parts = {"Parts": [{"PartNumber": 1, "ETag": etag}]}
    first = s3.complete_multipart_upload(
        Bucket=bucket, Key="vr", UploadId=up, MultipartUpload=parts
    )
    assert first["VersionId"] not in ("", "null")
    # A newer version meanwhile changes nothing: the retry answers the first completion.
    newer = s3.put_object(Bucket=bucket, Key="vr", Body=b"newer")["VersionId"]
    again = s3.complete_multipart_upload(
        Bucket=bucket, Key="vr", UploadId=up, MultipartUpload=parts
    )
    assert again["VersionId"] == first["VersionId"] != newer
    assert again["ETag"] == first["ETag"]
    got = s3.get_object(Bucket=bucket, Key="vr", VersionId=first["VersionId"])
    assert got["Body"].read() == b"x"


def test_expected_object_size_is_checked_at_completion(s3: Any, bucket: str) -> None:
    """x-amz-mp-object-size (boto3's MpuObjectSize): another size than the parts' is 400
    InvalidRequest and the upload stays, to be completed with the right one."""
    uid = s3.create_multipart_upload(Bucket=bucket, Key="sized")["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key="sized", UploadId=uid, PartNumber=1, Body=b"abc")[
        "ETag"
    ]
    done = {"Parts": [{"PartNumber": 1, "ETag": etag}]}
    for wrong in (2, 4):
        with pytest.raises(ClientError) as exc:
            s3.complete_multipart_upload(
                Bucket=bucket, Key="sized", UploadId=uid, MultipartUpload=done, MpuObjectSize=wrong
            )
        assert _code(exc) == "InvalidRequest"
        assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="sized")
    s3.complete_multipart_upload(
        Bucket=bucket, Key="sized", UploadId=uid, MultipartUpload=done, MpuObjectSize=3
    )
    assert s3.get_object(Bucket=bucket, Key="sized")["Body"].read() == b"abc"
