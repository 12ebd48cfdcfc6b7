"""S3's default checksum: an object written without one gets its full CRC64NVME, computed
and stored by the server (as Amazon S3 does since December 2024), whatever wrote it: a
presigned PUT, s3cmd, a POST form, a copy, or a multipart upload created without an
algorithm. A checksum the client names still wins, and a wrong one is still refused."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests
from awscrt import checksums as crt
from botocore.exceptions import ClientError

from tests.conftest import LiveServer, aws_cli, make_client, s3cmd_command

MiB = 1024 * 1024


def crc64nvme(data: bytes) -> str:
    return base64.b64encode(crt.crc64nvme(data).to_bytes(8, "big")).decode()


@pytest.fixture(scope="module")
def plain(server: LiveServer) -> Any:
    """boto3 that sends a checksum only where S3 requires one, as clients before 2025 did."""
    return make_client(
        server.endpoint,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )


def _stored(s3: Any, bucket: str, key: str) -> tuple[str | None, str | None]:
    head = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    return head.get("ChecksumCRC64NVME"), head.get("ChecksumType")


def test_a_presigned_put_without_a_checksum_gets_the_objects_crc64nvme(
    s3: Any, bucket: str
) -> None:
    data = b"no checksum sent " * 1000
    url = s3.generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": "plain.bin"}, ExpiresIn=300
    )
    r = requests.put(url, data=data, timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["x-amz-checksum-crc64nvme"] == crc64nvme(data)
    assert r.headers["x-amz-checksum-type"] == "FULL_OBJECT"
    assert _stored(s3, bucket, "plain.bin") == (crc64nvme(data), "FULL_OBJECT")
    attrs = s3.get_object_attributes(Bucket=bucket, Key="plain.bin", ObjectAttributes=["Checksum"])
    assert attrs["Checksum"] == {
        "ChecksumCRC64NVME": crc64nvme(data),
        "ChecksumType": "FULL_OBJECT",
    }
    listed = s3.list_objects_v2(Bucket=bucket)["Contents"][0]
    assert listed["ChecksumAlgorithm"] == ["CRC64NVME"]
    # A GET asking for it gets it, and boto3 checks the body against it.
    got = s3.get_object(Bucket=bucket, Key="plain.bin", ChecksumMode="ENABLED")
    assert got["ChecksumCRC64NVME"] == crc64nvme(data)
    assert got["Body"].read() == data


def test_a_large_streamed_put_gets_it_too(plain: Any, s3: Any, bucket: str) -> None:
    # Larger than an object kept in its metadata row: written to a blob, hashed as it streams.
    data = bytes(range(256)) * (3 * MiB // 256) + b"tail"
    plain.put_object(Bucket=bucket, Key="big.bin", Body=data)
    assert _stored(s3, bucket, "big.bin") == (crc64nvme(data), "FULL_OBJECT")


def test_a_checksum_the_client_names_wins_and_a_wrong_one_is_refused(s3: Any, bucket: str) -> None:
    data = b"sha-256 asked for"
    s3.put_object(Bucket=bucket, Key="sha.bin", Body=data, ChecksumAlgorithm="SHA256")
    head = s3.head_object(Bucket=bucket, Key="sha.bin", ChecksumMode="ENABLED")
    assert "ChecksumSHA256" in head
    assert "ChecksumCRC64NVME" not in head
    with pytest.raises(ClientError) as err:
        s3.put_object(
            Bucket=bucket, Key="bad.bin", Body=data, ChecksumCRC64NVME=crc64nvme(b"other bytes")
        )
    assert err.value.response["Error"]["Code"] == "BadDigest"
    with pytest.raises(ClientError) as missing:
        s3.head_object(Bucket=bucket, Key="bad.bin")
    assert missing.value.response["Error"]["Code"] == "404"


def test_s3cmd_uploads_get_it(server: LiveServer, s3: Any, bucket: str, tmp_path: Path) -> None:
    data = b"s3cmd writes no x-amz-checksum header\n" * 200
    src = tmp_path / "file.txt"
    src.write_bytes(data)
    base = s3cmd_command(server.endpoint, tmp_path)
    put = subprocess.run(
        [*base, "put", str(src), f"s3://{bucket}/cmd.txt"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert put.returncode == 0, put.stderr
    assert _stored(s3, bucket, "cmd.txt") == (crc64nvme(data), "FULL_OBJECT")


def test_the_aws_cli_sees_it(
    server: LiveServer, s3: Any, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As a CLI older than 2025 uploads: no checksum of its own.
    monkeypatch.setenv("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
    data = b"aws s3 cp, no checksum sent\n" * 500
    src = tmp_path / "cli.txt"
    src.write_bytes(data)
    cp = aws_cli(server.endpoint, "s3", "cp", str(src), f"s3://{bucket}/cli.txt")
    assert cp.returncode == 0, cp.stderr
    head = aws_cli(
        server.endpoint,
        "s3api",
        "head-object",
        "--bucket",
        bucket,
        "--key",
        "cli.txt",
        "--checksum-mode",
        "ENABLED",
    )
    assert head.returncode == 0, head.stderr
    assert f'"ChecksumCRC64NVME": "{crc64nvme(data)}"' in head.stdout
    assert '"ChecksumType": "FULL_OBJECT"' in head.stdout


def test_a_form_upload_gets_it(server: LiveServer, s3: Any, bucket: str) -> None:
    data = b"from a browser form " * 300
    presigned = s3.generate_presigned_post(bucket, "form.bin", ExpiresIn=300)
    r = requests.post(
        presigned["url"], data=presigned["fields"], files={"file": ("f.bin", data)}, timeout=30
    )
    assert r.status_code == 204, r.text
    assert r.headers["x-amz-checksum-crc64nvme"] == crc64nvme(data)
    assert _stored(s3, bucket, "form.bin") == (crc64nvme(data), "FULL_OBJECT")


def test_a_copy_keeps_the_sources_algorithm_or_gets_the_default(
    plain: Any, s3: Any, bucket: str
) -> None:
    data = b"copied " * 2000
    s3.put_object(Bucket=bucket, Key="crc32.bin", Body=data, ChecksumAlgorithm="CRC32")
    kept = plain.copy_object(
        Bucket=bucket, Key="crc32-copy.bin", CopySource={"Bucket": bucket, "Key": "crc32.bin"}
    )["CopyObjectResult"]
    assert "ChecksumCRC32" in kept and "ChecksumCRC64NVME" not in kept
    plain.put_object(Bucket=bucket, Key="src.bin", Body=data)
    copied = plain.copy_object(
        Bucket=bucket, Key="copy.bin", CopySource={"Bucket": bucket, "Key": "src.bin"}
    )["CopyObjectResult"]
    assert copied["ChecksumCRC64NVME"] == crc64nvme(data)
    assert copied["ChecksumType"] == "FULL_OBJECT"
    assert _stored(s3, bucket, "copy.bin") == (crc64nvme(data), "FULL_OBJECT")


def test_a_multipart_upload_created_without_an_algorithm_gets_the_full_objects_crc(
    plain: Any, s3: Any, bucket: str
) -> None:
    first = bytes(range(256)) * (5 * MiB // 256)
    second = bytes(reversed(range(256))) * (5 * MiB // 256)  # sent with a CRC32 of its own
    third_source = b"0123456789" * 20000
    plain.put_object(Bucket=bucket, Key="part-source.bin", Body=third_source)
    key = "mpu.bin"
    upload = plain.create_multipart_upload(Bucket=bucket, Key=key)
    assert "ChecksumAlgorithm" not in upload
    uid = upload["UploadId"]
    p1 = plain.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=1, Body=first)
    # A part sent with another algorithm is checked against it, and still kept by its CRC64NVME.
    p2 = s3.upload_part(
        Bucket=bucket, Key=key, UploadId=uid, PartNumber=2, Body=second, ChecksumAlgorithm="CRC32"
    )
    p3 = plain.upload_part_copy(
        Bucket=bucket,
        Key=key,
        UploadId=uid,
        PartNumber=3,
        CopySource={"Bucket": bucket, "Key": "part-source.bin"},
        CopySourceRange="bytes=1000-50999",
    )["CopyPartResult"]
    # The upload itself names no algorithm: its parts are listed as uploaded.
    listed = plain.list_parts(Bucket=bucket, Key=key, UploadId=uid)
    assert all("ChecksumCRC64NVME" not in p for p in listed["Parts"])
    done = plain.complete_multipart_upload(
        Bucket=bucket,
        Key=key,
        UploadId=uid,
        MultipartUpload={
            "Parts": [
                {"PartNumber": 1, "ETag": p1["ETag"]},
                {"PartNumber": 2, "ETag": p2["ETag"]},
                {"PartNumber": 3, "ETag": p3["ETag"]},
            ]
        },
    )
    whole = first + second + third_source[1000:51000]
    assert done["ChecksumCRC64NVME"] == crc64nvme(whole)
    assert done["ChecksumType"] == "FULL_OBJECT"
    assert _stored(s3, bucket, key) == (crc64nvme(whole), "FULL_OBJECT")
    attrs = s3.get_object_attributes(
        Bucket=bucket, Key=key, ObjectAttributes=["Checksum", "ObjectParts"]
    )
    assert attrs["Checksum"]["ChecksumCRC64NVME"] == crc64nvme(whole)
    parts = attrs["ObjectParts"]["Parts"]
    assert [p["ChecksumCRC64NVME"] for p in parts] == [
        crc64nvme(first),
        crc64nvme(second),
        crc64nvme(third_source[1000:51000]),
    ]
    got = s3.get_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    assert got["Body"].read() == whole


def test_a_completion_naming_a_checksum_the_upload_did_not_is_still_refused(
    plain: Any, bucket: str
) -> None:
    # The default is the server's: a completion cannot claim an algorithm the upload lacks.
    data = b"one small part"
    uid = plain.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    p1 = plain.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=1, Body=data)
    with pytest.raises(ClientError) as err:
        plain.complete_multipart_upload(
            Bucket=bucket,
            Key="k",
            UploadId=uid,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": p1["ETag"]}]},
            ChecksumCRC64NVME=crc64nvme(data),
            ChecksumType="FULL_OBJECT",
        )
    assert err.value.response["Error"]["Code"] == "InvalidRequest"
