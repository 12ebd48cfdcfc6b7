"""Bucket controls against what a multipart upload started earlier carries: Block Public
Access and Object Ownership are the bucket's rules when the object is made (at the
completion), not when its upload began."""

from __future__ import annotations

import json
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
