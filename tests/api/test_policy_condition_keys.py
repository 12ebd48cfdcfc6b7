"""Condition keys filled from the request: s3:versionid from ?versionId=, and
s3:x-amz-server-side-encryption from the (signed) header, as bucket policies test them."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from s3torrent.access import ACCOUNT_ID


def _policy(bucket: str, bob: Any, statements: list[dict[str, Any]]) -> str:
    principal = {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:user/{bob.name}"}
    resource = f"arn:aws:s3:::{bucket}/*"
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Principal": principal, "Resource": resource, **s} for s in statements],
        }
    )


def test_versionid_condition_sees_the_version_asked_for(
    s3: Any, bob_s3: Any, bob: Any, bucket: str
) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    policy = _policy(
        bucket,
        bob,
        [
            {"Effect": "Allow", "Action": "s3:GetObject"},
            {
                "Effect": "Deny",
                "Action": "s3:GetObject",
                "Condition": {"StringEquals": {"s3:versionid": "null"}},
            },
        ],
    )
    s3.put_bucket_policy(Bucket=bucket, Policy=policy)
    assert bob_s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"
    with pytest.raises(ClientError) as exc:
        bob_s3.get_object(Bucket=bucket, Key="k", VersionId="null")
    assert exc.value.response["Error"]["Code"] == "AccessDenied"


def test_encryption_condition_sees_the_header(s3: Any, bob_s3: Any, bob: Any, bucket: str) -> None:
    # The usual "refuse unencrypted uploads" policy.
    policy = _policy(
        bucket,
        bob,
        [
            {"Effect": "Allow", "Action": "s3:PutObject"},
            {
                "Effect": "Deny",
                "Action": "s3:PutObject",
                "Condition": {"Null": {"s3:x-amz-server-side-encryption": "true"}},
            },
        ],
    )
    s3.put_bucket_policy(Bucket=bucket, Policy=policy)
    with pytest.raises(ClientError) as exc:
        bob_s3.put_object(Bucket=bucket, Key="plain", Body=b"x")
    assert exc.value.response["Error"]["Code"] == "AccessDenied"
    try:
        bob_s3.put_object(Bucket=bucket, Key="enc", Body=b"x", ServerSideEncryption="AES256")
    except ClientError as refused:
        # Not the policy's refusal (encryption itself may not be implemented here).
        assert refused.response["Error"]["Code"] != "AccessDenied"


@pytest.mark.parametrize(("region", "readable"), [("us-east-1", True), ("eu-west-1", False)])
def test_requested_region_is_the_buckets_region_on_every_channel(
    s3: Any, server: Any, bucket: str, region: str, readable: bool
) -> None:
    # A public-read policy limited to one region: the key was never filled, so the Allow
    # held for no request, whichever region it named.
    s3.put_object(Bucket=bucket, Key="k", Body=b"regional")
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{bucket}/*",
                "Condition": {"StringEquals": {"aws:RequestedRegion": region}},
            }
        ],
    }
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    plain = requests.get(f"{server.endpoint}/{bucket}/k", timeout=10)
    torrent = requests.get(f"{server.endpoint}/{bucket}/k?torrent", timeout=10)
    assert (plain.status_code, torrent.status_code) == ((200, 200) if readable else (403, 403))
    if readable:
        assert plain.content == b"regional"
