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


def test_a_composite_uploads_completion_must_name_each_parts_checksum(s3: Any, bucket: str) -> None:
    """S3 refuses a COMPOSITE upload's completion that leaves out a part's checksum: 400
    InvalidRequest, "The upload was created using a sha256 checksum. The complete request
    must include the checksum for each part. It was missing for part 2 in the request."
    The completion used to succeed, the object's checksum built from checksums the client
    never confirmed."""
    bodies = {1: b"a" * PART, 2: b"tail"}
    uid, done = _parts_with_checksums(s3, bucket, "k", bodies, ChecksumAlgorithm="SHA256")
    without = [done[0], {"PartNumber": 2, "ETag": done[1]["ETag"]}]
    with pytest.raises(ClientError) as exc:
        _complete(s3, bucket, "k", uid, without)
    assert _code(exc) == "InvalidRequest"
    message = exc.value.response["Error"]["Message"]
    assert "sha256" in message and "missing for part 2" in message
    # A whole-object checksum that does not match is still BadDigest first (s3-tests'
    # test_multipart_checksum_sha256 sends both faults at once).
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(
            Bucket=bucket,
            Key="k",
            UploadId=uid,
            MultipartUpload={"Parts": without},
            ChecksumSHA256=_sha256_b64(b"other"),
        )
    assert _code(exc) == "BadDigest"
    result = _complete(s3, bucket, "k", uid, done)
    assert result["ChecksumSHA256"].endswith("-2")


def test_a_full_object_uploads_completion_may_leave_the_part_checksums_out(
    s3: Any, bucket: str
) -> None:
    """A FULL_OBJECT upload's object checksum is the whole object's CRC, not one built
    from the part checksums: a completion without them is taken."""
    bodies = {1: b"a" * PART, 2: b"tail"}
    uid, done = _parts_with_checksums(
        s3, bucket, "k", bodies, ChecksumAlgorithm="CRC32", ChecksumType="FULL_OBJECT"
    )
    bare = [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in done]
    assert _complete(s3, bucket, "k", uid, bare)["ChecksumType"] == "FULL_OBJECT"


def test_paging_uploads_while_aborting_them_skips_none(s3: Any, bucket: str) -> None:
    """A client that aborts each upload it lists, and pages with the last one
    (NextKeyMarker/NextUploadIdMarker), names an upload that is gone. The key's other
    uploads used to be skipped (nothing came after a marker with no initiation time); now
    they are listed."""
    same_key = [s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"] for _ in range(3)]
    other = s3.create_multipart_upload(Bucket=bucket, Key="m")["UploadId"]
    listed: list[str] = []
    markers: dict[str, str] = {}
    for _ in range(10):
        page = s3.list_multipart_uploads(Bucket=bucket, MaxUploads=1, **markers)
        for up in page.get("Uploads", []):
            listed.append(up["UploadId"])
            s3.abort_multipart_upload(Bucket=bucket, Key=up["Key"], UploadId=up["UploadId"])
        if not page["IsTruncated"]:
            break
        markers = {
            "KeyMarker": page["NextKeyMarker"],
            "UploadIdMarker": page["NextUploadIdMarker"],
        }
    assert sorted(listed) == sorted([*same_key, other])
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)


def test_upload_part_copy_names_the_source_version_it_copied(s3: Any, bucket: str) -> None:
    """UploadPartCopy answers x-amz-copy-source-version-id (CopySourceVersionId) when the
    source bucket is versioned, as CopyObject does: the version a part was copied from,
    which a client copying a large object part by part needs to know (the key may be
    overwritten between two parts). It was never sent."""
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    v1 = s3.put_object(Bucket=bucket, Key="src", Body=b"version one")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="src", Body=b"version two")["VersionId"]
    uid = s3.create_multipart_upload(Bucket=bucket, Key="dst")["UploadId"]
    named = s3.upload_part_copy(
        Bucket=bucket,
        Key="dst",
        UploadId=uid,
        PartNumber=1,
        CopySource={"Bucket": bucket, "Key": "src", "VersionId": v1},
    )
    assert named["CopySourceVersionId"] == v1
    latest = s3.upload_part_copy(
        Bucket=bucket, Key="dst", UploadId=uid, PartNumber=2, CopySource=f"{bucket}/src"
    )
    assert latest["CopySourceVersionId"] == v2
    s3.abort_multipart_upload(Bucket=bucket, Key="dst", UploadId=uid)


def test_upload_part_copy_of_an_unversioned_source_names_no_version(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"plain")
    uid = s3.create_multipart_upload(Bucket=bucket, Key="dst")["UploadId"]
    r = s3.upload_part_copy(
        Bucket=bucket, Key="dst", UploadId=uid, PartNumber=1, CopySource=f"{bucket}/src"
    )
    assert "CopySourceVersionId" not in r
    s3.abort_multipart_upload(Bucket=bucket, Key="dst", UploadId=uid)


def test_invalid_part_names_the_upload_part_and_etag(s3: Any, bucket: str) -> None:
    """S3's InvalidPart error names the upload, the part number and the ETag it could not
    match. The UploadId was sent empty (an unknown part or another ETag) or not at all (a
    part checksum that does not match)."""
    bodies = {1: b"a" * PART, 2: b"tail"}
    uid, done = _parts_with_checksums(s3, bucket, "k", bodies, ChecksumAlgorithm="SHA256")
    wrong_etag = [done[0], {**done[1], "ETag": '"0123456789abcdef0123456789abcdef"'}]
    wrong_checksum = [done[0], {**done[1], "ChecksumSHA256": _sha256_b64(b"other")}]
    for parts in (wrong_etag, wrong_checksum):
        with pytest.raises(ClientError) as exc:
            _complete(s3, bucket, "k", uid, parts)
        error = exc.value.response["Error"]
        assert error["Code"] == "InvalidPart"
        assert (error["UploadId"], error["PartNumber"]) == (uid, "2")
        assert error["ETag"] == parts[1]["ETag"]
    s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=uid)


def test_get_object_attributes_takes_large_part_page_values_as_list_parts_does(
    s3: Any, bucket: str
) -> None:
    """x-amz-max-parts above 1,000 pages by 1,000 and a marker past the last part pages to
    nothing, as ListParts' max-parts and part-number-marker do (a client asking for all of
    an object's parts at once gets the first 1,000 and IsTruncated). Both were refused
    with InvalidArgument "not an integer or within integer range", which they are."""
    bodies = {1: b"a" * PART, 2: b"b" * PART, 3: b"tail"}
    uid, done = _parts_with_checksums(s3, bucket, "k", bodies, ChecksumAlgorithm="CRC32")
    _complete(s3, bucket, "k", uid, done)
    many = s3.get_object_attributes(
        Bucket=bucket, Key="k", ObjectAttributes=["ObjectParts"], MaxParts=5000
    )["ObjectParts"]
    assert many["MaxParts"] == 1000 and many["IsTruncated"] is False
    assert [p["PartNumber"] for p in many["Parts"]] == [1, 2, 3]
    past = s3.get_object_attributes(
        Bucket=bucket, Key="k", ObjectAttributes=["ObjectParts"], PartNumberMarker=20000
    )["ObjectParts"]
    assert past["IsTruncated"] is False and "Parts" not in past
    with pytest.raises(ClientError) as exc:
        s3.get_object_attributes(
            Bucket=bucket, Key="k", ObjectAttributes=["ObjectParts"], MaxParts=-1
        )
    assert _code(exc) == "InvalidArgument"
