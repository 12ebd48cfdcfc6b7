"""Bucket controls against what a multipart upload started earlier carries: Block Public
Access and Object Ownership are the bucket's rules when the object is made (at the
completion), not when its upload began."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from s3torrent.access import ACCOUNT_ID
from tests.conftest import LiveServer

_ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def _anon_status(server: LiveServer, bucket: str, key: str) -> int:
    return requests.get(f"{server.endpoint}/{bucket}/{key}", timeout=10).status_code


def _start_upload(client: Any, bucket: str, key: str, **acl: str) -> tuple[str, str]:
    """A multipart upload with one part sent: its id and the part's ETag."""
    upload_id = client.create_multipart_upload(Bucket=bucket, Key=key, **acl)["UploadId"]
    part = client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b"y")
    return upload_id, part["ETag"]


def _complete(client: Any, bucket: str, key: str, upload_id: str, etag: str) -> None:
    client.complete_multipart_upload(
        Bucket=bucket,
        Key=key,
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
    )


def test_block_public_acls_refuses_completing_an_upload_started_public(
    server: LiveServer, s3: Any, bucket: str
) -> None:
    upload_id, etag = _start_upload(s3, bucket, "m", ACL="public-read")
    s3.put_public_access_block(
        Bucket=bucket, PublicAccessBlockConfiguration={"BlockPublicAcls": True}
    )
    with pytest.raises(ClientError) as exc:
        _complete(s3, bucket, "m", upload_id, etag)
    assert _code(exc) == "AccessDenied"
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="m")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    # Without the block, the same upload completes as it was started.
    s3.delete_public_access_block(Bucket=bucket)
    _complete(s3, bucket, "m", upload_id, etag)
    assert _anon_status(server, bucket, "m") == 200


def _let_bob_write_public(s3: Any, bucket: str, bob: Any) -> None:
    statement = {
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:user/{bob.name}"},
        "Action": ["s3:PutObject", "s3:PutObjectAcl"],
        "Resource": f"arn:aws:s3:::{bucket}/*",
    }
    policy = {"Version": "2012-10-17", "Statement": [statement]}
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))


def _owner_id(s3: Any, bucket: str, key: str) -> str:
    return str(s3.get_object_acl(Bucket=bucket, Key=key)["Owner"]["ID"])


def test_upload_completed_under_bucket_owner_enforced_is_the_bucket_owners(
    server: LiveServer, s3: Any, bob_s3: Any, bob: Any, bucket: str
) -> None:
    _let_bob_write_public(s3, bucket, bob)
    upload_id, etag = _start_upload(bob_s3, bucket, "m", ACL="public-read")
    s3.put_bucket_ownership_controls(
        Bucket=bucket, OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    )
    _complete(bob_s3, bucket, "m", upload_id, etag)
    root_id = str(s3.list_buckets()["Owner"]["ID"])
    assert _owner_id(s3, bucket, "m") == root_id
    # ACLs enabled again: what was written while they were off stays the bucket owner's,
    # private, never the writer's with the public ACL its upload was started with.
    s3.delete_bucket_ownership_controls(Bucket=bucket)
    assert _owner_id(s3, bucket, "m") == root_id
    grants = s3.get_object_acl(Bucket=bucket, Key="m")["Grants"]
    assert all(g["Grantee"].get("URI") != _ALL_USERS for g in grants)
    assert _anon_status(server, bucket, "m") == 403


def _error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    err = exc.value.response
    return str(err["Error"]["Code"]), int(err["ResponseMetadata"]["HTTPStatusCode"])


@pytest.mark.parametrize(
    "asked",
    [
        {"ObjectOwnership": "BucketOwnerEnforced"},
        {"ObjectLockEnabledForBucket": True},
        {"CreateBucketConfiguration": {"Tags": [{"Key": "team", "Value": "a"}]}},
    ],
    ids=["ownership", "object-lock", "tags"],
)
def test_recreating_own_bucket_with_controls_it_lacks_is_refused(
    server: LiveServer, s3: Any, bucket: str, asked: dict[str, Any]
) -> None:
    """us-east-1's legacy 200 for creating one's own bucket again must not tell a caller
    that asked for ACLs off, object lock or tags that the bucket has them when it has not."""
    s3.put_object(Bucket=bucket, Key="pub", Body=b"x", ACL="public-read")
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(Bucket=bucket, **asked)
    assert _error(exc) == ("BucketAlreadyOwnedByYou", 409)
    assert _anon_status(server, bucket, "pub") == 200
    assert s3.get_bucket_versioning(Bucket=bucket).get("Status") is None


def test_recreating_own_bucket_with_the_controls_it_has_is_the_legacy_200(s3: Any) -> None:
    name = f"{s3.list_buckets()['Owner']['ID'][:8]}-h8-same-{int(time.time() * 1000) % 10**8}"
    asked: dict[str, Any] = {"ObjectOwnership": "BucketOwnerEnforced"}
    s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True, **asked)
    try:
        again = s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True, **asked)
        assert again["ResponseMetadata"]["HTTPStatusCode"] == 200
        assert s3.create_bucket(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"] == 200
    finally:
        s3.delete_bucket(Bucket=name)
