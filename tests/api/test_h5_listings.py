"""Audit h5: listings as sync tools and paginators meet them.

A page must always move a paginator on or say it is the last: a page that says "truncated"
without a marker past where it started makes a naive loop ask for the same page forever."""

from __future__ import annotations

from typing import Any


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
