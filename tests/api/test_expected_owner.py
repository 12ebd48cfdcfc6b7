"""x-amz-expected-bucket-owner naming another account is 403 on every bucket and object
operation boto3 can send it with (the check is one, before any handler)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

OTHER = "111122223333"


def _calls(s3: Any, b: str, upload: str) -> dict[str, Callable[[], Any]]:
    o = {"ExpectedBucketOwner": OTHER}
    tags = {"TagSet": [{"Key": "a", "Value": "b"}]}
    own = {"Rules": [{"ObjectOwnership": "ObjectWriter"}]}
    return {
        "HeadBucket": lambda: s3.head_bucket(Bucket=b, **o),
        "DeleteBucket": lambda: s3.delete_bucket(Bucket=b, **o),
        "GetBucketLocation": lambda: s3.get_bucket_location(Bucket=b, **o),
        "GetBucketVersioning": lambda: s3.get_bucket_versioning(Bucket=b, **o),
        "ListObjects": lambda: s3.list_objects(Bucket=b, **o),
        "ListObjectsV2": lambda: s3.list_objects_v2(Bucket=b, **o),
        "ListObjectVersions": lambda: s3.list_object_versions(Bucket=b, **o),
        "ListMultipartUploads": lambda: s3.list_multipart_uploads(Bucket=b, **o),
        "DeleteObjects": lambda: s3.delete_objects(
            Bucket=b, Delete={"Objects": [{"Key": "k"}]}, **o
        ),
        "GetBucketAcl": lambda: s3.get_bucket_acl(Bucket=b, **o),
        "PutBucketAcl": lambda: s3.put_bucket_acl(Bucket=b, ACL="private", **o),
        "GetBucketPolicy": lambda: s3.get_bucket_policy(Bucket=b, **o),
        "PutBucketPolicy": lambda: s3.put_bucket_policy(
            Bucket=b, Policy=json.dumps({"Version": "2012-10-17", "Statement": []}), **o
        ),
        "DeleteBucketPolicy": lambda: s3.delete_bucket_policy(Bucket=b, **o),
        "GetBucketPolicyStatus": lambda: s3.get_bucket_policy_status(Bucket=b, **o),
        "GetPublicAccessBlock": lambda: s3.get_public_access_block(Bucket=b, **o),
        "DeletePublicAccessBlock": lambda: s3.delete_public_access_block(Bucket=b, **o),
        "GetBucketTagging": lambda: s3.get_bucket_tagging(Bucket=b, **o),
        "PutBucketTagging": lambda: s3.put_bucket_tagging(Bucket=b, Tagging=tags, **o),
        "DeleteBucketTagging": lambda: s3.delete_bucket_tagging(Bucket=b, **o),
        "GetBucketOwnershipControls": lambda: s3.get_bucket_ownership_controls(Bucket=b, **o),
        "PutBucketOwnershipControls": lambda: s3.put_bucket_ownership_controls(
            Bucket=b, OwnershipControls=own, **o
        ),
        "DeleteBucketOwnershipControls": lambda: s3.delete_bucket_ownership_controls(Bucket=b, **o),
        "PutObject": lambda: s3.put_object(Bucket=b, Key="n", Body=b"x", **o),
        "GetObject": lambda: s3.get_object(Bucket=b, Key="k", **o),
        "HeadObject": lambda: s3.head_object(Bucket=b, Key="k", **o),
        "DeleteObject": lambda: s3.delete_object(Bucket=b, Key="k", **o),
        "GetObjectAcl": lambda: s3.get_object_acl(Bucket=b, Key="k", **o),
        "PutObjectAcl": lambda: s3.put_object_acl(Bucket=b, Key="k", ACL="private", **o),
        "GetObjectTagging": lambda: s3.get_object_tagging(Bucket=b, Key="k", **o),
        "PutObjectTagging": lambda: s3.put_object_tagging(Bucket=b, Key="k", Tagging=tags, **o),
        "DeleteObjectTagging": lambda: s3.delete_object_tagging(Bucket=b, Key="k", **o),
        "GetObjectAttributes": lambda: s3.get_object_attributes(
            Bucket=b, Key="k", ObjectAttributes=["ETag"], **o
        ),
        "CopyObject": lambda: s3.copy_object(
            Bucket=b, Key="c", CopySource={"Bucket": b, "Key": "k"}, **o
        ),
        "CreateMultipartUpload": lambda: s3.create_multipart_upload(Bucket=b, Key="m", **o),
        "UploadPart": lambda: s3.upload_part(
            Bucket=b, Key="m", UploadId=upload, PartNumber=1, Body=b"p", **o
        ),
        "ListParts": lambda: s3.list_parts(Bucket=b, Key="m", UploadId=upload, **o),
        "AbortMultipartUpload": lambda: s3.abort_multipart_upload(
            Bucket=b, Key="m", UploadId=upload, **o
        ),
    }


@pytest.fixture(scope="module")
def target(s3: Any) -> tuple[str, str]:
    name = f"expected-owner-{os.getpid()}"
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="k", Body=b"x")
    upload = s3.create_multipart_upload(Bucket=name, Key="m")["UploadId"]
    return name, upload


OPERATIONS = list(_calls(None, "", "").keys())


@pytest.mark.parametrize("operation", OPERATIONS)
def test_another_expected_owner_is_access_denied(
    s3: Any, target: tuple[str, str], operation: str
) -> None:
    bucket, upload = target
    with pytest.raises(ClientError) as exc:
        _calls(s3, bucket, upload)[operation]()
    err = exc.value.response
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 403
    # A HEAD's answer has no body, so botocore names its status instead of the code.
    assert err["Error"]["Code"] in ("AccessDenied", "403")
    # Nothing was done: the bucket, its object and the upload are all still there.
    assert s3.head_object(Bucket=bucket, Key="k")["ContentLength"] == 1
    assert s3.list_parts(Bucket=bucket, Key="m", UploadId=upload)["UploadId"] == upload
