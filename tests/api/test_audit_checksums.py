"""Checksums against S3's answers, found in the 2026-12 audit."""

from __future__ import annotations

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
