"""Object tags as S3 takes them (h9 audit, 2026-12-08): an `x-amz-tagging` header with more
tags than parsed is S3's 400, not a 500; and a tag header a copy ignores grants nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from s3torrent.access import ACCOUNT_ID
from tests.conftest import UserKeys


def _code(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    err = exc.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]


def _many_tags(n: int) -> str:
    return "&".join(f"k{i}=v" for i in range(n))


@pytest.mark.parametrize("count", [12, 100])
def test_a_tagging_header_of_many_tags_is_s3s_400(s3: Any, bucket: str, count: int) -> None:
    """Until 2026-12-08 a header of 12 tags or more (one past what the parser was told to
    read) raised out of the parser: a 500 InternalError from PutObject and
    CreateMultipartUpload, where S3 answers 400 BadRequest as it does for 11."""
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="t", Body=b"x", Tagging=_many_tags(count))
    assert _code(exc) == ("BadRequest", 400)
    with pytest.raises(ClientError) as exc:
        s3.create_multipart_upload(Bucket=bucket, Key="t", Tagging=_many_tags(count))
    assert _code(exc) == ("BadRequest", 400)
    s3.put_object(Bucket=bucket, Key="c", Body=b"x")
    with pytest.raises(ClientError) as exc:
        s3.copy_object(
            Bucket=bucket,
            Key="t",
            CopySource={"Bucket": bucket, "Key": "c"},
            TaggingDirective="REPLACE",
            Tagging=_many_tags(count),
        )
    assert _code(exc) == ("BadRequest", 400)
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 1
