"""CopyObject and UploadPartCopy as S3 defines them (audit h6)."""

from __future__ import annotations

from typing import Any


def test_copy_without_storage_class_is_standard(s3: Any, bucket: str) -> None:
    """S3: "If the x-amz-storage-class header is not used, the copied object will be stored
    in the STANDARD Storage Class by default" (the source's class is not copied)."""
    s3.put_object(Bucket=bucket, Key="rr", Body=b"x", StorageClass="REDUCED_REDUNDANCY")
    source = {"Bucket": bucket, "Key": "rr"}
    s3.copy_object(Bucket=bucket, Key="dst", CopySource=source)
    assert "StorageClass" not in s3.head_object(Bucket=bucket, Key="dst")
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="dst")["Contents"][0]
    assert listed["StorageClass"] == "STANDARD"
    s3.copy_object(Bucket=bucket, Key="kept", CopySource=source, StorageClass="REDUCED_REDUNDANCY")
    assert s3.head_object(Bucket=bucket, Key="kept")["StorageClass"] == "REDUCED_REDUNDANCY"
