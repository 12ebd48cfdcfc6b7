"""Audit of listings and their markers: a marker or token may place a page, never widen it
past the prefix the request (and the policy decision on it) named."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import UserKeys


def _versioned(s3: Any, bucket: str) -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})


def _allow_listing_under(s3: Any, bucket: str, action: str, prefix: str) -> None:
    """A bucket policy letting everyone list only with s3:prefix = `prefix`."""
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": action,
                "Resource": f"arn:aws:s3:::{bucket}",
                "Condition": {"StringEquals": {"s3:prefix": prefix}},
            }
        ],
    }
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))


def test_version_marker_outside_the_prefix_lists_nothing_of_its_key(
    s3: Any, bob_s3: Any, bob: UserKeys, bucket: str
) -> None:
    """A user allowed ListBucketVersions only under public/ names a key-marker outside it
    with that key's version id: the page must not hold that key's older versions."""
    _versioned(s3, bucket)
    s3.put_object(Bucket=bucket, Key="secret/x", Body=b"old secret")
    current = s3.put_object(Bucket=bucket, Key="secret/x", Body=b"new secret")["VersionId"]
    s3.put_object(Bucket=bucket, Key="public/a", Body=b"a")
    _allow_listing_under(s3, bucket, "s3:ListBucketVersions", "public/")
    resp = bob_s3.list_object_versions(
        Bucket=bucket, Prefix="public/", KeyMarker="secret/x", VersionIdMarker=current
    )
    listed = [v["Key"] for v in resp.get("Versions", []) + resp.get("DeleteMarkers", [])]
    assert all(k.startswith("public/") for k in listed), listed
    # A marker before the prefix lists the prefix from its start, as without a marker.
    resp = bob_s3.list_object_versions(
        Bucket=bucket, Prefix="public/", KeyMarker="a", VersionIdMarker="null"
    )
    assert [v["Key"] for v in resp.get("Versions", [])] == ["public/a"]


def _upload_listing(s3: Any, bucket: str, **kwargs: Any) -> tuple[list[str], list[str]]:
    resp = s3.list_multipart_uploads(Bucket=bucket, **kwargs)
    return (
        [u["Key"] for u in resp.get("Uploads", [])],
        [p["Prefix"] for p in resp.get("CommonPrefixes", [])],
    )


def test_upload_key_marker_equal_to_the_prefix_skips_only_that_key(s3: Any, bucket: str) -> None:
    """key-marker "a/" with prefix "a/" and delimiter "/": "a/" is no common prefix of this
    listing (its rest after the prefix holds no delimiter), so only uploads of key "a/"
    itself are behind the marker. Before, every upload under a/ was skipped."""
    for key in ("a/", "a/b", "a/c/d", "b"):
        s3.create_multipart_upload(Bucket=bucket, Key=key)
    assert _upload_listing(s3, bucket, Prefix="a/", Delimiter="/", KeyMarker="a/") == (
        ["a/b"],
        ["a/c/"],
    )
    # A marker that is a common prefix of the listing still skips all of its uploads.
    assert _upload_listing(s3, bucket, Delimiter="/", KeyMarker="a/") == (["b"], [])
