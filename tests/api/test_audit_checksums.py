"""Checksums against S3's answers, found in the 2026-12 audit."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from botocore.exceptions import ClientError


@pytest.mark.parametrize(
    ("create", "message"),
    [
        (
            {"ChecksumAlgorithm": "SHA256", "ChecksumType": "FULL_OBJECT"},
            "The FULL_OBJECT checksum type cannot be used with the sha256 checksum algorithm.",
        ),
        (
            {"ChecksumAlgorithm": "SHA1", "ChecksumType": "FULL_OBJECT"},
            "The FULL_OBJECT checksum type cannot be used with the sha1 checksum algorithm.",
        ),
        (
            {"ChecksumAlgorithm": "CRC64NVME", "ChecksumType": "COMPOSITE"},
            "The COMPOSITE checksum type cannot be used with the crc64nvme checksum algorithm.",
        ),
        (
            {"ChecksumType": "FULL_OBJECT"},
            "The x-amz-checksum-type header can only be used with the x-amz-checksum-algorithm "
            "header.",
        ),
    ],
)
def test_create_multipart_upload_refuses_a_checksum_type_in_s3s_words(
    s3: Any, bucket: str, create: dict[str, str], message: str
) -> None:
    """The combinations S3 refuses (SHA only COMPOSITE, CRC64NVME only FULL_OBJECT, a type
    without an algorithm) are 400 InvalidRequest with S3's own messages (as captured from
    S3 on the wire); they had messages of this server's wording."""
    with pytest.raises(ClientError) as exc:
        s3.create_multipart_upload(Bucket=bucket, Key="k", **create)
    error = exc.value.response["Error"]
    assert (error["Code"], error["Message"]) == ("InvalidRequest", message)


def test_an_unknown_checksum_type_is_refused_in_s3s_words(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.create_multipart_upload(
            Bucket=bucket, Key="k", ChecksumAlgorithm="CRC32", ChecksumType="HALF_OBJECT"
        )
    error = exc.value.response["Error"]
    assert (error["Code"], error["Message"]) == (
        "InvalidRequest",
        "Value for x-amz-checksum-type header is invalid.",
    )


def test_get_object_attributes_gives_a_composite_checksum_without_its_part_count(
    s3: Any, bucket: str
) -> None:
    """GetObjectAttributes answers a COMPOSITE object's checksum as the checksum of its
    parts' checksums alone, without the "-N" that CompleteMultipartUpload, GET and HEAD
    append (S3 on the wire; AWS's own object-integrity example compares it with the
    base64 of the hash of the part hashes, no suffix). It carried the "-N"."""
    parts = [b"a" * (5 * 1024 * 1024), b"tail"]
    uid = s3.create_multipart_upload(Bucket=bucket, Key="k", ChecksumAlgorithm="SHA256")["UploadId"]
    done = []
    for number, body in enumerate(parts, 1):
        r = s3.upload_part(
            Bucket=bucket,
            Key="k",
            UploadId=uid,
            PartNumber=number,
            Body=body,
            ChecksumAlgorithm="SHA256",
        )
        done.append(
            {"PartNumber": number, "ETag": r["ETag"], "ChecksumSHA256": r["ChecksumSHA256"]}
        )
    result = s3.complete_multipart_upload(
        Bucket=bucket, Key="k", UploadId=uid, MultipartUpload={"Parts": done}
    )
    of_checksums = hashlib.sha256(b"".join(hashlib.sha256(p).digest() for p in parts)).digest()
    composite = base64.b64encode(of_checksums).decode()
    assert result["ChecksumSHA256"] == f"{composite}-2"
    head = s3.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == f"{composite}-2"
    attrs = s3.get_object_attributes(Bucket=bucket, Key="k", ObjectAttributes=["Checksum"])
    assert attrs["Checksum"] == {"ChecksumSHA256": composite, "ChecksumType": "COMPOSITE"}
