"""Audit of bucket lifecycle through boto3 on a live server: day counts a date cannot hold
are refused at PutBucketLifecycleConfiguration (they made every PUT, GET and HEAD of the
bucket's objects, and CreateMultipartUpload, fail with InternalError)."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError


def _rule(**kw: Any) -> dict[str, Any]:
    return {"ID": "r", "Filter": {"Prefix": ""}, "Status": "Enabled", **kw}


@pytest.mark.parametrize(
    "rule",
    [
        _rule(Expiration={"Days": 2_147_483_647}),
        _rule(AbortIncompleteMultipartUpload={"DaysAfterInitiation": 2_147_483_647}),
        _rule(NoncurrentVersionExpiration={"NoncurrentDays": 2_147_483_647}),
    ],
)
def test_a_day_count_beyond_any_date_is_refused_and_objects_stay_usable(
    s3: Any, bucket: str, rule: dict[str, Any]
) -> None:
    try:
        s3.put_bucket_lifecycle_configuration(
            Bucket=bucket, LifecycleConfiguration={"Rules": [rule]}
        )
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "InvalidArgument"
        assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    # Whatever was stored, the bucket's objects and uploads still work.
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"
    s3.head_object(Bucket=bucket, Key="k")
    up = s3.create_multipart_upload(Bucket=bucket, Key="m")
    s3.abort_multipart_upload(Bucket=bucket, Key="m", UploadId=up["UploadId"])
    s3.delete_object(Bucket=bucket, Key="k")


def test_a_day_count_a_date_can_hold_is_announced(s3: Any, bucket: str) -> None:
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": [_rule(Expiration={"Days": 1_000_000})]}
    )
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    header = s3.head_object(Bucket=bucket, Key="k")["ResponseMetadata"]["HTTPHeaders"]
    assert 'rule-id="r"' in header["x-amz-expiration"]
