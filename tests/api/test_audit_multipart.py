"""Multipart uploads against S3's documented rules, found in the 2026-12 audit: the
completion of an upload made with a checksum algorithm."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from botocore.exceptions import ClientError

MiB = 1024 * 1024
PART = 5 * MiB


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def _sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def _parts_with_checksums(
    s3: Any, bucket: str, key: str, bodies: dict[int, bytes], **create: Any
) -> tuple[str, list[dict[str, Any]]]:
    """An upload made with `create`'s checksum and the given parts: (upload id, the parts
    as a completion names them, with each part's checksum)."""
    uid = s3.create_multipart_upload(Bucket=bucket, Key=key, **create)["UploadId"]
    alg = create["ChecksumAlgorithm"]
    done = []
    for number, body in bodies.items():
        r = s3.upload_part(
            Bucket=bucket,
            Key=key,
            UploadId=uid,
            PartNumber=number,
            Body=body,
            ChecksumAlgorithm=alg,
        )
        field = f"Checksum{alg}"
        done.append({"PartNumber": number, "ETag": r["ETag"], field: r[field]})
    return uid, done


def _complete(s3: Any, bucket: str, key: str, uid: str, parts: list[dict[str, Any]]) -> Any:
    return s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=uid, MultipartUpload={"Parts": parts}
    )


@pytest.mark.parametrize(
    ("create", "numbers"),
    [
        ({"ChecksumAlgorithm": "SHA256"}, (1, 3)),
        ({"ChecksumAlgorithm": "SHA256"}, (2, 3)),
        ({"ChecksumAlgorithm": "CRC32", "ChecksumType": "FULL_OBJECT"}, (1, 3)),
    ],
)
def test_a_checksum_uploads_parts_must_start_at_1_and_be_consecutive(
    s3: Any, bucket: str, create: dict[str, str], numbers: tuple[int, int]
) -> None:
    """S3 (CompletedPart, PartNumber): when a checksum is applied to each part, the part
    numbers of a completion must start at 1 and be consecutive, else 400 InvalidPartOrder.
    Completing parts 1 and 3 (or 2 and 3) of such an upload used to succeed."""
    first, second = numbers
    bodies = {first: b"a" * PART, second: b"tail"}
    uid, done = _parts_with_checksums(s3, bucket, "k", bodies, **create)
    with pytest.raises(ClientError) as exc:
        _complete(s3, bucket, "k", uid, done)
    assert _code(exc) == "InvalidPartOrder"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    # Nothing was made, and the upload is still there to complete properly.
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="k")
    assert len(s3.list_parts(Bucket=bucket, Key="k", UploadId=uid)["Parts"]) == 2
    s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=uid)


def test_an_upload_without_a_checksum_algorithm_may_skip_part_numbers(s3: Any, bucket: str) -> None:
    """The consecutive-numbers rule is the checksum uploads' only: S3 joins any ascending
    part numbers of a plain upload (clients number parts by offset)."""
    uid = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    done = []
    for number, body in ((2, b"a" * PART), (5, b"tail")):
        r = s3.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=number, Body=body)
        done.append({"PartNumber": number, "ETag": r["ETag"]})
    _complete(s3, bucket, "k", uid, done)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"a" * PART + b"tail"
