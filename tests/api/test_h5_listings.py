"""Audit h5: listings as sync tools and paginators meet them.

A page must always move a paginator on or say it is the last: a page that says "truncated"
without a marker past where it started makes a naive loop ask for the same page forever."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.conftest import ROOT_AK, ROOT_SK, LiveServer


def test_max_uploads_zero_is_an_empty_last_page(s3: Any, bucket: str) -> None:
    """max-uploads=0 answered IsTruncated=true with no NextKeyMarker: a client following
    IsTruncated asked for the same page again, forever. As max-keys=0 does, it is an empty
    page that is not truncated."""
    for key in ("m1", "m2"):
        s3.create_multipart_upload(Bucket=bucket, Key=key)
    page = s3.list_multipart_uploads(Bucket=bucket, MaxUploads=0)
    assert page["IsTruncated"] is False
    assert "Uploads" not in page
    assert page["MaxUploads"] == 0
    assert len(s3.list_multipart_uploads(Bucket=bucket)["Uploads"]) == 2


def test_max_parts_zero_is_an_empty_last_page(s3: Any, bucket: str) -> None:
    """max-parts=0 answered IsTruncated=true with NextPartNumberMarker equal to the marker
    sent: the next page was the same page."""
    upload = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    for number in (1, 2):
        s3.upload_part(Bucket=bucket, Key="k", UploadId=upload, PartNumber=number, Body=b"x")
    page = s3.list_parts(Bucket=bucket, Key="k", UploadId=upload, MaxParts=0)
    assert page["IsTruncated"] is False
    assert "Parts" not in page
    assert page["MaxParts"] == 0
    every = s3.list_parts(Bucket=bucket, Key="k", UploadId=upload)
    assert [p["PartNumber"] for p in every["Parts"]] == [1, 2]


def test_emptying_a_versioned_bucket_page_by_page_leaves_nothing(
    server: LiveServer, s3: Any, bucket: str
) -> None:
    """boto3's `bucket.object_versions.delete()` (how its docs empty a versioned bucket)
    deletes each page's versions before asking for the next page, whose version-id-marker
    then names a version that is gone. Such a marker made the listing go on after the whole
    key: the rest of that key's versions were never listed, nor deleted, and the bucket
    stayed not empty. Now the key is listed again from its newest version."""
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    for i in range(7):
        s3.put_object(Bucket=bucket, Key="many", Body=b"%d" % i)
    s3.delete_object(Bucket=bucket, Key="many")
    s3.put_object(Bucket=bucket, Key="other", Body=b"x")
    resource = boto3.resource(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=ROOT_AK,
        aws_secret_access_key=ROOT_SK,
        region_name="us-east-1",
    )
    resource.Bucket(bucket).object_versions.page_size(3).delete()
    left = s3.list_object_versions(Bucket=bucket)
    assert left.get("Versions", []) == [] and left.get("DeleteMarkers", []) == []


def test_a_version_marker_that_is_gone_lists_the_rest_of_its_key(s3: Any, bucket: str) -> None:
    """The page after one whose last version was deleted still lists every version of that
    key that is left (some of them again), with the latest one marked latest."""
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    ids = [s3.put_object(Bucket=bucket, Key="k", Body=b"%d" % i)["VersionId"] for i in range(5)]
    first = s3.list_object_versions(Bucket=bucket, MaxKeys=2)
    assert first["NextVersionIdMarker"] == ids[3]
    s3.delete_object(Bucket=bucket, Key="k", VersionId=ids[3])
    rest = s3.list_object_versions(
        Bucket=bucket, KeyMarker=first["NextKeyMarker"], VersionIdMarker=ids[3]
    )
    listed = [(v["VersionId"], v["IsLatest"]) for v in rest["Versions"]]
    assert listed == [(ids[4], True), (ids[2], False), (ids[1], False), (ids[0], False)]


@pytest.mark.parametrize("token", ["!!!!", "%%", "YQ==!!", "Y Q==", "YR==", "YQ"])
def test_a_malformed_continuation_token_is_refused(s3: Any, bucket: str, token: str) -> None:
    """A token is what the server wrote: anything else is S3's 400 InvalidArgument. Base64
    was decoded leniently, dropping what is not base64 and the padding's stray bits: "!!!!"
    listed from the start and "YQ==!!" (a token with bytes appended) as "YQ==" did."""
    s3.put_object(Bucket=bucket, Key="a", Body=b"")
    with pytest.raises(ClientError) as exc:
        s3.list_objects_v2(Bucket=bucket, ContinuationToken=token)
    assert exc.value.response["Error"]["Code"] == "InvalidArgument"
    with pytest.raises(ClientError) as exc:
        s3.list_buckets(MaxBuckets=1, ContinuationToken=token)
    assert exc.value.response["Error"]["Code"] == "InvalidArgument"


def test_the_tokens_the_server_writes_are_taken_back(s3: Any, bucket: str) -> None:
    keys = ["a", "a b+c%", "é\U0001f600", "z" * 1024]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"")
    listed: list[str] = []
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, PaginationConfig={"PageSize": 1}
    )
    for page in pages:
        listed += [o["Key"] for o in page.get("Contents", [])]
    assert listed == sorted(keys, key=lambda k: k.encode())
